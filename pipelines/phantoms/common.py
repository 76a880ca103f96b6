"""Helpers shared by the phantom generators: smooth random fields, ellipsoids, painting, seeds and NIfTI files.

Geometry helpers take coordinates in mm, as broadcastable grids of shape (nx,1,1), (1,ny,1), (1,1,nz).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from pipelines.io.atomic import atomic_write

__all__ = [
    "smooth_field",
    "ellipsoid_radius",
    "superellipse",
    "paint",
    "case_seed",
    "save_nifti",
    "listed_files_exist",
    "AIR_HU",
    "phantom_parser",
    "run_writer",
]

AIR_HU = -1000.0  # Hounsfield units of air


def smooth_field(rng: np.random.Generator, shape: Sequence[int], ctrl: Sequence[int]) -> np.ndarray:
    """Smooth random field of ``shape`` with unit standard deviation, from a coarse grid of ``ctrl`` points.

    The coarse Gaussian noise is interpolated with separable Gaussian kernels, which is much cheaper than
    filtering a full-size volume and gives an infinitely smooth result.
    """
    coarse = rng.standard_normal(tuple(ctrl)).astype(np.float32)
    mats = []
    for n, c in zip(shape, ctrl, strict=True):
        pos = np.linspace(0.0, c - 1.0, n, dtype=np.float32)[:, None]
        w = np.exp(-0.5 * ((pos - np.arange(c, dtype=np.float32)[None, :]) / 0.8) ** 2)
        mats.append(w / w.sum(axis=1, keepdims=True))
    field = np.tensordot(mats[0], coarse, axes=1)  # (nx, cy, cz)
    field = np.matmul(mats[1], field)  # (nx, ny, cz)
    field = np.matmul(field, mats[2].T)  # (nx, ny, nz)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field.astype(np.float32, copy=False)


def ellipsoid_radius(x, y, z, center, radii, angle: float = 0.0) -> np.ndarray:
    """Normalised ellipsoid radius (<1 inside); ``angle`` rotates the axial (x, y) axes, in radians."""
    dx, dy = x - center[0], y - center[1]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r2 = (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2
    if z is not None:
        r2 = r2 + ((z - center[2]) / radii[2]) ** 2
    return np.sqrt(r2)


def superellipse(x, y, center, a, b, p: float = 2.4) -> np.ndarray:
    """Normalised super-ellipse radius in the axial plane (``a``, ``b`` may vary along z)."""
    return (np.abs((x - center[0]) / a) ** p + np.abs((y - center[1]) / b) ** p) ** (1.0 / p)


def paint(img: np.ndarray, mask: np.ndarray, value) -> None:
    """Set ``img[mask] = value`` where ``value`` is a scalar or an array broadcastable to ``img``."""
    if np.isscalar(value):
        img[mask] = value
    else:
        img[mask] = np.broadcast_to(value, img.shape)[mask]


def case_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed of case ``index`` of a task generated with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` as a NIfTI file with ``affine`` as its qform and sform (mm units), atomically.

    Args:
        array: the voxels, stored with their own dtype.
        affine: 4x4 voxel index to RAS+ world mm.
        path: the file to write (``.nii`` or ``.nii.gz``).
    """
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(img, tmp))


def listed_files_exist(out_dir: Path, items: list) -> bool:
    """True when every item is a dict whose ``image`` and ``label`` (relative to ``out_dir``) are non-empty files."""
    for item in items:
        if not isinstance(item, dict):
            return False
        for key in ("image", "label"):
            p = out_dir / str(item.get(key, ""))
            if not p.is_file() or p.stat().st_size == 0:
                return False
    return True


def phantom_parser(
    module: str,
    doc: str | None,
    out_help: str,
    count: str = "--num-cases",
    default_count: int = 16,
    count_help: str = "number of cases",
) -> argparse.ArgumentParser:
    """The command line every phantom writer shares: ``--out``, a count (``--num-cases``) and ``--seed``.

    Args:
        module: the module's name under ``pipelines.phantoms`` (``liver_ct``), for the usage line.
        doc: the module's docstring; its first line describes the command.
        out_help: what ``--out`` is (the layout written).
        count: the count option's name.
        default_count: its default.
        count_help: what the count is.
    """
    description = (doc or "").splitlines()[0].rstrip(",") if doc else None
    parser = argparse.ArgumentParser(prog=f"python -m pipelines.phantoms.{module}", description=description)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument(count, type=int, default=default_count, help=f"{count_help} (default {default_count})")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    return parser


def run_writer(write: Callable[[], Path], logger: logging.Logger) -> int:
    """Run a phantom writer from its command line, logging where it wrote; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logger.info("done: %s", write())
    return 0
