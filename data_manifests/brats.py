"""Build a MONAI datalist from BraTS (Brain Tumor Segmentation) training data in its native layout.

One folder per patient, e.g. ``BraTS20_Training_001/`` with ``BraTS20_Training_001_flair.nii.gz``, ``_t1``,
``_t1ce``, ``_t2`` and ``_seg`` (``.nii`` too; BraTS 2021 names ``BraTS2021_00000_flair.nii.gz`` the same way;
BraTS 2023 names ``BraTS-GLI-00000-000-t2f.nii.gz``, ``-t1n``, ``-t1c``, ``-t2w``, ``-seg``). Patient folders
may sit at any depth under the root. Each entry is ``{"image": [flair, t1, t1ce, t2], "label": seg}``.
Labels: 0 background, 1 necrotic tumour core, 2 peritumoral oedema, 4 GD-enhancing tumour (3 in BraTS 2023).
The patient is the folder name.

Command line::

    python -m data_manifests.brats --root /data/MICCAI_BraTS2020_TrainingData --output data_manifests/brats.json
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_manifests.driver import Option, build_from_cases, run_command_line
from data_manifests.splits import is_hidden
from pipelines.validation.errors import DataError

__all__ = ["CHANNELS", "LABELS", "LABELS_2023", "find_brats_cases", "build_brats_datalist", "main"]

logger = logging.getLogger(__name__)

CHANNELS = ("FLAIR", "T1", "T1ce", "T2")
LABELS = {"0": "background", "1": "necrotic tumour core", "2": "peritumoral oedema", "4": "GD-enhancing tumour"}
LABELS_2023 = {"0": "background", "1": "necrotic tumour core", "2": "peritumoral oedema", "3": "enhancing tumour"}

# file-name suffix -> (role, naming): role is a channel or "label"; naming "2020" (up to 2021) or "2023"
_SUFFIXES = {
    "flair": ("FLAIR", "2020"),
    "t1": ("T1", "2020"),
    "t1ce": ("T1ce", "2020"),
    "t2": ("T2", "2020"),
    "seg": ("label", None),
    "t2f": ("FLAIR", "2023"),
    "t1n": ("T1", "2023"),
    "t1c": ("T1ce", "2023"),
    "t2w": ("T2", "2023"),
}
_NAME = re.compile(r"[_-](?P<suffix>flair|t1ce|t1|t2|seg|t2f|t1n|t1c|t2w)\.nii(\.gz)?$")
_EXPECTED = {
    "2020": {"FLAIR": "_flair", "T1": "_t1", "T1ce": "_t1ce", "T2": "_t2", "label": "_seg"},
    "2023": {"FLAIR": "-t2f", "T1": "-t1n", "T1ce": "-t1c", "T2": "-t2w", "label": "-seg"},
}


def _patient_folder(folder: Path, files: list[str], problems: list[str]) -> tuple[dict, str | None] | None:
    """The entry of one patient folder and its naming, or None (with problems added) when it is incomplete."""
    roles: dict[str, Path] = {}
    namings: set[str] = set()
    for name in sorted(files):
        match = _NAME.search(name)
        if name.startswith(".") or not match:
            continue
        role, naming = _SUFFIXES[match["suffix"]]
        if naming:
            namings.add(naming)
        if role in roles:
            problems.append(f"{folder / name}: a second {role} file in {folder} (also {roles[role].name})")
            continue
        roles[role] = folder / name
    if len(namings) > 1:
        problems.append(f"{folder}: mixes BraTS 2023 (-t2f, -t1n, ...) and older (_flair, _t1, ...) file names")
        return None
    naming = namings.pop() if namings else None
    missing = [r for r in (*CHANNELS, "label") if r not in roles]
    if missing:
        suffixes = _EXPECTED[naming or "2020"]
        niftis = sorted(f for f in files if ".nii" in f and not f.startswith("."))
        for role in missing:
            what = "segmentation (label)" if role == "label" else f"{role} image"
            problems.append(
                f"{folder / (folder.name + suffixes[role] + '.nii.gz')}: {what} missing for patient {folder.name} "
                f"(NIfTI files there: {', '.join(niftis) or 'none'})"
            )
        return None
    entry = {"image": [str(roles[c]) for c in CHANNELS], "label": str(roles["label"]), "patient": folder.name}
    return entry, naming


def find_brats_cases(root: str | os.PathLike) -> tuple[list[dict], str]:
    """The patient folders under ``root`` (any depth) as datalist entries, sorted by patient.

    Args:
        root: the BraTS training folder.

    Returns:
        The entries ``{"image": [flair, t1, t1ce, t2], "label": seg, "patient": folder name}`` and the file
        naming found, ``"2020"`` (BraTS up to 2021) or ``"2023"``.

    Raises:
        DataError: missing folder, no patient folders, a patient folder without its segmentation or one of its
            four images, two folders of the same name, or a mix of 2023 and older names, each naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: BraTS folder not found")
    problems: list[str] = []
    entries: dict[str, dict] = {}
    folders: dict[str, Path] = {}
    namings: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if folder == root or is_hidden(folder) or not any(_NAME.search(f) for f in filenames):
            continue
        if folder.name in folders:
            problems.append(f"{folder}: patient {folder.name} found twice (also {folders[folder.name]})")
            continue
        folders[folder.name] = folder
        found = _patient_folder(folder, filenames, problems)
        if found is not None:
            entries[folder.name], naming = found
            if naming:
                namings[folder.name] = naming
    if not folders and not problems:
        raise DataError(f"{root}: no BraTS patient folders (<patient>/<patient>_flair.nii.gz, ...) found")
    if len(set(namings.values())) > 1:
        older = next(p for p, n in namings.items() if n == "2020")
        newer = next(p for p, n in namings.items() if n == "2023")
        problems.append(
            f"{root}: mixes BraTS 2023 file names ({folders[newer]}) and older ones ({folders[older]}); their "
            "labels differ (enhancing tumour is 3 in 2023, 4 before)"
        )
    if problems:
        raise DataError(problems)
    naming = next(iter(namings.values()), "2020")
    return [entries[p] for p in sorted(entries)], naming


