"""Seeded synthetic chest CT phantoms (Hounsfield units) with COVID-19-like lung lesion labels.

The phantoms are the default training data of the lung CT workflow: they let the pipeline run anywhere, without
downloading the COVID-19-20 challenge data. They are not anatomy-accurate; they aim to have the intensities,
structures and label statistics a lung-lesion model meets in non-contrast chest CT: a body with fat and muscle,
ribs that slope down towards the front, spine, sternum and scapulae, a mediastinum with heart, great vessels,
trachea and oesophagus, two lungs with branching bronchovascular trees, the diaphragm domes with the liver below,
and lesions: peripheral ground-glass opacities (some with a consolidated core or a crazy-paving pattern) and solid
nodules.

Geometry follows :mod:`pipelines.phantoms.liver_ct`: voxel axes are RAS+ as NIfTI defines it (axis 0: towards the
patient's Right, axis 1: Anterior, axis 2: Superior), the affine is ``diag(spacing)`` with the volume centred on
the world origin. The right lung and the liver dome are therefore on the HIGH index side of axis 0 (positive world
x), the heart leans to the low side, the spine is posterior (low index of axis 1), the lung bases and the liver
dome are in the bottom slices and the lung apices at the top. The chest is laid out with axis 0 towards the
patient's left and mirrored into RAS+ as the last step; tasks written before that fix (their ``phantom.json``
params lack ``"axes": "RAS"``) had the organs on the wrong side and are rewritten.

Command line::

    python -m pipelines.phantoms.lung_ct --out data/COVID-19-20_phantom --num-cases 16 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from pipelines.io.atomic import write_json_atomic
from pipelines.phantoms.liver_ct import (
    _case_seed,
    _ellipsoid_radius,
    _listed_files_exist,
    _paint,
    _save_nifti,
    _smooth_field,
    _superellipse,
)

__all__ = ["LungCT", "build_lung_ct", "make_lung_ct_phantom", "write_lung_ct_phantom_task", "case_name", "main"]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (192, 192, 64)
DEFAULT_SPACING = (1.8, 1.8, 3.0)
LABELS = {"0": "background", "1": "lesion"}
AIR_HU = -1000.0
HEALTHY_FRACTION = 0.2
CASE_PREFIX = "volume-covid19-phantom"


class LungCT(NamedTuple):
    """Everything :func:`build_lung_ct` makes; :func:`make_lung_ct_phantom` returns the first three fields."""

    image: np.ndarray  #: int16 HU
    label: np.ndarray  #: uint8, 1 = lesion
    affine: np.ndarray  #: 4x4 voxel to RAS+ mm
    lungs: np.ndarray  #: bool, both lungs (lesions included)
    lesions: tuple[dict, ...]  #: one ``{"kind": "ggo" | "nodule", "center": (i, j, k), "voxels": n}`` per lesion


# ---------------------------------------------------------------------------------------------------------------
# tubes: splatting spheres along centre lines (vessels, airways, great vessels)
# ---------------------------------------------------------------------------------------------------------------
def _sample_segments(segments: Sequence[tuple], min_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (mm) and radii along segments ``(p0, p1, r0, r1)``, closer together than the tube's smoothness."""
    pts, rad = [], []
    for p0, p1, r0, r1 in segments:
        p0, p1 = np.asarray(p0, dtype=np.float32), np.asarray(p1, dtype=np.float32)
        step = max(min_step, 0.3 * min(r0, r1))
        n = max(2, int(np.ceil(np.linalg.norm(p1 - p0) / step)) + 1)
        t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
        pts.append(p0 + t * (p1 - p0))
        rad.append(r0 + t[:, 0] * (r1 - r0))
    if not pts:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    return np.concatenate(pts), np.concatenate(rad).astype(np.float32)


def _splat(field: np.ndarray, pts: np.ndarray, radii: np.ndarray, origin, spacing, mode: str, margin=0.0) -> None:
    """Draw spheres of ``radii`` (mm) centred on ``pts`` (mm) into ``field``, in place.

    ``mode="cover"`` keeps the maximum partial-volume coverage in [0, 1]; a sphere thinner than a voxel is drawn
    one voxel wide with its coverage scaled down by its cross-section, so thin vessels fade rather than vanish.
    ``mode="distance"`` keeps the minimum of ``distance to the centre - radius`` (a signed distance to the union
    of the tubes, valid up to ``margin`` mm outside them).
    """
    if len(pts) == 0:
        return
    spacing = np.asarray(spacing, dtype=np.float32)
    origin = np.asarray(origin, dtype=np.float32)
    shape = np.asarray(field.shape)
    flat = field.reshape(-1)
    h = float(min(spacing[0], spacing[1]))
    if mode == "cover":
        r_eff = np.maximum(radii, 0.6 * h)
        weight = np.minimum(1.0, (radii / r_eff) ** 2)
        reach = r_eff + 0.5 * h
    else:
        r_eff, weight, reach = radii, None, radii + margin
    half = np.ceil(reach[:, None] / spacing[None, :]).astype(np.int64)
    keys, inverse = np.unique(half, axis=0, return_inverse=True)
    centre = np.rint((pts - origin) / spacing).astype(np.int64)
    delta = (origin + centre * spacing - pts).astype(np.float32)  # voxel centre minus sphere centre, in mm
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    for g, hs in enumerate(keys):
        offs = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in hs], indexing="ij"), -1).reshape(-1, 3)
        offs_mm = (offs * spacing).astype(np.float32)
        offs_flat = offs @ strides
        members = np.flatnonzero(inverse.ravel() == g)
        chunk = max(1, 1_000_000 // len(offs))
        for s in range(0, len(members), chunk):
            m = members[s : s + chunk]
            d2 = np.zeros((len(m), len(offs)), dtype=np.float32)
            ok = np.ones((len(m), len(offs)), dtype=bool)
            for a in range(3):
                d2 += (delta[m, a][:, None] + offs_mm[None, :, a]) ** 2
                c = centre[m, a]
                if c.min() - hs[a] < 0 or c.max() + hs[a] >= shape[a]:
                    v = c[:, None] + offs[None, :, a]
                    ok &= (v >= 0) & (v < shape[a])
            dist = np.sqrt(d2)
            idx = (centre[m] @ strides)[:, None] + offs_flat[None, :]
            if mode == "cover":
                val = np.clip(0.5 + (r_eff[m][:, None] - dist) / h, 0.0, 1.0) * weight[m][:, None]
                keep = ok & (val > 0)
                np.maximum.at(flat, idx[keep], val[keep].astype(field.dtype))
            else:
                keep = ok & (dist < reach[m][:, None])
                np.minimum.at(flat, idx[keep], (dist - r_eff[m][:, None])[keep].astype(field.dtype))


def _unit(v: Sequence[float]) -> tuple[float, float, float]:
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) + 1e-12
    return (v[0] / n, v[1] / n, v[2] / n)


