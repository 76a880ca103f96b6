"""A head CT phantom in Hounsfield units: the MNI152 brain in CSF, skull, scalp, face and neck.

A CT workflow for the liver or the lungs must leave a scan without its organ alone: a head CT sent to it by
mistake, or as part of a whole-body series, should come back with an empty mask and the segmenter never run. This
phantom is that scan. The brain is real anatomy (the MNI152 template shipped in the ``nilearn`` wheel, grey and
white matter probability maps); the head around it is drawn by :func:`pipelines.phantoms.brain_mr_head.tissue_map`
(layers at a distance from the brain surface and an elliptic column for the face and neck), painted with CT values:

==============  ==================
tissue          HU (drawn per case)
==============  ==================
air             -1000
fat             -110 .. -80
CSF             2 .. 12
white matter    24 .. 30
grey matter     34 .. 42
muscle / skin   40 .. 60
diploe          300 .. 500
cortical bone   900 .. 1400
==============  ==================

then a slight blur (partial volume) and Gaussian noise (3-7 HU). The grid is the template's 1 mm, RAS+, at the
template's world coordinates; :func:`make_head_ct` can thicken the slices. Not a training set: no label, no tumour.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.phantoms.brain_mr import load_mni152
from pipelines.phantoms.brain_mr_head import DEFAULT_PAD_MM, TISSUE_RATIOS, tissue_map
from pipelines.phantoms.common import AIR_HU, case_seed, save_nifti

__all__ = ["HEAD_HU", "NEGATIVE_SLICE_MM", "make_head_ct", "write_head_ct", "write_head_ct_negatives"]

logger = logging.getLogger(__name__)

#: slice thickness of the negative cases written by :func:`write_head_ct_negatives`, in turn
NEGATIVE_SLICE_MM = (5, 2)

#: (low, high) HU of each tissue around the brain, drawn once per case
HEAD_HU = {
    "csf": (2.0, 12.0),
    "bone": (900.0, 1400.0),
    "marrow": (300.0, 500.0),
    "muscle": (40.0, 60.0),
    "fat": (-110.0, -80.0),
}


def make_head_ct(seed: int, slice_mm: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Generate one head CT volume (int16 HU) and its affine.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same volume.
        slice_mm: slice thickness in whole mm (1 mm in-plane always); thicker slices average the 1 mm ones, as a
            scanner's reconstruction does (5 mm is common for routine head CT).

    Returns:
        ``(image, affine)``: int16 HU of 217 x 257 x 235 voxels at 1 mm (fewer slices when thicker), and the
        4x4 RAS+ voxel-to-world matrix.

    Raises:
        ValueError: if ``slice_mm`` is not a whole number of at least 1.
        ModuleNotFoundError: if nilearn (the MNI152 template) is not installed.
    """
    if int(slice_mm) != slice_mm or slice_mm < 1:
        raise ValueError(f"head CT phantom slice_mm must be a whole number of mm, at least 1, got {slice_mm}")
    rng = np.random.default_rng(seed)
    volumes, origin = load_mni152()
    gm, wm, brain = volumes[1], volumes[2], volumes[3] > 0.5
    pads = [(int(round(lo)), int(round(hi))) for lo, hi in DEFAULT_PAD_MM]  # the template is 1 mm
    brain = np.pad(brain, pads)
    gm, wm = np.pad(gm, pads), np.pad(wm, pads)
    tissue = tissue_map(brain, np.ones(3), rng)

    names = ("air", *TISSUE_RATIOS)
    values = np.array([AIR_HU, *(rng.uniform(*HEAD_HU[n]) for n in names[1:])], dtype=np.float32)
    image = values[tissue]
    csf_hu, gm_hu, wm_hu = values[names.index("csf")], rng.uniform(34, 42), rng.uniform(24, 30)
    parenchyma = np.clip(gm + wm, 0.0, 1.0)
    brain_hu = csf_hu * (1.0 - parenchyma) + gm_hu * gm + wm_hu * wm
    image[brain] = brain_hu[brain]
    image = ndimage.gaussian_filter(image, 0.6, truncate=3.0)
    image += rng.uniform(3, 7) * rng.standard_normal(image.shape, dtype=np.float32)

    affine = np.eye(4)
    affine[:3, 3] = origin - np.array([p[0] for p in pads], dtype=np.float64)
    step = int(slice_mm)
    if step > 1:  # average whole groups of 1 mm slices; the slice centre moves to the group's centre
        nz = image.shape[2] // step
        image = image[:, :, : nz * step].reshape(*image.shape[:2], nz, step).mean(axis=3)
        affine[2, 2] = float(step)
        affine[2, 3] += (step - 1) / 2.0
    logger.debug("head CT phantom seed %d: %s voxels, slices of %d mm", seed, image.shape, step)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), affine


def write_head_ct(path: str | Path, seed: int = 0, slice_mm: int = 1) -> Path:
    """Write :func:`make_head_ct`'s volume as a NIfTI file (atomically); return its path."""
    image, affine = make_head_ct(seed, slice_mm)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(image, affine, path)
    return path


def write_head_ct_negatives(task_dir: str | Path, num: int, seed: int = 0) -> list[dict[str, str]]:
    """Write ``num`` head CTs with empty labels into a task folder, as negative cases for a body CT workflow.

    Files: ``negativesTr/head_ct_<i>.nii.gz`` (int16 HU; slices of 5 and 2 mm in turn, :data:`NEGATIVE_SLICE_MM`)
    and ``negativesLabelsTr/head_ct_<i>.nii.gz`` (uint8 zeros of the same grid), each written atomically; files
    already there are kept (the same seed gives the same volume). Case ``i`` uses the seed derived from
    ``(seed, 1000 + i)``.

    Returns:
        The cases, ``{"image": "negativesTr/...", "label": "negativesLabelsTr/..."}`` relative to ``task_dir``.
    """
    task_dir = Path(task_dir)
    cases = []
    for i in range(int(num)):
        name = f"head_ct_{i}.nii.gz"
        image_path, label_path = task_dir / "negativesTr" / name, task_dir / "negativesLabelsTr" / name
        if not (image_path.is_file() and label_path.is_file()):
            image, affine = make_head_ct(case_seed(seed, 1000 + i), NEGATIVE_SLICE_MM[i % len(NEGATIVE_SLICE_MM)])
            for path, array in ((image_path, image), (label_path, np.zeros(image.shape, dtype=np.uint8))):
                path.parent.mkdir(parents=True, exist_ok=True)
                save_nifti(array, affine, path)
            logger.info("wrote head CT negative %d/%d: %s", i + 1, num, image_path)
        cases.append({"image": f"negativesTr/{name}", "label": f"negativesLabelsTr/{name}"})
    return cases
