"""A head around a skull-stripped brain phantom: CSF, skull, scalp, neck and a noisy background, as clinical MRI has.

The brain phantoms of :mod:`pipelines.phantoms.brain_mr` are skull-stripped like BraTS (0 outside the brain).
Clinical brain MRI is not: the brain sits in CSF, skull (dark cortical bone around bright fatty marrow), scalp
(muscle, fat, skin), with the face and neck below and Rician noise in the air around the head. The ``nilearn``
wheel ships only the skull-stripped MNI152 T1 (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``, 0 outside
the brain) and no head template, so :func:`add_head` synthesises the head from the brain mask: layers at a given
distance from the brain surface (a few mm of CSF, about 6 mm of skull, about 7 mm of scalp) whose thickness varies
smoothly, an elliptic column of neck soft tissue below the brain, a smooth bias field over the head, and Rician noise
everywhere outside the brain. The brain voxels are left exactly as they were, so the brain mask of the input is the
ground truth of a brain extraction (:mod:`transforms.brain_extraction`) run on the result.

Tissue intensities are ratios to the median brain intensity of each channel (about white matter):

============  =====  =====  =====  =====
tissue        FLAIR  T1     T1ce   T2
============  =====  =====  =====  =====
CSF           0.15   0.30   0.30   1.60
bone          0.05   0.05   0.05   0.05
marrow        0.90   1.20   1.20   0.90
muscle/skin   0.55   0.60   0.65   0.50
fat           1.00   1.40   1.40   1.10
============  =====  =====  =====  =====

The field of view grows by :data:`DEFAULT_PAD_MM` (the brain phantoms leave only a few mm around the brain), so the
returned affine is shifted; the voxel size and orientation are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from pipelines.phantoms.common import smooth_field

__all__ = ["DEFAULT_PAD_MM", "HeadPhantom", "TISSUE_RATIOS", "add_head", "tissue_map"]

# (low, high) mm added on each axis: Right-Left, Posterior-Anterior (room for the face), Inferior-Superior (neck)
DEFAULT_PAD_MM = ((20.0, 20.0), (20.0, 24.0), (48.0, 16.0))
# outer edge of each layer, in mm from the brain surface (before the smooth thickness variation)
LAYERS_MM = (
    ("csf", 2.5),  # subarachnoid CSF
    ("bone", 4.0),  # inner table
    ("marrow", 6.5),  # diploe
    ("bone", 8.0),  # outer table
    ("muscle", 10.0),  # galea and muscle
    ("fat", 14.0),  # subcutaneous fat
    ("muscle", 15.5),  # skin
)
TISSUE_RATIOS = {
    "csf": {"flair": 0.15, "t1": 0.30, "t1ce": 0.30, "t2": 1.60},
    "bone": {"flair": 0.05, "t1": 0.05, "t1ce": 0.05, "t2": 0.05},
    "marrow": {"flair": 0.90, "t1": 1.20, "t1ce": 1.20, "t2": 0.90},
    "muscle": {"flair": 0.55, "t1": 0.60, "t1ce": 0.65, "t2": 0.50},
    "fat": {"flair": 1.00, "t1": 1.40, "t1ce": 1.40, "t2": 1.10},
}
NECK_RADII_MM = (62.0, 72.0)  # semi-axes of the neck and face column (Right-Left, Posterior-Anterior)


class HeadPhantom(NamedTuple):
    """A brain phantom with its head: ``channels`` (float32, noisy everywhere), ``label`` (uint8, 0 in the head),
    ``affine`` (4x4, the padded field of view), ``brain`` (bool, the true brain mask: the input's non-zero voxels)."""

    channels: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    brain: np.ndarray


def tissue_map(brain: np.ndarray, spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index into ``("air", *tissues)`` per voxel: the layers around ``brain``, then the neck column below it."""
    names = ("air", *TISSUE_RATIOS)
    tissue = np.zeros(brain.shape, dtype=np.uint8)
    outside = ndimage.distance_transform_edt(~brain, sampling=spacing).astype(np.float32)
    ctrl = tuple(max(2, min(5, n // 8)) for n in brain.shape)
    distance = outside / (1.0 + 0.15 * smooth_field(rng, brain.shape, ctrl))  # thickness varies by about 15 %

    # the neck and face: an elliptic column from the lower third of the brain down to the edge of the volume
    lo, hi = np.argwhere(brain).min(axis=0), np.argwhere(brain).max(axis=0)
    centre = (lo + hi) / 2.0 * spacing
    grid = np.ogrid[tuple(slice(0, n) for n in brain.shape)]
    x, y, z = (g * s for g, s in zip(grid, spacing, strict=True))
    top = (lo[2] + 0.3 * (hi[2] - lo[2])) * spacing[2]
    column = (((x - centre[0]) / NECK_RADII_MM[0]) ** 2 + ((y - centre[1]) / NECK_RADII_MM[1]) ** 2 <= 1.0) & (z <= top)
    fatty = smooth_field(rng, brain.shape, tuple(max(2, n // 4) for n in brain.shape)) > 0.6
    tissue[column] = names.index("muscle")
    tissue[column & fatty] = names.index("fat")

    inner = 0.0
    for name, outer in LAYERS_MM:
        tissue[(distance > inner) & (distance <= outer)] = names.index(name)
        inner = outer
    tissue[brain] = 0
    return tissue


def add_head(
    channels: Mapping[str, np.ndarray],
    label: np.ndarray,
    affine: np.ndarray,
    seed: int,
    *,
    pad_mm: Sequence[Sequence[float]] = DEFAULT_PAD_MM,
    noise: float = 0.02,
    zero_background: bool = False,
) -> HeadPhantom:
    """Paint a head (CSF, skull, scalp, neck) and a noisy background around a skull-stripped brain phantom.

    Args:
        channels: the skull-stripped volumes by sequence name (``"flair"``, ``"t1"``, ``"t1ce"``, ``"t2"``, as
            :func:`pipelines.phantoms.brain_mr.make_brain_mri_phantom` returns; other names get T1's contrast),
            0 outside the brain, all of one shape.
        label: the tumour label map of that shape (kept, padded with 0).
        affine: voxel-to-world matrix of the input (axes about RAS+: axis 2 must point superior for the neck).
        seed: seed of ``numpy.random.default_rng`` for the layer thickness, neck fat, bias field and noise.
        pad_mm: ``(low, high)`` mm of field of view added on each axis, rounded to whole voxels.
        noise: standard deviation of the Gaussian noise of each of the real and imaginary parts (Rician noise in
            the magnitude) as a fraction of the channel's median brain intensity.
        zero_background: set the air around the head to exactly 0 (as some scanners and converters do), to test
            that skull-stripped detection does not rely on noise alone.

    Returns:
        A :class:`HeadPhantom`; the brain voxels keep their input values.

    Raises:
        ValueError: if the channels differ in shape from each other or from ``label``, or have no brain voxel.
    """
    shapes = {np.shape(v) for v in channels.values()} | {np.shape(label)}
    if len(shapes) != 1:
        raise ValueError(f"channels and label must share one shape, got {sorted(shapes)}")
    brain_in = np.zeros(np.shape(label), dtype=bool)
    for volume in channels.values():
        brain_in |= np.asarray(volume) != 0
    if not brain_in.any():
        raise ValueError("the channels have no non-zero (brain) voxel to put a head around")
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    pads = [(int(round(lo / s)), int(round(hi / s))) for (lo, hi), s in zip(pad_mm, spacing, strict=True)]
    out_affine = affine.copy()
    out_affine[:3, 3] = affine[:3, :3] @ -np.array([p[0] for p in pads], dtype=np.float64) + affine[:3, 3]
    brain = np.pad(brain_in, pads)
    rng = np.random.default_rng(seed)
    tissue = tissue_map(brain, spacing, rng)
    head = tissue > 0
    names = ("air", *TISSUE_RATIOS)
    ctrl = tuple(min(3, n) for n in brain.shape)
    out = {}
    for key, volume in channels.items():
        volume = np.pad(np.asarray(volume, dtype=np.float32), pads)
        reference = float(np.median(volume[brain]))
        contrast = key if key in TISSUE_RATIOS["csf"] else "t1"
        ratios = np.array([0.0, *(TISSUE_RATIOS[n][contrast] for n in names[1:])], dtype=np.float32)
        clean = ratios[tissue] * reference
        clean = ndimage.gaussian_filter(clean, 0.6)  # partial volume at the tissue boundaries
        clean *= np.exp(0.1 * smooth_field(rng, brain.shape, ctrl))
        sigma = noise * reference
        real = clean + sigma * rng.standard_normal(brain.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(brain.shape, dtype=np.float32)
        painted = np.sqrt(real * real + imag * imag)
        if zero_background:
            painted[~ndimage.binary_dilation(head, iterations=1)] = 0.0
        out[key] = np.where(brain, volume, painted).astype(np.float32)
    return HeadPhantom(out, np.pad(np.asarray(label), pads), out_affine, brain)