def _rotate(d: Sequence[float], axis: Sequence[float], angle: float) -> tuple[float, float, float]:
    """Rotate unit vector ``d`` by ``angle`` about the unit ``axis`` perpendicular to it (Rodrigues)."""
    c, s = math.cos(angle), math.sin(angle)
    cross = (axis[1] * d[2] - axis[2] * d[1], axis[2] * d[0] - axis[0] * d[2], axis[0] * d[1] - axis[1] * d[0])
    return (d[0] * c + cross[0] * s, d[1] * c + cross[1] * s, d[2] * c + cross[2] * s)


def _random_perpendicular(rng: np.random.Generator, d: Sequence[float]) -> tuple[float, float, float]:
    """A random unit vector perpendicular to the unit vector ``d``."""
    v = rng.standard_normal(3).tolist()
    dot = v[0] * d[0] + v[1] * d[1] + v[2] * d[2]
    return _unit((v[0] - dot * d[0], v[1] - dot * d[1], v[2] - dot * d[2]))


def _grow_tree(rng, root, targets, r0, inside, max_gen: int = 9, min_radius: float = 0.4) -> list[tuple]:
    """A branching tree of segments ``(p0, p1, r0, r1, generation)`` from ``root`` towards ``targets`` (mm).

    Each trunk heads for one target; every segment splits into a major and a minor child turned by 17-45 degrees
    about a random axis, shorter and thinner, until ``max_gen`` or ``min_radius`` (mm). Children whose end
    ``inside(point)`` rejects are retried in other directions, then halved, then dropped.
    """
    segments: list[tuple] = []
    stack = []
    root = tuple(float(v) for v in root)
    for target in targets:
        vec = [float(t) - r for t, r in zip(target, root, strict=True)]
        dist = math.sqrt(sum(v * v for v in vec))
        if dist > 1e-6:
            stack.append((root, _unit(vec), 0.35 * dist, r0 * rng.uniform(0.85, 1.0), 0))
    while stack:
        p, d, length, r, gen = stack.pop()
        end = None
        for attempt in range(6):
            trial = d if attempt == 0 else _rotate(d, _random_perpendicular(rng, d), rng.uniform(0.3, 0.8))
            step = length * (1.0 if attempt < 4 else 0.5)
            q = (p[0] + trial[0] * step, p[1] + trial[1] * step, p[2] + trial[2] * step)
            if gen == 0 or inside(q):
                end, d = q, trial
                break
        if end is None:
            continue
        r_end = r * 0.9
        segments.append((p, end, r, r_end, gen))
        if gen + 1 >= max_gen or r_end < min_radius:
            continue
        axis = _random_perpendicular(rng, d)
        for sign, ratio, turn in ((1, rng.uniform(0.78, 0.9), (0.3, 0.5)), (-1, rng.uniform(0.6, 0.75), (0.5, 0.8))):
            child = _rotate(d, axis, sign * rng.uniform(*turn))
            stack.append((end, child, length * rng.uniform(0.68, 0.85), r_end * ratio, gen + 1))
    return segments


