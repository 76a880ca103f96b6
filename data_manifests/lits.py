"""Build a MONAI datalist from the LiTS (Liver Tumor Segmentation Challenge) training data in its native layout.

The folder holds ``volume-N.nii`` CT volumes and their ``segmentation-N.nii`` labels (``.nii.gz`` too), directly
or in sub-folders such as ``Training Batch 1/`` and ``Training Batch 2/``. Labels: 0 background, 1 liver,
2 tumour. Each N is one patient.

Command line::

    python -m data_manifests.lits --root /data/LiTS --output data_manifests/lits.json --relative-to /data/LiTS
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


def build_lits_datalist(
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
    """Split the LiTS training volumes by patient into training / validation / test and return the datalist.

    Args:
        root: the LiTS folder (``volume-N.nii`` and ``segmentation-N.nii``, sub-folders allowed).
        output_path: JSON file to write (atomically); ``None`` only returns the datalist.
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the patient shuffle.
        validate: check every volume / segmentation pair with :mod:`pipelines.validation.checks` (reads every file).
        relative_to: folder the written paths are relative to (only with ``output_path``; default its folder).
        slice_counts: read every segmentation to count positive / negative slices per section.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``modality``, ``seed``, ``source``, ``counts``
        and the sections, lists of ``{"image", "label", "patient"}``.

    Raises:
        DataError: see :func:`find_lits_cases`; too few patients; unreadable or mismatched files.
        ValueError: invalid fractions.
    """
    _check_fractions(val_fraction, test_fraction)
    entries = find_lits_cases(root)
    header = {
        "name": "LiTS",
        "description": f"LiTS liver tumour CT: {len(entries)} volume-N / segmentation-N pairs under {root};",
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
    """Command line: ``python -m data_manifests.lits --root DIR --output FILE.json``."""
    parser = argparse.ArgumentParser(prog="python -m data_manifests.lits", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="LiTS folder with volume-N.nii / segmentation-N.nii files")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        build_lits_datalist(args.root, **common_kwargs(args))
    except ValueError as exc:  # DataError, or invalid fractions
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