def _find(root: str | os.PathLike) -> tuple[list[dict], dict]:
    """The entries of :func:`find_brats_cases` and the datalist header."""
    entries, naming = find_brats_cases(root)
    header = {
        "name": "BraTS",
        "description": f"BraTS brain tumour MRI ({'2023' if naming == '2023' else 'up to 2021'} file names): "
        f"{len(entries)} patient folders under {root}, images in the order FLAIR, T1, T1ce, T2;",
        "labels": dict(LABELS_2023 if naming == "2023" else LABELS),
        "channels": list(CHANNELS),
        "modality": {str(i): c for i, c in enumerate(CHANNELS)},
    }
    return entries, header


def build_brats_datalist(root: str | os.PathLike, **options: Any) -> dict:
    """Split the BraTS patients into training / validation / test and return the datalist.

    ``validate`` checks each of the four images against the segmentation with :mod:`pipelines.validation.checks`;
    ``slice_counts`` reads every segmentation to count positive / negative axial slices per section.

    Args:
        root: the BraTS training folder (one folder per patient, at any depth).
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``channels`` (``["FLAIR", "T1", "T1ce", "T2"]``, the
        order of each entry's images), ``modality``, ``seed``, ``source``, ``counts`` and the sections, lists of
        ``{"image": [flair, t1, t1ce, t2], "label": seg, "patient": folder name}``.

    Raises:
        DataError: see :func:`find_brats_cases`; too few patients; unreadable or mismatched files.
        ValueError: invalid fractions.
    """
    return build_from_cases(root, _find, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.brats --root DIR --output FILE.json``."""
    root = Option("--root", help="BraTS training folder (one folder per patient)")
    return run_command_line(
        argv, module="data_manifests.brats", doc=__doc__, build=build_brats_datalist, source=root, logger=logger
    )


if __name__ == "__main__":
    raise SystemExit(main())