# ---------------------------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------------------------
def make_lung_ct_phantom(
    seed: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one synthetic non-contrast chest CT volume with a lung-lesion label.

    About 20 % of the seeds give a healthy case (no lesion). The others hold 2-6 COVID-19-like ground-glass
    opacities (-700 to -300 HU, peripheral and subpleural, irregular, 1.5-4 cm in radius; some with a consolidated
    core or crazy-paving reticulation), 1-3 solid nodules (0-50 HU, round, 0.6-1.4 cm in radius), or both. The
    lesions sit in a craniocaudal window that covers part of the lungs, so every case with lesions also has lung
    slices without any. The body is scaled down in-plane to fit a small field of view.

    Contents (HU before noise): air -1000; subcutaneous fat about -100; muscle about 50; ribs (cortex 600-900,
    marrow 200-350, anterior costal cartilage 100-200), vertebrae, sternum, scapulae; mediastinal fat; heart,
    aorta, pulmonary arteries, superior vena cava, oesophagus 35-50; trachea and main bronchi (air); lung parenchyma
    -870 to -820 (denser posteriorly) with bronchovascular trees (vessels 30-50 HU, thinner and fainter towards the
    periphery; airways with a soft-tissue wall for four generations); liver below the right dome, stomach and
    spleen below the left one. Then a slight Gaussian blur (partial volume) and correlated noise (sigma 10-22 HU).

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed, shape and spacing give identical output.
        shape: number of voxels along (x: patient right, y: anterior, z: superior).
        spacing: voxel size in mm along the same axes.

    Returns:
        ``(image, label, affine)``: ``image`` int16 HU of ``shape``; ``label`` uint8 of ``shape`` with
        0 background, 1 lesion (always inside the lungs); ``affine`` float64 4x4, voxel index to RAS+ world mm.

    Raises:
        ValueError: if ``shape`` or ``spacing`` is not three positive numbers.
    """
    case = build_lung_ct(seed, shape, spacing)
    return case.image, case.label, case.affine


def build_lung_ct(
    seed: int, shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING
) -> LungCT:
    """Like :func:`make_lung_ct_phantom`, also returning the lung mask and a description of the lesions."""
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 8 or min(spacing) <= 0:
        raise ValueError(
            f"lung CT phantom needs 3 dimensions of at least 8 voxels and positive spacing; "
            f"got shape {shape}, spacing {spacing}"
        )
    rng = np.random.default_rng(seed)
    g = _Grid(shape, spacing)
    w = _body_wall(rng, g)
    img = np.full(shape, AIR_HU, dtype=np.float32)
    _paint(img, g.column(w.body), w.fat_hu)
    _paint(img, g.column(w.wall & w.body), w.muscle_hu)
    below, dome_top = _abdomen(rng, g, w, img)
    spine = _spine(rng, g, w, img)
    _ribs_and_chest_bones(rng, g, w, img, dome_top)
    med = _mediastinum(rng, g, w, spine, dome_top)
    lungs = _lung_fields(rng, g, w, below, med["mask"])
    soft_hu = _paint_mediastinum(rng, g, w, img, lungs, below, med)

    lung_hu = rng.uniform(-870, -830) + rng.uniform(10, 35) * (-(g.y - w.ccav[1]) / w.b_cav)  # denser posteriorly
    _paint(img, lungs, lung_hu + 12.0 * _smooth_field(rng, shape, (12, 12, 6)))
    label = np.zeros(shape, dtype=np.uint8)
    kind = rng.choice(4, p=[HEALTHY_FRACTION, 0.55, 0.1, 1.0 - HEALTHY_FRACTION - 0.65])  # healthy/ggo/nodule/both
    window = _lesion_window(rng, lungs) if kind else None
    n_ggo = int(rng.integers(2, 7)) if kind in (1, 3) else 0
    n_nodules = int(rng.integers(1, 4)) if kind in (2, 3) else 0
    lesions = _add_ground_glass(rng, img, label, lungs, w.r_cav, g, w.u, window, n_ggo)
    _bronchovascular_trees(rng, g, w, img, lungs, med["hila"], soft_hu)
    lesions += _add_nodules(rng, img, label, lungs, w.r_cav, g, w.u, window, n_nodules)

    # ---- acquisition: partial volume blur, correlated noise, int16 --------------------------------------------
    sx, sy, sz = spacing
    img = ndimage.gaussian_filter(img, (0.6, 0.6, 0.6 * min(1.0, sx / sz)), truncate=3.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.5, 0.5, 0.0), truncate=3.0)
    img += noise * (rng.uniform(10, 22) / (noise[::3, ::3, ::2].std() + 1e-6))
    image = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = g.origin
    # laid out with axis 0 towards the patient's left; NIfTI's RAS+ axis 0 points to the right: mirror
    image, label, lungs = (np.ascontiguousarray(a[::-1]) for a in (image, label, lungs))
    for lesion in lesions:
        i, j, k = lesion["center"]
        lesion["center"] = (shape[0] - 1 - i, j, k)
    return LungCT(image, label, affine, lungs, tuple(lesions))


class _Grid:
    """World coordinates (mm, RAS+, centred) of a volume: broadcastable ``x``, ``y``, ``zmm``, in-plane ``x2``,
    ``y2``, and ``zf``, the height of each slice as a fraction of the field of view (0 = bottom slice)."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        self.shape, self.spacing = shape, spacing
        self.fov = np.array(shape) * np.array(spacing)
        self.origin = -(np.array(shape) - 1) / 2 * np.array(spacing)
        axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s) for n, s in zip(shape, spacing, strict=True)]
        self.x, self.y, self.zmm = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        self.zf = (np.arange(shape[2], dtype=np.float32) / max(shape[2] - 1, 1))[None, None, :]
        self.x2, self.y2 = self.x[:, :, 0], self.y[:, :, 0]
        self.zscale = min(1.0, self.fov[2] / 192.0)  # craniocaudal lengths shrink with a short field of view

    def z_of(self, fraction: float) -> float:
        """The height (mm) of a fraction of the field of view."""
        return float(self.origin[2] + fraction * (self.shape[2] - 1) * self.spacing[2])

    def column(self, mask2: np.ndarray) -> np.ndarray:
        """An in-plane mask repeated along z (a read-only view)."""
        return np.broadcast_to(mask2[..., None], self.shape)


class _Wall(NamedTuple):
    """The in-plane geometry of the chest wall (constant along z); lengths in mm, ``u`` the in-plane scale."""

    u: float
    body: np.ndarray
    wall: np.ndarray  # inside the subcutaneous fat
    cavity: np.ndarray  # the thoracic cavity, inside the ribs
    band: np.ndarray  # the rib layer
    r_cav: np.ndarray  # normalised radius of the cavity outline (1 on it)
    depth: np.ndarray  # mm outside the cavity
    theta: np.ndarray  # angle around the cavity: 0 patient left, pi/2 anterior, -pi/2 posterior
    ccav: tuple[float, float]
    a_cav: float
    b_cav: float
    rib_t: float
    muscle_t: float
    mx: float  # the midline
    fat_hu: float
    muscle_hu: float


