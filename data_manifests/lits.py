"""Build a MONAI datalist from the LiTS (Liver Tumor Segmentation Challenge) training data in its native layout.

The folder holds ``volume-N.nii`` CT volumes and their ``segmentation-N.nii`` labels (``.nii.gz`` too), directly
or in sub-folders such as ``Training Batch 1/`` and ``Training Batch 2/``. Labels: 0 background, 1 liver,
2 tumour. Each N is one patient.

Command line::

    python -m data_manifests.lits --root /data/LiTS --output data_manifests/lits.json --relative-to /data/LiTS
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

__all__ = ["LABELS", "find_lits_cases", "build_lits_datalist", "main"]

logger = logging.getLogger(__name__)

LABELS = {"0": "background", "1": "liver", "2": "tumour"}
_NAME = re.compile(r"^(?P<kind>volume|segmentation)-(?P<n>\d+)\.nii(\.gz)?$")


def find_lits_cases(root: str | os.PathLike) -> list[dict]:
    """The volume / segmentation pairs under ``root`` (searched recursively), sorted by N.

    Args:
        root: the LiTS folder.

    Returns:
        ``[{"image": volume path, "label": segmentation path, "patient": "N"}, ...]`` sorted by N.

    Raises:
        DataError: missing folder, no volumes, a number found twice, a volume without its segmentation or a
            segmentation without its volume, each problem naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: LiTS folder not found")
    found: dict[str, dict[int, Path]] = {"volume": {}, "segmentation": {}}
    problems: list[str] = []
    for path in sorted(root.rglob("*.nii*")):
        match = _NAME.match(path.name)
        if is_hidden(path) or not match or not path.is_file():
            continue
        kind, n = match["kind"], int(match["n"])
        if n in found[kind]:
            problems.append(f"{path}: {kind}-{n} found twice (also {found[kind][n]})")
            continue
        found[kind][n] = path
    volumes, segmentations = found["volume"], found["segmentation"]
    if not volumes and not segmentations and not problems:
        raise DataError(f"{root}: no volume-N.nii / segmentation-N.nii files found (sub-folders searched too)")
    for n, path in sorted(volumes.items()):
        if n not in segmentations:
            problems.append(f"{path}: has no segmentation-{n}.nii or segmentation-{n}.nii.gz under {root}")
    for n, path in sorted(segmentations.items()):
        if n not in volumes:
            problems.append(f"{path}: has no volume-{n}.nii or volume-{n}.nii.gz under {root}")
    if problems:
        raise DataError(problems)
    return [{"image": str(volumes[n]), "label": str(segmentations[n]), "patient": str(n)} for n in sorted(volumes)]


def _find(root: str | os.PathLike) -> tuple[list[dict], dict]:
    """The entries of :func:`find_lits_cases` and the datalist header."""
    entries = find_lits_cases(root)
    header = {
        "name": "LiTS",
        "description": f"LiTS liver tumour CT: {len(entries)} volume-N / segmentation-N pairs under {root};",
        "labels": dict(LABELS),
        "modality": {"0": "CT"},
    }
    return entries, header


def build_lits_datalist(root: str | os.PathLike, **options: Any) -> dict:
    """Split the LiTS training volumes by patient into training / validation / test and return the datalist.

    ``validate`` checks every volume / segmentation pair with :mod:`pipelines.validation.checks` (reads every
    file); ``slice_counts`` reads every segmentation to count positive / negative slices per section.

    Args:
        root: the LiTS folder (``volume-N.nii`` and ``segmentation-N.nii``, sub-folders allowed).
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``modality``, ``seed``, ``source``, ``counts``
        and the sections, lists of ``{"image", "label", "patient"}``.

    Raises:
        DataError: see :func:`find_lits_cases`; too few patients; unreadable or mismatched files.
        ValueError: invalid fractions.
    """
    return build_from_cases(root, _find, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.lits --root DIR --output FILE.json``."""
    root = Option("--root", help="LiTS folder with volume-N.nii / segmentation-N.nii files")
    return run_command_line(
        argv, module="data_manifests.lits", doc=__doc__, build=build_lits_datalist, source=root, logger=logger
    )


if __name__ == "__main__":
    raise SystemExit(main())
