"""Assemble 3D NIfTI volumes from the LGG segmentation dataset (``kaggle_3m``) TIFF slices and build a datalist.

The dataset (Buda et al., "LGG Segmentation Dataset", Kaggle ``lgg-mri-segmentation/kaggle_3m/``) has one folder
per case, e.g. ``TCGA_CS_4941_19960909/``, holding the slices ``TCGA_CS_4941_19960909_<n>.tif`` (RGB 256 x 256:
pre-contrast, FLAIR, post-contrast) and their masks ``TCGA_CS_4941_19960909_<n>_mask.tif`` (0 / 255), n = 1..N
in slice order. Each case becomes four volumes under an output folder, ``<case>_precontrast.nii.gz``,
``<case>_flair.nii.gz``, ``<case>_postcontrast.nii.gz`` (source dtype) and ``<case>_seg.nii.gz`` (uint8 0 / 1),
and one entry ``{"image": [precontrast, flair, postcontrast], "label": seg}``. The patient is the TCGA id
(the case name without its trailing ``_YYYYMMDD`` date), so two studies of one patient share a section.

Command line::

    python -m data_manifests.kaggle_3m --root /data/kaggle_3m --out-dir /data/kaggle_3m_nifti \\
        --output data_manifests/kaggle_3m.json --relative-to /data/kaggle_3m_nifti
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_manifests.driver import Option, build_from_cases, run_command_line
from pipelines.io.atomic import atomic_write
from pipelines.validation.errors import DataError

__all__ = [
    "CHANNELS",
    "LABELS",
    "OUTPUT_SUFFIXES",
    "Kaggle3mCase",
    "patient_of_case",
    "find_kaggle_3m_cases",
    "assemble_case",
    "build_kaggle_3m_datalist",
    "main",
]

logger = logging.getLogger(__name__)

CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
OUTPUT_SUFFIXES = ("precontrast", "flair", "postcontrast")
LABELS = {"0": "background", "1": "FLAIR abnormality"}
_SLICE = re.compile(r"^(?P<case>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)
_DATE = re.compile(r"_\d{8}$")


@dataclass
class Kaggle3mCase:
    """One case folder: its name, folder and slices ``(n, image path, mask path)`` in slice order."""

    name: str
    folder: Path
    slices: list[tuple[int, Path, Path]] = field(default_factory=list)

    @property
    def patient(self) -> str:
        return patient_of_case(self.name)

    def outputs(self, out_dir: Path) -> dict[str, Path]:
        """The four output volumes: ``precontrast``, ``flair``, ``postcontrast`` and ``seg``."""
        return {s: out_dir / f"{self.name}_{s}.nii.gz" for s in (*OUTPUT_SUFFIXES, "seg")}


def patient_of_case(case: str) -> str:
    """The patient of a case folder name: ``TCGA_CS_4941_19960909`` -> ``TCGA_CS_4941``."""
    return _DATE.sub("", case)


def _case_of_folder(folder: Path, tifs: list[str], problems: list[str]) -> Kaggle3mCase | None:
    """Pair the slices and masks of one folder and check the numbering, without reading any pixel."""
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for name in sorted(tifs):
        path = folder / name
        match = _SLICE.match(name)
        if not match or match["case"] != folder.name:
            problems.append(f"{path}: not named {folder.name}_<n>.tif or {folder.name}_<n>_mask.tif")
            continue
        n = int(match["n"])
        found = masks if match["mask"] else images
        if n in found:
            problems.append(f"{path}: slice {n} of {folder.name} found twice (also {found[n].name})")
            continue
        found[n] = path
    for n, path in sorted(masks.items()):
        if n not in images:
            problems.append(f"{path}: mask without its slice {folder.name}_{n}.tif")
    for n, path in sorted(images.items()):
        if n not in masks:
            problems.append(f"{path}: slice without its mask {folder.name}_{n}_mask.tif")
    numbers = sorted(set(images) | set(masks))
    if not numbers:
        return None
    for n in sorted(set(range(1, numbers[-1] + 1)) - set(numbers)):
        problems.append(
            f"{folder / f'{folder.name}_{n}.tif'}: slice {n} missing (slices of {folder.name} must run "
            f"1..{numbers[-1]} without gaps)"
        )
    return Kaggle3mCase(folder.name, folder, [(n, images[n], masks[n]) for n in sorted(images) if n in masks])


def find_kaggle_3m_cases(root: str | os.PathLike) -> list[Kaggle3mCase]:
    """The case folders under ``root`` (any depth), slices paired and numerically ordered, sorted by name.

    Only names are looked at: no pixel is read.

    Args:
        root: the ``kaggle_3m`` folder.

    Returns:
        The cases, sorted by name.

    Raises:
        DataError: missing folder, no cases, a slice without its mask (or a mask without its slice), a gap in
            the slice numbers, an unexpected file name or two folders of the same name, each naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: kaggle_3m folder not found")
    problems: list[str] = []
    cases: dict[str, Kaggle3mCase] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        tifs = [f for f in filenames if f.lower().endswith((".tif", ".tiff")) and not f.startswith(".")]
        if not tifs:
            continue
        folder = Path(dirpath)
        if folder.name in cases:
            problems.append(f"{folder}: case {folder.name} found twice (also {cases[folder.name].folder})")
            continue
        case = _case_of_folder(folder, tifs, problems)
        if case is not None:
            cases[case.name] = case
    if not cases and not problems:
        raise DataError(f"{root}: no case folders with <case>_<n>.tif / <case>_<n>_mask.tif slices found")
    if problems:
        raise DataError(problems)
    return [cases[name] for name in sorted(cases)]