def _body_wall(rng, g: _Grid) -> _Wall:
    """Body outline, subcutaneous fat, muscle, the rib layer and the thoracic cavity, scaled to the field of view."""
    x2, y2 = g.x2, g.y2
    half_w, half_ap = rng.uniform(150, 172), rng.uniform(105, 125)
    u = float(min(1.0, 0.47 * g.fov[0] / half_w, 0.47 * g.fov[1] / half_ap))
    half_w, half_ap = half_w * u, half_ap * u
    cx, cy = rng.uniform(-6, 6) * u, rng.uniform(-8, 4) * u
    fat_t, muscle_t, rib_t = rng.uniform(6, 24) * u, rng.uniform(8, 14) * u, rng.uniform(8, 10) * u
    post_extra = rng.uniform(10, 20) * u  # the back wall is thicker (paraspinal muscles)
    a_cav = half_w - fat_t - muscle_t - rib_t
    b_cav = half_ap - fat_t - muscle_t - rib_t - post_extra / 2
    ccav = (cx, cy + post_extra / 2)
    r_cav = _superellipse(x2, y2, ccav, a_cav, b_cav, p=2.1)
    cavity = r_cav < 1.0
    dx, dy = x2 - ccav[0], y2 - ccav[1]
    return _Wall(
        u=u,
        body=_superellipse(x2, y2, (cx, cy), half_w, half_ap, p=2.2) < 1.0,
        wall=_superellipse(x2, y2, (cx, cy), half_w - fat_t, half_ap - fat_t, p=2.2) < 1.0,
        cavity=cavity,
        band=(_superellipse(x2, y2, ccav, a_cav + rib_t, b_cav + rib_t, p=2.1) < 1.0) & ~cavity,
        r_cav=r_cav,
        depth=np.sqrt(dx**2 + dy**2) * (1.0 - 1.0 / np.maximum(r_cav, 1e-3)),
        theta=np.arctan2(dy / b_cav, dx / a_cav),
        ccav=ccav,
        a_cav=a_cav,
        b_cav=b_cav,
        rib_t=rib_t,
        muscle_t=muscle_t,
        mx=cx + rng.uniform(-4, 4) * u,
        fat_hu=rng.uniform(-115, -85),
        muscle_hu=rng.uniform(40, 55),
    )


def _abdomen(rng, g: _Grid, w: _Wall, img: np.ndarray) -> tuple[np.ndarray, dict]:
    """Paint the liver, stomach and spleen below the diaphragm domes; return the sub-diaphragmatic volume and the
    heights of the dome tops (fractions of the field of view, ``-1`` right, ``1`` left)."""
    x, y, zf, x2, y2 = g.x, g.y, g.zf, g.x2, g.y2
    dome_top = {-1: rng.uniform(0.16, 0.3)}
    dome_top[1] = dome_top[-1] - rng.uniform(0.02, 0.07)
    dome_drop = rng.uniform(0.25, 0.4)  # zf fall from the dome top to the costophrenic recesses
    below = np.zeros(g.shape, dtype=bool)
    for side in (-1, 1):
        xd, yd = w.mx + side * 0.5 * w.a_cav, w.ccav[1] + 0.15 * w.b_cav
        rd2 = ((x2 - xd) / (0.75 * w.a_cav)) ** 2 + ((y2 - yd) / (1.1 * w.b_cav)) ** 2
        dome = dome_top[side] - dome_drop * np.minimum(rd2, 1.6)
        below |= (zf < dome[..., None]) & ((x2 - w.mx) * side >= 0)[..., None]
    abdomen = below & w.cavity[..., None]
    liver = abdomen & (x < w.mx + rng.uniform(0.1, 0.4) * w.a_cav)
    _paint(img, abdomen, rng.uniform(30, 45))  # stomach wall, spleen, bowel
    _paint(img, liver, rng.uniform(55, 68))
    centre = (w.mx + 0.45 * w.a_cav, w.ccav[1] + 0.2 * w.b_cav, g.z_of(dome_top[1] - 0.1))
    bubble = _ellipsoid_radius(x, y, g.zmm, centre, (0.25 * w.a_cav, 0.3 * w.b_cav, 0.06 * g.fov[2]))
    if rng.random() < 0.7:
        _paint(img, abdomen & ~liver & (bubble < 1.0), rng.uniform(-1000, -950))  # gastric fundus gas
    return below, dome_top


def _spine(rng, g: _Grid, w: _Wall, img: np.ndarray) -> dict:
    """Paint the vertebrae (cortex, cancellous bone, discs), canal, posterior arch and paraspinal muscles;
    return the vertebral body centre and radii and the in-plane zone the lungs keep away from."""
    x2, y2, u = g.x2, g.y2, w.u
    vb_r = (rng.uniform(15, 19) * u, rng.uniform(13, 16) * u)
    vb_c = (w.mx, w.ccav[1] - w.b_cav + 0.4 * vb_r[1])
    vb_rad = _ellipsoid_radius(x2, y2, None, vb_c, vb_r)
    canal_c = (vb_c[0], vb_c[1] - vb_r[1] - 8 * u)
    canal_rad = _ellipsoid_radius(x2, y2, None, canal_c, (8 * u, 7 * u))
    arch = (canal_rad < 1.6) & ~(canal_rad < 1.0)
    arch |= _ellipsoid_radius(x2, y2, None, (canal_c[0], canal_c[1] - 18 * u), (4 * u, 14 * u)) < 1.0
    for side in (-1, 1):
        tp_c = (canal_c[0] + side * 20 * u, canal_c[1] + 2 * u)
        arch |= _ellipsoid_radius(x2, y2, None, tp_c, (12 * u, 4 * u), angle=side * 0.3) < 1.0  # transverse process
        para = _ellipsoid_radius(x2, y2, None, (canal_c[0] + side * 28 * u, canal_c[1] - 14 * u), (20 * u, 17 * u))
        _paint(img, g.column((para < 1.0) & w.body & ~w.cavity), w.muscle_hu)
    cortical_hu, cancellous_hu = rng.uniform(700, 900), rng.uniform(180, 280)
    disc_period = rng.uniform(26, 32) * g.zscale
    disc = ((g.zmm + rng.uniform(0, disc_period)) % disc_period) < max(5.0, 0.6 * g.spacing[2])
    vb = g.column(vb_rad < 1.0)
    _paint(img, g.column(arch & w.body), cortical_hu)
    _paint(img, g.column(canal_rad < 1.0), rng.uniform(15, 30))
    _paint(img, vb, cortical_hu)
    cort = max(2.5 * u, 0.8 * min(g.spacing[:2]))
    _paint(img, vb & g.column(vb_rad < 1.0 - cort / min(vb_r)), cancellous_hu)
    _paint(img, vb & disc, rng.uniform(70, 100))
    return {"centre": vb_c, "radii": vb_r, "zone": (vb_rad < 1.25) | (canal_rad < 2.2)}


