"""The anatomy of the brain MRI phantom: each case's warp of the MNI152 template, its tumour and its contrasts.

:mod:`pipelines.phantoms.brain_mr` reads the template into a :class:`Template`; the functions here deform it,
draw a glioma with BraTS sub-regions and mass effect, and blend the synthetic contrasts (flair, t1, t1ce, t2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.phantoms.common import smooth_field

__all__ = [
    "Template",
    "Tumour",
    "template_coordinates",
    "mass_effect",
    "sample_template",
    "draw_tumour",
    "tumour_labels",
    "normal_tissue",
    "paint_tumour",
]


# relative intensities of the synthetic contrasts (white matter T1 of the template is about 0.87)
_T2 = {"csf": 1.0, "gm": 0.5, "wm": 0.34}


_FLAIR = {"csf": 0.08, "gm": 0.52, "wm": 0.4}
# tumour sub-regions per channel: (flair, t1, t1ce, t2)
_TUMOUR = {
    "oedema": (0.88, 0.55, 0.57, 0.78),
    "necrosis": (0.5, 0.3, 0.33, 0.92),
    "enhancing": (0.7, 0.58, 1.3, 0.6),
    "non_enhancing": (0.9, 0.47, 0.49, 0.82),
}


@dataclass(frozen=True)
class Template:
    """The template at 1 mm (anti-aliased for one output spacing) and the output grid of that spacing."""

    volumes: np.ndarray  # (4, X, Y, Z) float32: t1 (0..1), gm, wm, brain mask (0..1), 1 mm voxels
    origin: np.ndarray  # world mm of voxel (0, 0, 0) of ``volumes`` (axes are RAS+, 1 mm)
    shape: tuple[int, int, int]  # output grid
    affine: np.ndarray  # output grid voxel -> world mm
    centres: np.ndarray  # (N, 3) world mm of candidate tumour centres (deep cerebral parenchyma)
    depths: np.ndarray  # (N,) their distance to the brain surface in mm


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles in radians (about x, then y, then z)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def template_coordinates(rng: np.random.Generator, tpl: Template) -> np.ndarray:
    """World mm in the template (3, X, Y, Z) of each output voxel: random affine jitter plus a smooth warp."""
    shape = tpl.shape
    spacing = tpl.affine[0, 0]
    grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    centre = tpl.affine[:3, 3] + (np.array(shape) - 1) / 2.0 * spacing
    matrix = _rotation(np.deg2rad(rng.uniform(-4, 4, size=3))) @ np.diag(rng.uniform(0.95, 1.04, size=3))
    shift = rng.uniform(-3, 3, size=3)
    ctrl = tuple(min(5, n) for n in shape)
    amplitude = rng.uniform(1.5, 3.0)  # mm, standard deviation of each displacement component
    coords = np.empty((3, *shape), dtype=np.float32)
    rel = [g * spacing + (tpl.affine[k, 3] - centre[k]) for k, g in enumerate(grids)]  # output mm from the centre
    for k in range(3):
        row = sum(matrix[k, j] * rel[j] for j in range(3))
        coords[k] = row + centre[k] + shift[k] + amplitude * smooth_field(rng, shape, ctrl)
    return coords


def mass_effect(coords: np.ndarray, centre: np.ndarray, radius: float, push: float) -> np.ndarray:
    """Coordinates that sample the anatomy pushed radially away from a tumour of ``radius`` mm by ``push`` mm.

    A template point at distance ``r`` from ``centre`` is sampled at ``r (1 - push / radius)`` inside the tumour
    and at ``r - push radius**2 / r**2`` outside it: monotonic, continuous, and fading with distance.
    """
    d = coords - centre.astype(np.float32)[:, None, None, None]
    r = np.sqrt((d * d).sum(axis=0)) + 1e-3
    inside = r < radius
    scale = np.where(inside, 1.0 - push / radius, 1.0 - push * radius**2 / r**3).astype(np.float32)
    return centre.astype(np.float32)[:, None, None, None] + d * scale


def sample_template(tpl: Template, coords: np.ndarray) -> np.ndarray:
    """Sample the template volumes (t1, gm, wm, brain) at world ``coords``, trilinear, 0 outside."""
    vox = coords - tpl.origin.astype(np.float32)[:, None, None, None]
    return np.stack(
        [ndimage.map_coordinates(v, vox, order=1, mode="constant", cval=0.0, output=np.float32) for v in tpl.volumes]
    )


@dataclass
class Tumour:
    """A tumour drawn for one case, in template world mm."""

    centre: np.ndarray
    radius: float  # tumour core (enhancing + necrosis) radius, mm
    margin: float  # oedema beyond the core, mm
    rim: float  # enhancing rim thickness, mm; 0: non-enhancing tumour; >= radius: solid enhancement
    push: float  # mass effect, mm


def draw_tumour(rng: np.random.Generator, tpl: Template) -> Tumour:
    """Draw the size, kind and position of a tumour (its core at least its radius deep in the brain)."""
    radius = rng.uniform(10.0, 30.0)  # core 2-6 cm across
    ok = tpl.depths >= min(radius + 3.0, tpl.depths.max())
    pick = np.flatnonzero(ok)[rng.integers(int(ok.sum()))]
    radius = min(radius, tpl.depths[pick] - 3.0)
    centre = tpl.centres[pick] + rng.uniform(-1.0, 1.0, size=3)
    kind = rng.random()
    if kind < 0.2:
        rim = 0.0  # non-enhancing (lower-grade-like)
    elif kind < 0.35 and radius < 16.0:
        rim = radius  # small, solidly enhancing
    else:
        rim = rng.uniform(2.5, 7.0)
    return Tumour(
        centre=centre,
        radius=float(radius),
        margin=float(rng.uniform(5.0, 20.0)),
        rim=float(rim),
        push=float(rng.uniform(0.15, 0.3) * radius),
    )


def tumour_labels(
    rng: np.random.Generator, tumour: Tumour, coords: np.ndarray, anatomy: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """BraTS labels (0/1/2/4) of the tumour and the oedema strength (0..1) per voxel.

    ``coords`` are the template coordinates before the mass effect (the tumour is a ball there, made irregular by
    smooth random fields); ``anatomy`` is the displaced (t1, gm, wm, brain) the tumour grows into.
    """
    shape = coords.shape[1:]
    fov = np.array(shape) * spacing

    def field(wavelength: float) -> np.ndarray:  # smooth random field with features of about ``wavelength`` mm
        ctrl = tuple(int(np.clip(round(f / wavelength) + 1, 2, min(24, n))) for f, n in zip(fov, shape, strict=True))
        return smooth_field(rng, shape, ctrl)

    # an ellipsoid (random orientation, axes 0.8-1.25, volume of the ball) made lobulated by smooth fields of two scales
    stretch = rng.uniform(0.8, 1.25, size=3)
    axes = _rotation(rng.uniform(0, 2 * np.pi, size=3)) / (stretch / np.cbrt(stretch.prod()))[:, None]
    d = coords - tumour.centre.astype(np.float32)[:, None, None, None]
    r = np.sqrt(sum(sum(axes[k, j] * d[j] for j in range(3)) ** 2 for k in range(3)))
    brain = anatomy[3] > 0.5
    csf = np.clip(anatomy[3] - anatomy[1] - anatomy[2], 0.0, 1.0)

    rho_core = r / tumour.radius + 0.15 * field(1.2 * tumour.radius) + 0.06 * field(0.5 * tumour.radius)
    core = (rho_core < 1.0) & brain
    label = np.zeros(shape, dtype=np.uint8)
    if tumour.rim <= 0.0:
        label[core] = 1
    else:
        rim = max(tumour.rim, 1.2 * spacing) / tumour.radius
        thickness = rim * np.exp(0.45 * field(0.7 * tumour.radius))  # nodular: 0.4 to 2.5 times ``rim``
        inner = rho_core < 1.0 - thickness
        label[core] = 4
        label[core & inner] = 1

    extent = tumour.radius + tumour.margin
    rho_oed = r / extent + 0.2 * field(extent) + 0.08 * field(0.4 * extent)
    near = rho_core < 1.0 + 4.0 / tumour.radius
    oedema = (rho_oed < 1.0) & brain & (csf < 0.5) & ((anatomy[2] > 0.3) | near) & ~core
    label[oedema] = 2
    strength = np.where(oedema, 0.45 + 0.55 * np.clip((1.0 - rho_oed) / 0.4, 0.0, 1.0), 0.0).astype(np.float32)
    return label, strength


def normal_tissue(rng: np.random.Generator, anatomy: np.ndarray) -> np.ndarray:
    """(flair, t1, t1ce, t2) of normal brain: T1 is the template's, T2 and FLAIR mix the tissue probabilities."""
    t1, gm, wm, brain = anatomy
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    jitter = rng.uniform(0.93, 1.07, size=6)
    t2 = _T2["csf"] * jitter[0] * csf + _T2["gm"] * jitter[1] * gm + _T2["wm"] * jitter[2] * wm
    flair = _FLAIR["csf"] * jitter[3] * csf + _FLAIR["gm"] * jitter[4] * gm + _FLAIR["wm"] * jitter[5] * wm
    return np.stack([flair, t1, t1, t2])


def paint_tumour(
    rng: np.random.Generator, normal: np.ndarray, label: np.ndarray, strength: np.ndarray, non_enhancing: bool
) -> np.ndarray:
    """Blend the tumour sub-regions into the normal contrasts, with soft (partial volume) edges and texture."""
    shape = label.shape
    ctrl = tuple(min(20, n) for n in shape)  # texture of about 8 mm at 2 mm spacing
    out = normal.copy()
    regions = [("oedema", (label == 2) * strength, 0.06)]
    regions.append(("non_enhancing" if non_enhancing else "necrosis", (label == 1).astype(np.float32), 0.15))
    regions.append(("enhancing", (label == 4).astype(np.float32), 0.12))
    for name, weight, heterogeneity in regions:
        if not weight.any():
            continue
        frac = ndimage.gaussian_filter(weight.astype(np.float32), 0.6, truncate=3.0)
        texture = 1.0 + rng.uniform(0.5, 1.0) * heterogeneity * smooth_field(rng, shape, ctrl)
        for c, value in enumerate(_TUMOUR[name]):
            target = value * rng.uniform(0.92, 1.08) * texture
            out[c] += frac * (target - out[c])
    return out