def _up_to_date(case: Kaggle3mCase, outputs: dict[str, Path], affine: np.ndarray) -> bool:
    """All outputs exist, are newer than every slice, mask and the folder (which changes when files come or go),
    and the mask has the requested affine."""
    if not all(p.is_file() for p in outputs.values()):
        return False
    sources = [case.folder] + [p for _, image, mask in case.slices for p in (image, mask)]
    newest_source = max(p.stat().st_mtime_ns for p in sources)
    if min(p.stat().st_mtime_ns for p in outputs.values()) <= newest_source:
        return False
    import nibabel as nib

    try:
        return bool(np.allclose(nib.load(str(outputs["seg"])).affine, affine))
    except Exception:  # an unreadable old output is simply rewritten
        return False


def _read_tif(path: Path, problems: list[str]) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError...
        reason = " ".join(str(exc).split())[:160]
        problems.append(f"{path}: cannot be read as a TIFF image: {type(exc).__name__}: {reason}")
        return None


def _read_case(case: Kaggle3mCase) -> tuple[np.ndarray, np.ndarray]:
    """The case as arrays ``(x, y, z, 3)`` (x = image column, y = row) and the binary mask ``(x, y, z)``."""
    problems: list[str] = []
    volume = mask_volume = None
    previous: tuple[Path, tuple[int, int]] | None = None
    for k, (_, image_path, mask_path) in enumerate(case.slices):
        image = _read_tif(image_path, problems)
        mask = _read_tif(mask_path, problems)
        if image is None or mask is None:
            continue
        if image.ndim != 3 or image.shape[2] != 3:
            problems.append(
                f"{image_path}: expected an RGB slice (pre-contrast, FLAIR, post-contrast), got shape {image.shape}"
            )
            continue
        if mask.ndim == 3:  # a mask saved as RGB: any channel marks the lesion
            mask = mask.max(axis=2)
        size = image.shape[:2]
        if previous is not None and size != previous[1]:
            problems.append(
                f"{image_path}: slice is {size[0]}x{size[1]} but {previous[0].name} before it is "
                f"{previous[1][0]}x{previous[1][1]}"
            )
            continue
        if mask.shape != size:
            problems.append(f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]}, its slice {size[0]}x{size[1]}")
            continue
        previous = (image_path, size)
        if volume is None:
            volume = np.zeros((size[1], size[0], len(case.slices), 3), dtype=image.dtype)
            mask_volume = np.zeros((size[1], size[0], len(case.slices)), dtype=np.uint8)
        volume[:, :, k, :] = image.transpose(1, 0, 2)
        mask_volume[:, :, k] = (mask > 0).T
    if problems:
        raise DataError(problems)
    return volume, mask_volume


def _affine(spacing: Sequence[float]) -> np.ndarray:
    """RAS+ affine of an axial stack: column -> patient left, row -> posterior, slice -> ``spacing[2]`` apart."""
    return np.diag([-float(spacing[0]), -float(spacing[1]), float(spacing[2]), 1.0])


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(image, tmp))


def assemble_case(
    case: Kaggle3mCase,
    out_dir: str | os.PathLike,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    force: bool = False,
) -> tuple[dict[str, Path], bool]:
    """Write the four volumes of one case (skipped when they are newer than its slices and have the requested
    spacing, unless ``force``).

    The volumes are ``(x, y, z)`` = (image column, image row, slice n) with the affine of an axial stack
    (``diag(-sx, -sy, sz)``, as SimpleITK writes a DICOM series with identity direction), so viewers show each
    slice as the TIFF shows it. Each file is written atomically; the mask is written last.

    Args:
        case: the case (from :func:`find_kaggle_3m_cases`).
        out_dir: folder of the volumes.
        spacing: voxel size in mm, (column, row, slice).
        force: rewrite even when the volumes are up to date.

    Returns:
        The output paths (keys ``precontrast``, ``flair``, ``postcontrast``, ``seg``) and whether they were written.

    Raises:
        DataError: unreadable slice, a slice that is not RGB, a slice or mask of another size than its
            neighbours, each naming the file.
    """
    outputs = case.outputs(Path(out_dir))
    affine = _affine(spacing)
    if not force and _up_to_date(case, outputs, affine):
        logger.debug("%s: volumes up to date, skipped", case.name)
        return outputs, False
    volume, mask = _read_case(case)
    for c, suffix in enumerate(OUTPUT_SUFFIXES):
        _save_nifti(volume[..., c], affine, outputs[suffix])
    _save_nifti(mask, affine, outputs["seg"])
    return outputs, True