def _ribs_and_chest_bones(rng, g: _Grid, w: _Wall, img: np.ndarray, dome_top: dict) -> None:
    """Paint intercostal muscle and ribs sloping down towards the front (costal cartilage anteriorly), the
    sternum and, with a thick enough muscle layer, the scapulae."""
    u = w.u
    _paint(img, g.column(w.band), w.muscle_hu)
    bx, by = np.nonzero(w.band)
    front = np.abs(np.angle(np.exp(1j * (w.theta[bx, by] + np.pi / 2)))) / np.pi  # 0 posterior, 1 anterior
    period, drop = rng.uniform(22, 28) * g.zscale, rng.uniform(50, 80) * g.zscale
    rib_h = max(0.35 * period, 1.2 * g.spacing[2])
    phase = (g.zmm[0] + drop * front[:, None] + rng.uniform(0, period)) % period - period / 2  # (nband, nz)
    depth = (w.depth[bx, by][:, None] - w.rib_t / 2) / max(w.rib_t / 2, g.spacing[0])
    rib_e = (phase / (rib_h / 2)) ** 2 + depth**2
    vals = np.where(rib_e < 0.45, rng.uniform(200, 350), rng.uniform(600, 900))  # marrow, cortex
    vals = np.where((front > 0.85)[:, None], rng.uniform(100, 200), vals)  # costal cartilage
    img[bx, by, :] = np.where(rib_e < 1.0, vals, img[bx, by, :])

    st_c = (w.mx, w.ccav[1] + w.b_cav + 0.5 * w.rib_t)
    st_rad = _ellipsoid_radius(g.x2, g.y2, None, st_c, (rng.uniform(13, 18) * u, 0.6 * w.rib_t))
    sternum = g.column(st_rad < 1.0) & (g.zf > dome_top[-1] - 0.05)
    _paint(img, sternum, rng.uniform(600, 800))
    _paint(img, sternum & g.column(st_rad < 0.6), rng.uniform(200, 320))
    if w.muscle_t > 9 * u:
        dx, dy = g.x2 - w.ccav[0], g.y2 - w.ccav[1]
        for side in (-1, 1):
            ang = np.arctan2(dy / w.b_cav, side * dx / w.a_cav)  # mirrored for the right side
            plate = (w.depth > w.rib_t + 2 * u) & (w.depth < w.rib_t + 6 * u) & (ang > -1.25) & (ang < -0.45)
            scapula = g.column(plate) & (g.zf > rng.uniform(0.45, 0.6)) & (img > 0)
            _paint(img, scapula, rng.uniform(450, 700))


