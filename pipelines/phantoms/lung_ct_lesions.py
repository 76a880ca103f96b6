"""The lesions of the lung CT phantom: peripheral ground-glass opacities and solid nodules, inside the lungs."""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.common import ellipsoid_radius, smooth_field
from pipelines.phantoms.lung_ct_anatomy import Grid

__all__ = ["lesion_window", "add_ground_glass", "add_nodules"]


def lesion_window(rng, lungs: np.ndarray) -> tuple[int, int] | None:
    """A craniocaudal window of slices covering 20-45 % of the lungs' extent, where lesion centres may lie."""
    slices = np.flatnonzero(lungs.any(axis=(0, 1)))
    if len(slices) < 4:
        return None
    lo, hi = int(slices[0]), int(slices[-1])
    length = max(1, int(round(rng.uniform(0.2, 0.45) * (hi - lo + 1))))
    # COVID-19 opacities favour the lower zones: the window start is drawn towards the bases
    start = lo + int(rng.beta(1.3, 2.0) * (hi - lo + 1 - length))
    return start, start + length


def _blob(g: Grid, center: tuple[int, int, int], radii, angle: float = 0.0):
    """The bounding box (slices) of an ellipsoid of ``radii`` (mm) centred on voxel ``center``, and its normalised
    radius over that box."""
    half = [int(np.ceil(1.4 * r / s)) + 1 for r, s in zip(radii, g.spacing, strict=True)]
    box = tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(center, half, g.shape, strict=True))
    i, j, k = center
    centre_mm = (g.x[i, 0, 0], g.y[0, j, 0], g.zmm[0, 0, k])
    rad = ellipsoid_radius(g.x[box[0]], g.y[:, box[1]], g.zmm[:, :, box[2]], centre_mm, radii, angle=angle)
    return box, rad


def _window_mask(nz: int, window: tuple[int, int]) -> np.ndarray:
    zsel = np.zeros(nz, dtype=bool)
    zsel[window[0] : window[1]] = True
    return zsel


def add_ground_glass(rng, img, label, lungs, r_cav, g: Grid, u: float, window, n_ggo: int) -> list[dict]:
    """Paint ``n_ggo`` peripheral ground-glass opacities centred in the slice ``window``, preferably posterior;
    mark them 1 in ``label`` (inside the lungs only) and return their records."""
    if n_ggo == 0 or window is None:
        return []
    cand = np.flatnonzero(lungs & (r_cav > 0.8)[..., None] & _window_mask(lungs.shape[2], window))  # subpleural
    lesions: list[dict] = []
    if len(cand) == 0:
        return lesions
    posterior = g.y[0, :, 0] < 0
    for _ in range(n_ggo):
        ijk = np.unravel_index(cand[rng.integers(len(cand), size=6)], lungs.shape)
        best = int(np.argmax(rng.random(6) + 0.6 * posterior[ijk[1]]))
        center = tuple(int(v[best]) for v in ijk)
        r = rng.uniform(15, 40) * u
        radii = (r * rng.uniform(0.7, 1.2), r * rng.uniform(0.7, 1.2), min(r * rng.uniform(0.6, 1.0), 0.1 * g.chest_mm))
        box, rad = _blob(g, center, radii, angle=rng.uniform(0, np.pi))
        bshape = rad.shape
        rad = rad + 0.3 * smooth_field(rng, bshape, tuple(max(2, min(5, n)) for n in bshape))
        opacity = np.clip((1.0 - rad) / 0.3, 0.0, 1.0)  # hazy margins
        hu = rng.uniform(-680, -380) + 45.0 * smooth_field(rng, bshape, tuple(max(2, min(8, n // 2)) for n in bshape))
        if rng.random() < 0.3:  # crazy paving: thickened interlobular septa over the ground glass
            fine = tuple(max(2, int(n * 0.6)) for n in bshape)
            hu = np.where(np.abs(smooth_field(rng, bshape, fine)) < 0.15, hu + 120, hu)
        if rng.random() < 0.3:  # organising pneumonia: a consolidated core
            hu = np.where(rad < 0.45, rng.uniform(-150, 0), hu)
        in_lung = lungs[box]
        sub = img[box]
        sub += opacity * in_lung * (hu - sub)
        lesion = (opacity > 0.5) & in_lung
        label[box][lesion] = 1
        if lesion.any():
            lesions.append({"kind": "ggo", "center": center, "voxels": int(lesion.sum())})
    return lesions


def add_nodules(rng, img, label, lungs, r_cav, g: Grid, u: float, window, n_nodules: int) -> list[dict]:
    """Paint ``n_nodules`` solid, round, slightly lobulated nodules (0-50 HU) away from the chest wall, centred in
    the slice ``window``; mark them 1 in ``label`` and return their records."""
    lesions: list[dict] = []
    if n_nodules == 0 or window is None:
        return lesions
    cand = np.flatnonzero(lungs & (r_cav < 0.85)[..., None] & _window_mask(lungs.shape[2], window))
    if len(cand) == 0:
        return lesions
    h = min(g.spacing[:2])
    for _ in range(n_nodules):
        r = max(rng.uniform(6, 14) * u, 1.5 * h)
        for _attempt in range(10):
            center = tuple(int(v) for v in np.unravel_index(cand[rng.integers(len(cand))], lungs.shape))
            box, rad = _blob(g, center, (r, r, r))
            ctrl = tuple(max(2, min(3, n)) for n in rad.shape)
            dist = r * (rad + 0.08 * smooth_field(rng, rad.shape, ctrl))  # mm, lobulated
            blob = dist < r
            if (blob & lungs[box]).sum() >= 0.8 * blob.sum() and not (label[box][blob] == 1).any():
                break
        else:
            continue
        cover = np.clip(0.5 + (r - dist) / h, 0.0, 1.0) * lungs[box]
        hu = rng.uniform(0, 50) + 6.0 * smooth_field(rng, rad.shape, ctrl)
        sub = img[box]
        sub += cover * (hu - sub)
        lesion = (cover > 0.5) & lungs[box]
        label[box][lesion] = 1
        lesions.append({"kind": "nodule", "center": center, "voxels": int(lesion.sum())})
    return lesions