def _assemble_all(
    root: str | os.PathLike, out_dir: str | os.PathLike, spacing: Sequence[float], force: bool
) -> tuple[list[dict], dict]:
    """Check the spacing, assemble every case's volumes under ``out_dir``; return the entries and the header."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (mm), got {spacing}")
    out_dir = Path(out_dir)
    cases = find_kaggle_3m_cases(root)
    problems: list[str] = []
    entries: list[dict] = []
    written = 0
    from tqdm import tqdm

    for case in tqdm(cases, desc="kaggle_3m volumes", unit="case", disable=None):
        try:
            outputs, wrote = assemble_case(case, out_dir, spacing=spacing, force=force)
        except DataError as exc:
            problems += exc.problems
            continue
        written += wrote
        image = [str(outputs[s]) for s in OUTPUT_SUFFIXES]
        entries.append({"image": image, "label": str(outputs["seg"]), "patient": case.patient, "case": case.name})
    if problems:
        raise DataError(problems)
    logger.info("%s: %d cases assembled, %d up to date, under %s", root, written, len(cases) - written, out_dir)
    header = {
        "name": "LGG kaggle_3m",
        "description": f"LGG FLAIR abnormality MRI (kaggle_3m): {len(cases)} cases under {root} assembled into "
        f"NIfTI volumes under {out_dir} at an assumed {spacing[0]:g} x {spacing[1]:g} x {spacing[2]:g} mm, images "
        "in the order pre-contrast, FLAIR, post-contrast;",
        "labels": dict(LABELS),
        "channels": list(CHANNELS),
        "modality": {str(i): c for i, c in enumerate(CHANNELS)},
        "spacing": list(spacing),
    }
    return entries, header


def build_kaggle_3m_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    force: bool = False,
    **options: Any,
) -> dict:
    """Assemble every case's volumes under ``out_dir`` (one case in memory at a time), split by patient, return
    the datalist.

    Every case folder is checked (names, masks, slice numbers) before any volume is written. A case that fails
    while its pixels are read is reported with all others at the end; the cases written stay, and a rerun only
    assembles what is missing or out of date. ``validate`` checks the written volumes with
    :mod:`pipelines.validation.checks`; ``slice_counts`` reads every assembled mask to count positive / negative
    slices per section.

    Args:
        root: the ``kaggle_3m`` folder.
        out_dir: folder of the assembled NIfTI volumes (created).
        spacing: voxel size in mm, (column, row, slice); the dataset does not record it.
        force: rewrite volumes that are up to date.
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`.

    Returns:
        The datalist: ``name``, ``description``, ``labels``, ``channels`` (``["pre-contrast", "FLAIR",
        "post-contrast"]``), ``modality``, ``spacing``, ``seed``, ``source``, ``counts`` and the sections, lists of
        ``{"image": [precontrast, flair, postcontrast], "label": seg, "patient": TCGA id, "case": folder}``.

    Raises:
        DataError: see :func:`find_kaggle_3m_cases` and :func:`assemble_case`; too few patients.
        ValueError: invalid fractions or spacing.
    """
    find = functools.partial(_assemble_all, out_dir=out_dir, spacing=spacing, force=force)
    return build_from_cases(root, find, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.kaggle_3m --root DIR --out-dir DIR --output FILE.json``."""
    options = [
        Option("--out-dir", required=True, help="folder for the assembled NIfTI volumes"),
        Option(
            "--spacing",
            type=float,
            nargs=3,
            default=(1.0, 1.0, 1.0),
            metavar=("SX", "SY", "SZ"),
            help="voxel size in mm (column, row, slice); default 1 1 1",
        ),
        Option("--force", action="store_true", help="rewrite volumes that are already up to date"),
    ]
    return run_command_line(
        argv,
        module="data_manifests.kaggle_3m",
        doc=__doc__,
        build=build_kaggle_3m_datalist,
        source=Option("--root", help="kaggle_3m folder (one folder of TIFF slices per case)"),
        options=options,
        logger=logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