def _mediastinum(rng, g: _Grid, w: _Wall, spine: dict, dome_top: dict) -> dict:
    """Lay out the heart, great vessels, oesophagus, trachea and main bronchi.

    Returns:
        ``{"mask": where the lungs may not go, "heart": normalised heart radius, "vessel_dist" and "airway_dist":
        signed distances (mm) to the vessel and airway tubes, "hila": {side: hilum point (mm)}}``.
    """
    u, mx, z_of = w.u, w.mx, g.z_of
    vb_c, vb_r = spine["centre"], spine["radii"]
    z_car = rng.uniform(0.58, 0.68)  # carina, as a fraction of the field of view
    tr_c = (mx + rng.uniform(-3, 3) * u, vb_c[1] + vb_r[1] + rng.uniform(18, 24) * u)
    tr_r = rng.uniform(7.5, 9.5) * u
    hila = {}
    airways = [((*tr_c, z_of(z_car)), (*tr_c, z_of(1.05)), tr_r + 2, tr_r + 2)]  # radii include a 2 mm wall
    for side in (-1, 1):
        steep = 0.04 if side == -1 else 0.08  # the right main bronchus is shorter and steeper
        hz = z_of(z_car - steep - rng.uniform(0.0, 0.03))
        hila[side] = np.array([mx + side * rng.uniform(30, 38) * u, tr_c[1] - rng.uniform(0, 6) * u, hz])
        airways.append(((*tr_c, z_of(z_car)), tuple(hila[side]), 0.8 * tr_r + 2, 0.6 * tr_r + 2))

    asc = (mx - rng.uniform(6, 14) * u, w.ccav[1] + rng.uniform(0.15, 0.3) * w.b_cav)
    desc = (vb_c[0] + rng.uniform(16, 24) * u, vb_c[1] + rng.uniform(0.2, 0.6) * vb_r[1])
    ao_r, z_arch = rng.uniform(11, 15) * u, rng.uniform(0.78, 0.86)
    heart_c = (
        mx + rng.uniform(18, 32) * u,
        w.ccav[1] + rng.uniform(0.2, 0.35) * w.b_cav,
        dome_top[-1] + rng.uniform(0.12, 0.18),
    )
    heart_r = (rng.uniform(0.4, 0.48) * w.a_cav, rng.uniform(0.45, 0.55) * w.b_cav, rng.uniform(0.22, 0.28))
    arc = (1 - np.cos(np.linspace(0.0, np.pi, 9))) / 2
    arch = [
        (
            asc[0] + (desc[0] - asc[0]) * a,
            asc[1] + (desc[1] - asc[1]) * a,
            z_of(z_arch) + 0.04 * g.fov[2] * np.sin(np.pi * a),
        )
        for a in arc
    ]
    vessels = [((*asc, z_of(heart_c[2])), arch[0], ao_r * 1.1, ao_r)]  # ascending aorta
    vessels += [(arch[i], arch[i + 1], ao_r, ao_r * 0.95) for i in range(len(arch) - 1)]
    vessels.append((arch[-1], (*desc, z_of(-0.05)), ao_r * 0.95, ao_r * 0.85))  # descending aorta
    pa_c = (mx + rng.uniform(8, 16) * u, asc[1] - rng.uniform(0, 8) * u, z_of(z_car - 0.1))
    vessels.append(((pa_c[0] + 10 * u, w.ccav[1] + 0.35 * w.b_cav, z_of(heart_c[2] + 0.05)), pa_c, 13 * u, 12 * u))
    for side in (-1, 1):
        vessels.append((pa_c, tuple(hila[side] + np.array([0, 8 * u, 0.03 * g.fov[2]])), 10 * u, 8 * u))
    svc = (mx - rng.uniform(24, 30) * u, asc[1] - rng.uniform(0, 8) * u)
    vessels.append(((*svc, z_of(heart_c[2] + 0.1)), (*svc, z_of(1.05)), 9 * u, 9 * u))
    eso = (mx + rng.uniform(2, 8) * u, vb_c[1] + vb_r[1] + 6 * u)
    vessels.append(((*eso, z_of(-0.05)), (*eso, z_of(1.05)), 6.5 * u, 6.5 * u))

    margin, step = 4.0 * u, 0.5 * min(g.spacing)
    vessel_dist = np.full(g.shape, 1e3, dtype=np.float32)
    _splat(vessel_dist, *_sample_segments(vessels, step), g.origin, g.spacing, "distance", margin)
    airway_dist = np.full(g.shape, 1e3, dtype=np.float32)
    _splat(airway_dist, *_sample_segments(airways, step), g.origin, g.spacing, "distance", margin)
    heart = _ellipsoid_radius(g.x, g.y, g.zf, heart_c, heart_r, angle=rng.uniform(0.3, 0.6))
    # a central wedge from the spine to the sternum, wide behind (oesophagus, aorta), narrow in front (the
    # anterior junction line), plus margins around the heart, the great vessels and the airways
    band_w = rng.uniform(14, 22) * u
    front = vb_c[1] + vb_r[1]
    ant = np.clip((g.y2 - front) / (w.ccav[1] + w.b_cav - front), 0.0, 1.0)
    wedge = (np.abs(g.x2 - mx) < band_w * (1.1 - 0.85 * ant)) | spine["zone"]
    mask = g.column(wedge) | (heart < 1.12) | (vessel_dist < margin) | (airway_dist < margin)
    return {"mask": mask, "heart": heart, "vessel_dist": vessel_dist, "airway_dist": airway_dist, "hila": hila}


def _lung_fields(rng, g: _Grid, w: _Wall, below: np.ndarray, mediastinum: np.ndarray) -> np.ndarray:
    """Two lungs: super-ellipses narrowing to the apices, clipped by the cavity, the mediastinum and the domes;
    each lung keeps its largest connected part."""
    z_mid, z_apex = rng.uniform(0.5, 0.6), rng.uniform(1.0, 1.15)
    prof = np.sqrt(np.clip(1.0 - ((np.maximum(g.zf, z_mid) - z_mid) / (z_apex - z_mid)) ** 2, 0.0, 1.0))
    deform = 0.05 * _smooth_field(rng, g.shape, (6, 6, 4))
    allowed = g.column(w.cavity) & ~below & ~mediastinum
    lungs = np.zeros(g.shape, dtype=bool)
    for side in (-1, 1):
        shrink = 0.9 if side == 1 else 1.0  # the left lung is smaller
        lc = (w.mx + side * 0.52 * w.a_cav, w.ccav[1] - 0.05 * w.b_cav)
        lr = _superellipse(g.x, g.y, lc, 0.62 * w.a_cav * prof * shrink + 1e-3, 1.08 * w.b_cav * prof + 1e-3, p=2.2)
        part = (lr + deform < 1.0) & g.column(side * (g.x2 - w.mx) > 0) & allowed
        lab, n = ndimage.label(part)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            part = lab == int(np.argmax(sizes))
        lungs |= part
    return lungs


def _paint_mediastinum(rng, g: _Grid, w: _Wall, img, lungs, below, med: dict) -> float:
    """Paint mediastinal fat (soft tissue at the apices), pericardial fat, the heart, the vessel tubes and the
    airways with their walls; return the soft-tissue HU used for blood and muscle."""
    cav = g.column(w.cavity) & ~below
    region = cav & ~lungs
    fill = np.where(g.zf > 0.85, rng.uniform(-60, 20), rng.uniform(-105, -80)).astype(np.float32)
    _paint(img, region, np.broadcast_to(fill, g.shape))
    _paint(img, (med["heart"] < 1.1) & region, rng.uniform(-105, -85))  # pericardial fat
    soft_hu = rng.uniform(35, 50)
    _paint(img, (med["heart"] < 1.0) & region, soft_hu)
    h = min(g.spacing[:2])
    for dist, value in (
        (med["vessel_dist"], soft_hu),
        (med["airway_dist"], soft_hu + 20),
        (med["airway_dist"] + 2, AIR_HU),
    ):
        cover = np.clip(0.5 - dist[region] / h, 0.0, 1.0)
        img[region] += cover * (value - img[region])
    return soft_hu


