"""Parts of the liver CT phantom drawn apart from the body: liver tumours, the gallbladder, the stomach's contents,
rib cross-sections, the largest component."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipelines.phantoms.common import ellipsoid_radius, smooth_field

__all__ = ["add_tumours", "draw_ribs", "gallbladder_mask", "keep_largest_component", "stomach_contents_hu"]


def add_tumours(rng, img, label, liver, grids, spacing, u, liver_hu) -> None:
    """Paint 0-4 tumours inside ``liver`` into ``img`` and mark them 2 in ``label``."""
    n_tumours = int(rng.choice(5, p=[0.12, 0.34, 0.24, 0.18, 0.12]))
    idx = np.argwhere(liver)
    if n_tumours == 0 or len(idx) == 0:
        return
    x, y, zmm = grids
    min_r = 1.6 * max(spacing[0], spacing[1])
    for _ in range(n_tumours):
        radius = max(rng.uniform(5, 30) * u, min_r)
        radii = radius * rng.uniform(0.8, 1.2, size=3)
        hyper = rng.random() < 0.2
        delta = rng.uniform(15, 40) if hyper else -rng.uniform(15, 40)
        for _attempt in range(10):
            i, j, k = idx[rng.integers(len(idx))]
            half = [int(np.ceil(1.3 * r / s)) + 1 for r, s in zip(radii, spacing, strict=True)]
            lo = [max(0, c - h) for c, h in zip((i, j, k), half, strict=True)]
            hi = [min(n, c + h + 1) for c, h, n in zip((i, j, k), half, liver.shape, strict=True)]
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            bshape = tuple(b - a for a, b in zip(lo, hi, strict=True))
            rad = ellipsoid_radius(
                x[box[0]],
                y[:, box[1]],
                zmm[:, :, box[2]],
                (x[i, 0, 0], y[0, j, 0], zmm[0, 0, k]),
                radii,
                angle=rng.uniform(0, np.pi),
            )
            ctrl = tuple(max(2, min(4, n)) for n in bshape)
            rad = rad + 0.12 * smooth_field(rng, bshape, ctrl)
            blob = rad < 1.0
            inside = blob & liver[box]
            clear = not (label[box][rad < 1.3] == 2).any()  # tumours do not touch each other
            if clear and inside.sum() >= max(8, 0.5 * blob.sum()):
                break
        else:
            continue
        value = liver_hu + delta + 3.0 * smooth_field(rng, bshape, ctrl)
        if not hyper and radius > 15 * u and rng.random() < 0.5:
            value = np.where(rad < 0.5, value - rng.uniform(10, 25), value)  # necrotic core
        if delta < -25 and rng.random() < 0.3:
            value = np.where(rad > 0.9, liver_hu + rng.uniform(5, 15), value)  # thin enhancing rim
        sub = img[box]
        sub[inside] = value[inside]
        label[box][inside] = 2


def keep_largest_component(mask: np.ndarray) -> None:
    """Keep only the largest 6-connected component of ``mask`` (in place)."""
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask &= lab == int(np.argmax(sizes))


def draw_ribs(rng, x, y, zf, center, a, b, u, full) -> np.ndarray:
    """Rib cross-sections: small bone ellipses along the body wall, appearing and vanishing along z."""
    ribs = np.zeros(full, dtype=bool)
    for side in (-1, 1):
        for n in range(int(rng.integers(4, 7))):
            if side == 1:
                theta0 = np.deg2rad(rng.uniform(-100, 50) + 25 * n)
            else:
                theta0 = np.deg2rad(rng.uniform(130, 280) - 25 * n)
            theta = theta0 + side * 0.6 * (zf - 0.5)
            rc = (center[0] + a * np.cos(theta), center[1] + b * np.sin(theta))
            r = np.sqrt(((x - rc[0]) / (5 * u)) ** 2 + ((y - rc[1]) / (5 * u)) ** 2)
            phase = rng.uniform(0, 2 * np.pi)
            present = (np.sin(2 * np.pi * zf * rng.uniform(2, 4) + phase) > 0.2) & (zf > rng.uniform(0.2, 0.5))
            ribs |= (r < 1.0) & present
    return ribs


def gallbladder_mask(rng, x, y, zf, liver_centre, half_w, half_ap, u, z_bot, full) -> np.ndarray:
    """The gallbladder: a pear in the fossa under the right lobe, anterior and medial, reaching its lower edge.

    Four cases in five have one (the rest had a cholecystectomy). Bile is near water (-5..25 HU): a dark,
    smooth-walled sac against the liver, which a liver label leaves out, as TotalSegmentator's and LiTS's do.
    """
    if rng.random() >= 0.8:
        return np.zeros(full, dtype=bool)
    centre = (
        liver_centre[0] + rng.uniform(0.1, 0.25) * half_w,  # medial of the right lobe's centre
        liver_centre[1] + rng.uniform(0.25, 0.5) * half_ap,  # anterior
        z_bot + rng.uniform(0.08, 0.2),  # its fundus at or below the liver's lower edge
    )
    radii = (rng.uniform(11, 18) * u, rng.uniform(11, 18) * u, rng.uniform(0.12, 0.22))
    rad = ellipsoid_radius(x, y, zf, centre, radii, angle=rng.uniform(-0.6, 0.6))
    # the neck narrows upwards: shrink the in-plane radius towards the top of the sac
    taper = np.clip((zf - centre[2]) / radii[2], 0.0, 1.0)
    return np.broadcast_to(rad < 1.0 - 0.4 * taper, full).copy()


def stomach_contents_hu(rng, full) -> np.ndarray | float:
    """What a stomach holds: water (0-20 HU), food (20-60 HU, mottled) or positive oral contrast (150-300 HU).

    Food is as dense as liver parenchyma without contrast, so intensity alone cannot tell the stomach from the
    left lobe that touches it; its wall and shape do.
    """
    kind = rng.choice(3, p=[0.35, 0.5, 0.15])
    if kind == 0:
        return float(rng.uniform(0, 20))
    if kind == 1:
        return rng.uniform(20, 60) + rng.uniform(5, 15) * smooth_field(rng, full, (10, 10, 5))
    return float(rng.uniform(150, 300))
