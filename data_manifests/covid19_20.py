"""Build a MONAI datalist from the COVID-19-20 challenge (COVID-19 Lung CT Lesion Segmentation) training data.

The folder (or its ``Train/`` sub-folder, used when present) holds ``<case>_ct.nii.gz`` CT volumes and their
``<case>_seg.nii.gz`` lesion labels, e.g. ``volume-covid19-A-0003_ct.nii.gz`` and
``volume-covid19-A-0003_seg.nii.gz`` (``.nii`` too; sub-folders are searched). Labels: 0 background, 1 lesion.
The patient is the case name; a follow-up scan named ``<case>_dayNNN`` belongs to the patient ``<case>``.

Command line::

    python -m data_manifests.covid19_20 --root /data/COVID-19-20_v2/Train --output data_manifests/covid.json
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from data_manifests.splits import (
    _check_fractions,
    add_common_arguments,
    build_datalist,
    common_kwargs,
    configure_logging,
    is_hidden,
)
from pipelines.validation.checks import DataError

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


def build_covid19_20_datalist(
    root: str | os.PathLike,
    *,
    output_path: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    validate: bool = True,
    relative_to: str | os.PathLike | None = None,
    slice_counts: bool = True,
) -> dict:
    """Split the COVID-19-20 training cases by patient into training / validation / test; return the datalist.

    Args:
        root: the challenge folder or its ``Train/`` folder.
        output_path: JSON file to write (atomically); ``None`` only returns the datalist.
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the patient shuffle.
        validate: check every CT / segmentation pair with :mod:`pipelines.validation.checks` (reads every file).
        relative_to: folder the written paths are relative to (only with ``output_path``; default its folder).
        slice_counts: read every segmentation to count positive / negative slices per section.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``modality``, ``seed``, ``source``, ``counts``
        and the sections, lists of ``{"image", "label", "patient"}``.

    Raises:
        DataError: see :func:`find_covid19_20_cases`; too few patients; unreadable or mismatched files.
        ValueError: invalid fractions.
    """
    _check_fractions(val_fraction, test_fraction)
    entries = find_covid19_20_cases(root)
    header = {
        "name": "COVID-19-20",
        "description": f"COVID-19-20 lung lesion CT: {len(entries)} <case>_ct / <case>_seg pairs under {root};",
        "labels": dict(LABELS),
        "modality": {"0": "CT"},
    }
    return build_datalist(
        entries,
        header,
        source=root,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        validate=validate,
        slice_counts=slice_counts,
        output_path=output_path,
        relative_to=relative_to,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.covid19_20 --root DIR --output FILE.json``."""
    parser = argparse.ArgumentParser(prog="python -m data_manifests.covid19_20", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder (or its Train/) with <case>_ct / <case>_seg files")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        build_covid19_20_datalist(args.root, **common_kwargs(args))
    except ValueError as exc:  # DataError, or invalid fractions
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