def _bronchovascular_trees(rng, g: _Grid, w: _Wall, img, lungs, hila: dict, soft_hu: float) -> None:
    """Paint arterial and venous trees from each hilum (thinner and fainter towards the periphery) and airways,
    with a soft-tissue wall, beside the arteries of the first four generations."""
    lung_idx = np.flatnonzero(lungs)
    if len(lung_idx) == 0:
        return
    origin, spacing, shape = g.origin, g.spacing, g.shape
    vessel = np.zeros(shape, dtype=np.float32)
    wall = np.zeros(shape, dtype=np.float32)
    lumen = np.zeros(shape, dtype=np.float32)
    step = 0.5 * min(spacing)
    min_r = max(0.4, 0.2 * min(spacing[:2]))  # thinner vessels would not show in coarse voxels

    def inside(q: Sequence[float]) -> bool:
        i = [int(round((q[a] - origin[a]) / spacing[a])) for a in range(3)]
        return all(0 <= i[a] < shape[a] for a in range(3)) and bool(lungs[i[0], i[1], i[2]])

    world = origin + np.array(np.unravel_index(lung_idx, shape)).T * np.array(spacing)
    for side in (-1, 1):
        mine = world[(world[:, 0] - w.mx) * side > 0]
        if len(mine) < 10:
            continue
        order = np.argsort(mine[:, 2], kind="stable")
        n = len(order)
        # one trunk per craniocaudal band of the lung, towards a random point of that band
        bands = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
        targets = [mine[order[int(rng.uniform(max(0.0, q - 0.07), min(1.0, q + 0.07)) * (n - 1))]] for q in bands]
        arteries = _grow_tree(rng, hila[side], targets, rng.uniform(5.0, 6.5) * w.u, inside, min_radius=min_r)
        vein_root = hila[side] + np.array([0.0, rng.uniform(-5, 5) * w.u, -0.08 * g.fov[2]])
        veins = _grow_tree(rng, vein_root, targets[:5], rng.uniform(4.5, 6.0) * w.u, inside, min_radius=min_r)
        _splat(vessel, *_sample_segments([s[:4] for s in arteries + veins], step), origin, spacing, "cover")
        offset = np.array(_random_perpendicular(rng, (0.0, 0.0, 1.0)))
        airways = []
        for p0, p1, r0, r1, gen in arteries:
            if gen > 3:
                continue
            p0, p1 = np.asarray(p0), np.asarray(p1)
            d = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
            o = offset - offset.dot(d) * d
            o /= np.linalg.norm(o) + 1e-9
            airways.append((p0 + o * 2.2 * r0, p1 + o * 2.2 * r1, 0.85 * r0, 0.85 * r1))
        pts, rad = _sample_segments(airways, step)
        _splat(lumen, pts, rad, origin, spacing, "cover")
        _splat(wall, pts, rad * 1.2 + 0.6, origin, spacing, "cover")
    for cover, value in ((wall, soft_hu - 10), (lumen, AIR_HU), (vessel, rng.uniform(30, 50))):
        where = lungs & (cover > 0)
        img[where] += cover[where] * (value - img[where])


def _lesion_window(rng, lungs: np.ndarray) -> tuple[int, int] | None:
    """A craniocaudal window of slices covering 20-45 % of the lungs' extent, where lesion centres may lie."""
    slices = np.flatnonzero(lungs.any(axis=(0, 1)))
    if len(slices) < 4:
        return None
    lo, hi = int(slices[0]), int(slices[-1])
    length = max(1, int(round(rng.uniform(0.2, 0.45) * (hi - lo + 1))))
    # COVID-19 opacities favour the lower zones: the window start is drawn towards the bases
    start = lo + int(rng.beta(1.3, 2.0) * (hi - lo + 1 - length))
    return start, start + length


def _blob(g: _Grid, center: tuple[int, int, int], radii, angle: float = 0.0):
    """The bounding box (slices) of an ellipsoid of ``radii`` (mm) centred on voxel ``center``, and its normalised
    radius over that box."""
    half = [int(np.ceil(1.4 * r / s)) + 1 for r, s in zip(radii, g.spacing, strict=True)]
    box = tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(center, half, g.shape, strict=True))
    i, j, k = center
    centre_mm = (g.x[i, 0, 0], g.y[0, j, 0], g.zmm[0, 0, k])
    rad = _ellipsoid_radius(g.x[box[0]], g.y[:, box[1]], g.zmm[:, :, box[2]], centre_mm, radii, angle=angle)
    return box, rad


def _window_mask(nz: int, window: tuple[int, int]) -> np.ndarray:
    zsel = np.zeros(nz, dtype=bool)
    zsel[window[0] : window[1]] = True
    return zsel


