"""Build a MONAI datalist from the COVID-19-20 challenge (COVID-19 Lung CT Lesion Segmentation) training data.

The folder (or its ``Train/`` sub-folder, used when present) holds ``<case>_ct.nii.gz`` CT volumes and their
``<case>_seg.nii.gz`` lesion labels, e.g. ``volume-covid19-A-0003_ct.nii.gz`` and
``volume-covid19-A-0003_seg.nii.gz`` (``.nii`` too; sub-folders are searched). Labels: 0 background, 1 lesion.
The patient is the case name; a follow-up scan named ``<case>_dayNNN`` belongs to the patient ``<case>``.

Command line::

    python -m data_manifests.covid19_20 --root /data/COVID-19-20_v2/Train --output data_manifests/covid.json
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

__all__ = ["LABELS", "patient_of_case", "find_covid19_20_cases", "build_covid19_20_datalist", "main"]

logger = logging.getLogger(__name__)

LABELS = {"0": "background", "1": "lesion"}
_NAME = re.compile(r"^(?P<case>.+)_(?P<kind>ct|seg)\.nii(\.gz)?$")
_FOLLOW_UP = re.compile(r"_day\d+$")


def patient_of_case(case: str) -> str:
    """The patient of a case name: the name without a trailing ``_dayNNN`` follow-up suffix."""
    return _FOLLOW_UP.sub("", case)


def find_covid19_20_cases(root: str | os.PathLike) -> list[dict]:
    """The ``_ct`` / ``_seg`` pairs under ``root`` (or ``root/Train`` when it exists), sorted by case name.

    Args:
        root: the challenge folder or its ``Train/`` folder.

    Returns:
        ``[{"image": ct path, "label": seg path, "patient": patient id}, ...]`` sorted by case name.

    Raises:
        DataError: missing folder, no cases, a case found twice, a CT without its segmentation or a
            segmentation without its CT, each problem naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: COVID-19-20 folder not found")
    search = root / "Train" if (root / "Train").is_dir() else root
    if search != root:
        logger.info("%s: using its Train/ folder", root)
    found: dict[str, dict[str, Path]] = {"ct": {}, "seg": {}}
    problems: list[str] = []
    for path in sorted(search.rglob("*.nii*")):
        match = _NAME.match(path.name)
        if is_hidden(path) or not match or not path.is_file():
            continue
        kind, case = match["kind"], match["case"]
        if case in found[kind]:
            problems.append(f"{path}: case {case} has a second {kind} file (also {found[kind][case]})")
            continue
        found[kind][case] = path
    cts, segs = found["ct"], found["seg"]
    if not cts and not segs and not problems:
        raise DataError(f"{search}: no <case>_ct.nii.gz / <case>_seg.nii.gz files found (sub-folders searched too)")
    for case, path in sorted(cts.items()):
        if case not in segs:
            problems.append(f"{path}: has no label {case}_seg.nii.gz (or .nii) under {search}")
    for case, path in sorted(segs.items()):
        if case not in cts:
            problems.append(f"{path}: has no image {case}_ct.nii.gz (or .nii) under {search}")
    if problems:
        raise DataError(problems)
    return [{"image": str(cts[c]), "label": str(segs[c]), "patient": patient_of_case(c)} for c in sorted(cts)]


def _find(root: str | os.PathLike) -> tuple[list[dict], dict]:
    """The entries of :func:`find_covid19_20_cases` and the datalist header."""
    entries = find_covid19_20_cases(root)
    header = {
        "name": "COVID-19-20",
        "description": f"COVID-19-20 lung lesion CT: {len(entries)} <case>_ct / <case>_seg pairs under {root};",
        "labels": dict(LABELS),
        "modality": {"0": "CT"},
    }
    return entries, header


def build_covid19_20_datalist(root: str | os.PathLike, **options: Any) -> dict:
    """Split the COVID-19-20 training cases by patient into training / validation / test; return the datalist.

    ``validate`` checks every CT / segmentation pair with :mod:`pipelines.validation.checks` (reads every file);
    ``slice_counts`` reads every segmentation to count positive / negative slices per section.

    Args:
        root: the challenge folder or its ``Train/`` folder.
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``modality``, ``seed``, ``source``, ``counts``
        and the sections, lists of ``{"image", "label", "patient"}``.

    Raises:
        DataError: see :func:`find_covid19_20_cases`; too few patients; unreadable or mismatched files.
        ValueError: invalid fractions.
    """
    return build_from_cases(root, _find, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.covid19_20 --root DIR --output FILE.json``."""
    root = Option("--root", help="folder (or its Train/) with <case>_ct / <case>_seg files")
    return run_command_line(
        argv,
        module="data_manifests.covid19_20",
        doc=__doc__,
        build=build_covid19_20_datalist,
        source=root,
        logger=logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