def _add_ground_glass(rng, img, label, lungs, r_cav, g: _Grid, u: float, window, n_ggo: int) -> list[dict]:
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
        radii = (r * rng.uniform(0.7, 1.2), r * rng.uniform(0.7, 1.2), min(r * rng.uniform(0.6, 1.0), 0.1 * g.fov[2]))
        box, rad = _blob(g, center, radii, angle=rng.uniform(0, np.pi))
        bshape = rad.shape
        rad = rad + 0.3 * _smooth_field(rng, bshape, tuple(max(2, min(5, n)) for n in bshape))
        opacity = np.clip((1.0 - rad) / 0.3, 0.0, 1.0)  # hazy margins
        hu = rng.uniform(-680, -380) + 45.0 * _smooth_field(rng, bshape, tuple(max(2, min(8, n // 2)) for n in bshape))
        if rng.random() < 0.3:  # crazy paving: thickened interlobular septa over the ground glass
            fine = tuple(max(2, int(n * 0.6)) for n in bshape)
            hu = np.where(np.abs(_smooth_field(rng, bshape, fine)) < 0.15, hu + 120, hu)
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


def _add_nodules(rng, img, label, lungs, r_cav, g: _Grid, u: float, window, n_nodules: int) -> list[dict]:
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
            dist = r * (rad + 0.08 * _smooth_field(rng, rad.shape, ctrl))  # mm, lobulated
            blob = dist < r
            if (blob & lungs[box]).sum() >= 0.8 * blob.sum() and not (label[box][blob] == 1).any():
                break
        else:
            continue
        cover = np.clip(0.5 + (r - dist) / h, 0.0, 1.0) * lungs[box]
        hu = rng.uniform(0, 50) + 6.0 * _smooth_field(rng, rad.shape, ctrl)
        sub = img[box]
        sub += cover * (hu - sub)
        lesion = (cover > 0.5) & lungs[box]
        label[box][lesion] = 1
        lesions.append({"kind": "nodule", "center": center, "voxels": int(lesion.sum())})
    return lesions


# ---------------------------------------------------------------------------------------------------------------
# writing a COVID-19-20 challenge style folder
# ---------------------------------------------------------------------------------------------------------------
def case_name(index: int) -> str:
    """Name of case ``index``: ``volume-covid19-phantom-0000`` (the challenge's ``volume-covid19-A-0000`` style)."""
    return f"{CASE_PREFIX}-{int(index):04d}"


def _task_is_complete(out_dir: Path, num_cases: int, params: dict) -> bool:
    """True when ``out_dir/phantom.json`` lists ``num_cases`` cases, made with ``params``, whose files exist."""
    try:
        with open(out_dir / "phantom.json", encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("params") != params:
        return False
    cases = record.get("cases")
    if not isinstance(cases, list) or len(cases) != num_cases:
        return False
    return _listed_files_exist(out_dir, cases)


def write_lung_ct_phantom_task(
    out_dir: str | os.PathLike,
    num_cases: int = 16,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
) -> Path:
    """Write ``num_cases`` chest CT phantoms in the layout of the COVID-19-20 lung lesion challenge.

    Layout: ``Train/volume-covid19-phantom-<i>_ct.nii.gz`` (int16 HU) and ``Train/...-<i>_seg.nii.gz``
    (uint8, 1 = lesion), then ``phantom.json``: the generator parameters, the case list and the label names.
    Every file is written to a temporary name and renamed, and ``phantom.json`` is written last, so an
    interrupted run never looks complete. Case ``i`` uses a seed derived from ``(seed, i)``, so a case does not
    depend on ``num_cases``.

    Idempotent: when ``phantom.json`` already lists ``num_cases`` cases made with the same seed, shape and spacing
    and all their files exist, nothing is rewritten.

    Args:
        out_dir: folder to create or complete (e.g. ``data/COVID-19-20_phantom``).
        num_cases: number of image/label pairs, at least 1.
        seed: base seed of the task.
        shape: voxels per case along (x, y, z).
        spacing: voxel size in mm.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_cases`` < 1 or the shape / spacing is invalid.
    """
    if int(num_cases) < 1:
        raise ValueError(f"{out_dir}: num_cases must be at least 1, got {num_cases}")
    shape_l, spacing_l = [int(s) for s in shape], [float(s) for s in spacing]
    if len(shape_l) != 3 or len(spacing_l) != 3 or min(shape_l) < 8 or min(spacing_l) <= 0:
        raise ValueError(
            f"{out_dir}: lung CT phantom needs 3 dimensions of at least 8 voxels and positive spacing; "
            f"got shape {tuple(shape)}, spacing {tuple(spacing)}"
        )
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "shape": shape_l, "spacing": spacing_l}
    params["axes"] = "RAS"  # absent from tasks written with the organs mirrored: those are rewritten
    if _task_is_complete(out_dir, int(num_cases), params):
        logger.info("lung CT phantom task %s is already complete (%d cases); nothing to do", out_dir, num_cases)
        return out_dir
    (out_dir / "Train").mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(int(num_cases)):
        name = case_name(i)
        image, label, affine = make_lung_ct_phantom(_case_seed(seed, i), shape=shape_l, spacing=spacing_l)
        _save_nifti(image, affine, out_dir / "Train" / f"{name}_ct.nii.gz")
        _save_nifti(label, affine, out_dir / "Train" / f"{name}_seg.nii.gz")
        lesion_slices = int(label.any(axis=(0, 1)).sum())
        cases.append({"image": f"Train/{name}_ct.nii.gz", "label": f"Train/{name}_seg.nii.gz",
                      "lesion_voxels": int(label.sum()), "lesion_slices": lesion_slices})  # fmt: skip
        logger.info("wrote lung CT phantom %d/%d: %s (%d lesion voxels)", i + 1, num_cases, name, int(label.sum()))
    record = {
        "name": "COVID-19-20 lung CT phantom",
        "description": "Synthetic non-contrast chest CT phantoms (seeded, generated by pipelines.phantoms.lung_ct) "
        "with COVID-19-like lung lesion labels, laid out like the COVID-19-20 challenge's Train folder. "
        "Not patient data.",
        "reference": "pipelines/phantoms/lung_ct.py",
        "licence": "CC0 (synthetic data)",
        "modality": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(cases),
        "cases": cases,
        "params": params,
    }
    write_json_atomic(record, out_dir / "phantom.json")
    logger.info("lung CT phantom task written to %s (%d cases)", out_dir, len(cases))
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pipelines.phantoms.lung_ct --out DIR --num-cases N --seed S``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.phantoms.lung_ct", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (COVID-19-20 challenge layout)")
    parser.add_argument("--num-cases", type=int, default=16, help="number of cases (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING), metavar=("SX", "SY", "SZ"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = write_lung_ct_phantom_task(args.out, args.num_cases, args.seed, args.shape, args.spacing)
    logger.info("done: %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
