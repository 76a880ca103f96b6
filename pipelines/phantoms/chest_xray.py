"""Seeded synthetic frontal (PA) chest radiographs with lung masks, in four classes of the COVID-19 Radiography
Database: ``COVID``, ``Normal``, ``Lung_Opacity`` and ``Viral Pneumonia``.

The phantoms are the default data of the chest X-ray workflow: they let classification and lung segmentation run
anywhere, without downloading the database. They are not anatomy-accurate; they aim to look like a radiograph to a
small CNN: dark lung fields (the left one smaller, with the cardiac notch) with branching vascular markings, a
bright mediastinum and heart shadow, spine, clavicles, posterior and anterior ribs, diaphragm domes with a gastric
bubble, shoulders and humeral heads, sometimes breast shadows; then a film-like response, heel effect, blur and
noise, and a random pose (rotation, scale, shift) and inspiration depth.

The class sets the pathology inside the lungs, with a random severity so that some cases are subtle:

* ``Normal``: none.
* ``COVID``: bilateral, peripheral, lower-zone predominant patchy ground-glass haze.
* ``Lung_Opacity``: a focal or lobar consolidation, dense, usually in one lung, sometimes with a sharp fissure
  border and air bronchograms.
* ``Viral Pneumonia``: a diffuse bilateral interstitial (reticular) pattern with perihilar haze.

Image coordinates: the patient's right is on the image left (the PA convention); rows go from head to feet.
The anatomy, the pathology and the acquisition noise use three independent random streams of the seed, so two
classes drawn with the same seed show the same patient, pose and noise, differing only in the lungs.

Command line::

    python -m pipelines.phantoms.chest_xray --out data/COVID-19_Radiography_phantom --num-per-class 24 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, special

from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.phantoms.liver_ct import _smooth_field

__all__ = [
    "CATEGORIES",
    "make_chest_xray_phantom",
    "write_chest_xray_phantom_dataset",
    "write_default_dataset",
    "main",
]

logger = logging.getLogger(__name__)

CATEGORIES = ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia")
DEFAULT_SIZE = 256


def _field(rng: np.random.Generator, n: int, ctrl: int) -> np.ndarray:
    """Smooth 2D random field of shape ``(n, n)``, unit standard deviation, ``ctrl`` control points per side."""
    return _smooth_field(rng, (n, n, 1), (ctrl, ctrl, 1))[..., 0]


def _sigmoid(v):
    return special.expit(v)


class _Frame:
    """Canonical coordinates of every pixel: ``X`` in [-1, 1] from image left to right, ``Y`` from top to bottom.

    The pose (rotation, scale, shift) maps the pixel grid into this frame, so the anatomy is drawn directly in its
    own coordinates with no resampling.
    """

    def __init__(self, size: int, angle: float, scale: float, shift: Sequence[float]):
        self.size, self.angle, self.scale, self.shift = size, float(angle), float(scale), tuple(shift)
        v = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
        dx, dy = v[None, :] - self.shift[0], v[:, None] - self.shift[1]  # columns, rows
        c, s = np.cos(self.angle), np.sin(self.angle)
        self.X = ((c * dx + s * dy) / scale).astype(np.float32)
        self.Y = ((-s * dx + c * dy) / scale).astype(np.float32)
        self.px_per_unit = size / 2.0 * scale  # pixels per canonical unit

    def px(self, units: float) -> float:
        """A canonical length in pixels."""
        return units * self.px_per_unit

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        """Canonical points ``(..., 2)`` as ``(..., 2)`` (column, row) pixel coordinates."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        x, y = pts[..., 0] * self.scale, pts[..., 1] * self.scale
        px, py = c * x - s * y + self.shift[0], s * x + c * y + self.shift[1]
        return np.stack([(px + 1.0) / 2.0 * self.size - 0.5, (py + 1.0) / 2.0 * self.size - 0.5], -1)

    def inside(self, mask: np.ndarray, q: np.ndarray) -> bool:
        """Whether canonical point ``q`` falls on a true pixel of ``mask``."""
        c, r = (int(round(float(v))) for v in self.to_pixels(np.asarray(q, dtype=float)))
        return 0 <= r < self.size and 0 <= c < self.size and bool(mask[r, c])


def _soft(mask_distance: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``mask_distance < 0`` with an edge ``width`` wide (canonical units)."""
    return _sigmoid(-mask_distance / max(width, 1e-6))


# ---------------------------------------------------------------------------------------------------------------
# anatomy
# ---------------------------------------------------------------------------------------------------------------
def _lungs(rng, f: _Frame, heart: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The two lung fields (bool masks: image left = patient right, image right = patient left), their apex and
    domes; ``heart`` is a signed outline of the heart and aortic knob (< 0 inside), carved out of both lungs."""
    X, Y = f.X, f.Y
    apex = rng.uniform(-0.72, -0.62)
    dome_r = rng.uniform(0.34, 0.5)  # inspiration depth: the right dome top
    dome_l = dome_r + rng.uniform(0.02, 0.08)
    deform = 0.025 * _field(rng, f.size, 6)
    masks = []
    for side, dome in ((-1, dome_r), (1, dome_l)):
        width = rng.uniform(0.34, 0.4) * (0.92 if side == 1 else 1.0)
        xc = side * (0.09 + width)
        bottom = dome + 0.2
        yc, ry = (apex + bottom) / 2, (bottom - apex) / 2
        # lateral and apical outline: an egg, wider below
        ex = (X - xc) / (width * (1.0 + 0.12 * np.clip((Y - yc) / ry, -1, 1)))
        outline = ex**2 + ((Y - yc) / ry) ** 2 - 1.0
        medial = side * X - (0.07 + 0.04 * np.clip((Y - apex) / (bottom - apex), 0, 1))  # > 0 lateral of it
        xd = xc + side * rng.uniform(-0.04, 0.04)
        diaphragm = dome + 0.16 * ((X - xd) / width) ** 2  # the dome: highest centrally, recesses laterally
        inside = (outline + deform < 0) & (medial > 0) & (Y < diaphragm) & (heart > 0.0)
        masks.append(_keep_largest(ndimage.binary_fill_holes(inside)))
    return masks[0], masks[1], {"apex": apex, "domes": (dome_r, dome_l)}


def _keep_largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _grow_tree_2d(rng, root, targets, inside, r0: float, max_gen: int = 6) -> list[tuple]:
    """Branching 2D segments ``(p0, p1, r0, r1)`` (canonical units) from ``root`` towards ``targets``."""
    segs: list[tuple] = []
    stack = []
    for t in targets:
        vec = np.asarray(t, dtype=float) - root
        dist = float(np.hypot(*vec))
        if dist > 1e-6:
            stack.append((np.asarray(root, dtype=float), float(np.arctan2(vec[1], vec[0])), 0.4 * dist, r0, 0))
    while stack:
        p, ang, length, r, gen = stack.pop()
        end = None
        for attempt in range(4):
            a = ang if attempt == 0 else ang + rng.uniform(-0.6, 0.6)
            q = p + length * np.array([np.cos(a), np.sin(a)])
            if gen == 0 or inside(q):
                end, ang = q, a
                break
        if end is None:
            continue
        segs.append((p, end, r, 0.9 * r))
        if gen + 1 < max_gen:
            turn = rng.uniform(0.3, 0.6)
            stack.append((end, ang + turn * rng.uniform(0.5, 0.8), length * rng.uniform(0.7, 0.85), 0.8 * r, gen + 1))
            stack.append((end, ang - turn, length * rng.uniform(0.65, 0.8), 0.65 * r, gen + 1))
    return segs


def _draw_segments(f: _Frame, segs, n: int) -> np.ndarray:
    """Rasterise segments as soft lines whose peak is proportional to their radius (1 for 0.02 canonical units)."""
    s = n / DEFAULT_SIZE
    sigmas = (1.3 * s, 0.6 * s)
    layers = [np.zeros((n, n), dtype=np.float32) for _ in sigmas]
    if not segs:
        return layers[0]
    pts, rad, thick = [], [], []
    for p0, p1, r0, r1 in segs:  # points every half pixel along each segment
        k = max(2, int(np.ceil(f.px(float(np.hypot(*(p1 - p0)))) * 2)))
        t = np.linspace(0.0, 1.0, k)[:, None]
        pts.append(p0 + t * (p1 - p0))
        rad.append((r0 + t[:, 0] * (r1 - r0)) / 0.02)
        thick.append(np.full(k, f.px(r0) > 1.2))
    pix = np.rint(f.to_pixels(np.concatenate(pts))).astype(int)
    cols, rows = np.clip(pix[:, 0], 0, n - 1), np.clip(pix[:, 1], 0, n - 1)
    rad, thick = np.concatenate(rad).astype(np.float32), np.concatenate(thick)
    for layer, sel in zip(layers, (thick, ~thick), strict=True):
        np.maximum.at(layer, (rows[sel], cols[sel]), rad[sel])
    # a blurred one-pixel line peaks at 1 / (sqrt(2 pi) sigma): undo that so the peak follows the radius
    return sum(
        ndimage.gaussian_filter(la, sg) * np.sqrt(2 * np.pi) * max(sg, 0.4)
        for la, sg in zip(layers, sigmas, strict=True)
    )


def make_chest_xray_phantom(seed: int, category: str, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic PA chest radiograph of ``category`` and its lung mask.

    Args:
        seed: seed of the anatomy, pose, pathology and noise; the same seed, category and size give identical
            output, and the same seed with another category gives the same patient with other lungs.
        category: one of ``CATEGORIES``: ``"COVID"``, ``"Normal"``, ``"Lung_Opacity"``, ``"Viral Pneumonia"``.
        size: width and height in pixels (at least 32).

    Returns:
        ``(image, lung_mask)``: ``image`` uint8 ``(size, size)`` grayscale (bright = dense); ``lung_mask`` uint8
        ``(size, size)``, 255 inside the two lung fields (two connected components), 0 elsewhere.

    Raises:
        ValueError: for an unknown ``category`` or a ``size`` below 32.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown chest X-ray category {category!r}; choose one of {list(CATEGORIES)}")
    if int(size) < 32:
        raise ValueError(f"chest X-ray phantom size must be at least 32 pixels, got {size}")
    n = int(size)
    rng_anat, rng_path, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 7]).spawn(3))
    rng = rng_anat
    f = _Frame(n, rng.normal(0, 0.04), rng.uniform(0.88, 1.02), rng.normal(0, 0.03, 2))

    atten, width, shoulder_y = _body(rng, f)
    heart, knob = _heart(rng, f)
    right, left, info = _lungs(rng, f, np.minimum(heart, knob))
    lungs = right | left
    edt = ndimage.distance_transform_edt(lungs) / f.px_per_unit  # canonical units from the pleura
    soft_lungs = ndimage.gaussian_filter(lungs.astype(np.float32), 1.0 * n / DEFAULT_SIZE)
    # air thickness: thin at the pleura, thicker inwards
    air = soft_lungs * (0.4 + 0.25 * (1.0 - np.exp(-edt / 0.08))) * (1.0 + 0.06 * _field(rng, n, 5))
    atten += 0.05 * _soft(heart, 0.02) * (1.0 - soft_lungs) + 0.04 * _soft(knob, 0.02)
    atten += _airways_and_bubble(rng, f, info)
    atten += _vessels(rng, f, right, left) * soft_lungs
    atten += _bones(rng, f, width, shoulder_y, info)
    atten -= air
    opacity = _pathology(rng_path, category, f, right, left, edt, info)
    atten += ndimage.gaussian_filter(opacity, 1.0 * n / DEFAULT_SIZE) * air
    image = _film(rng_noise, atten)
    return image, (lungs * 255).astype(np.uint8)


def _body(rng, f: _Frame) -> tuple[np.ndarray, np.ndarray, float]:
    """Soft-tissue thickness of neck, shoulders, chest wall, arms and (sometimes) breasts; the chest half-width
    at every pixel's height; and the height of the shoulders."""
    X, Y = f.X, f.Y
    w_chest = rng.uniform(0.84, 0.94)
    shoulder_y = rng.uniform(-0.8, -0.7)
    rise = _sigmoid((Y - shoulder_y) / 0.07)
    width = 0.2 + (w_chest + 0.12 - 0.2) * rise - 0.12 * _sigmoid((Y - shoulder_y - 0.35) / 0.12)
    torso = np.sqrt(np.clip(1.0 - (X / width) ** 2, 0.0, 1.0))
    atten = 0.75 * torso + 0.15 * np.sqrt(torso)
    arm_x = np.abs(X) - (w_chest + 0.08)
    arm = np.sqrt(np.clip(1.0 - (arm_x / 0.1) ** 2, 0, 1)) * rise * _sigmoid(-(Y - 0.3) / 0.15)
    atten += 0.45 * arm
    if rng.random() < 0.4:  # breast shadows over the lower zones
        by = rng.uniform(0.3, 0.5)
        for side in (-1, 1):
            br = ((X - side * rng.uniform(0.45, 0.6)) / 0.32) ** 2 + ((Y - by) / 0.26) ** 2
            atten += rng.uniform(0.08, 0.18) * np.sqrt(np.clip(1.0 - br, 0, 1)) * _sigmoid((Y - by + 0.05) / 0.03)
    return atten.astype(np.float32), width.astype(np.float32), shoulder_y


def _heart(rng, f: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """Signed outlines (< 0 inside, about canonical units) of the cardiac silhouette and of the aortic knob."""
    X, Y = f.X, f.Y
    hc = (rng.uniform(0.1, 0.16), rng.uniform(0.26, 0.34))
    hr = (rng.uniform(0.34, 0.4), rng.uniform(0.21, 0.26))
    ang = rng.uniform(0.45, 0.7)  # the long axis runs down and to the patient's left
    hx, hy = X - hc[0], Y - hc[1]
    hxr, hyr = np.cos(ang) * hx + np.sin(ang) * hy, -np.sin(ang) * hx + np.cos(ang) * hy
    heart = (np.sqrt((hxr / hr[0]) ** 2 + (hyr / hr[1]) ** 2) - 1.0) * min(hr)
    knob_c = (rng.uniform(0.06, 0.1), -rng.uniform(0.2, 0.28))
    knob = (np.hypot((X - knob_c[0]) / 0.1, (Y - knob_c[1]) / 0.08) - 1.0) * 0.08
    return heart.astype(np.float32), knob.astype(np.float32)


def _airways_and_bubble(rng, f: _Frame, info: dict) -> np.ndarray:
    """Negative attenuation of the trachea, the main bronchi and the gastric bubble under the left dome."""
    X, Y = f.X, f.Y
    carina = rng.uniform(-0.3, -0.2)
    trachea = (np.abs(X - 0.01) < 0.032) & (Y < carina)
    t = (Y - carina) / 0.15
    for side in (-1, 1):
        trachea |= (t > 0) & (t < 1) & (np.abs(X - 0.01 - side * 0.12 * t) < 0.024)
    out = -0.08 * ndimage.gaussian_filter(trachea.astype(np.float32), f.size / DEFAULT_SIZE)
    if rng.random() < 0.7:
        cx, cy = rng.uniform(0.3, 0.45), info["domes"][1] + rng.uniform(0.1, 0.15)
        bubble = np.hypot((X - cx) / rng.uniform(0.08, 0.14), (Y - cy) / 0.06) - 1.0
        out -= rng.uniform(0.1, 0.22) * _soft(bubble * 0.06, 0.01)
    return out


def _vessels(rng, f: _Frame, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Vascular markings: a branching tree from each hilum, brighter and thicker near the hila."""
    n, X, Y = f.size, f.X, f.Y
    out = np.zeros((n, n), dtype=np.float32)
    for side, mask in ((-1, right), (1, left)):
        rows, cols = np.nonzero(mask)
        if len(rows) < 10:
            continue
        pick = rng.integers(len(rows), size=10)
        targets = np.stack([X[rows[pick], cols[pick]], Y[rows[pick], cols[pick]]], -1)
        hilum = np.array([side * rng.uniform(0.14, 0.2), rng.uniform(-0.08, 0.06)])
        segs = _grow_tree_2d(rng, hilum, targets, lambda q, m=mask: f.inside(m, q), rng.uniform(0.016, 0.022))
        out = np.maximum(out, _draw_segments(f, segs, n))
    return rng.uniform(0.07, 0.11) * out


def _bones(rng, f: _Frame, width: np.ndarray, shoulder_y: float, info: dict) -> np.ndarray:
    """Spine, posterior and anterior ribs, clavicles and humeral heads (extra attenuation)."""
    X, Y = f.X, f.Y
    bones = np.zeros_like(X)
    period = rng.uniform(0.09, 0.11)
    disc = np.abs(((Y + rng.uniform(0, period)) % period) - period / 2) < 0.01
    bones += 0.1 * ((np.abs(X - 0.01) < 0.06) & ~disc)
    rib_amp = rng.uniform(0.05, 0.09)
    step = (max(info["domes"]) + 0.05 - info["apex"]) / rng.uniform(8.5, 9.5)
    y0 = info["apex"] + rng.uniform(-0.02, 0.03)
    bottom = max(info["domes"]) + 0.1
    for side in (-1, 1):
        xs = side * X
        lateral = width - 0.03
        for k in range(11):
            # posterior rib: from the spine a little up, then curving down along the chest wall
            t = np.clip((xs - 0.06) / (lateral - 0.06), 0.0, 1.0)
            curve = y0 + k * step - 0.1 * t + (0.42 + 0.02 * k) * t**2.5
            d = np.abs(Y - curve) / (0.022 + 0.0015 * k)
            bones += rib_amp * (d < 1.0) * (xs > 0.05) * (xs < lateral) * (0.7 + 0.5 * (d > 0.55)) * (curve < bottom)
            # anterior rib: from the lateral wall down and in towards the sternum, fainter
            ta = np.clip((lateral - xs) / 0.55, 0.0, 1.0)
            curve_a = y0 + 0.22 + k * step + 0.32 * ta
            da = np.abs(Y - curve_a) / 0.02
            bones += 0.5 * rib_amp * (da < 1.0) * (ta < 0.9) * (xs < lateral) * (curve_a < bottom)
        # clavicle: from the sternal end up and out to the shoulder, gently S-shaped
        tc = np.clip((xs - 0.06) / 0.72, 0.0, 1.0)
        clav = info["apex"] + 0.08 - 0.2 * tc + 0.02 * np.sin(2 * np.pi * tc)
        dc = np.abs(Y - clav) / 0.026
        bones += 0.16 * (dc < 1.0) * (xs > 0.05) * (xs < 0.8) * (0.75 + 0.4 * (dc > 0.55))
        head = np.hypot((xs - 0.97) / 0.11, (Y - shoulder_y - 0.1) / 0.12)
        bones += 0.2 * np.sqrt(np.clip(1.0 - head**2, 0, 1))
    return ndimage.gaussian_filter(bones, 0.6 * f.size / DEFAULT_SIZE)


def _film(rng, atten: np.ndarray) -> np.ndarray:
    """Film-like response of an attenuation map, heel effect and vignetting, blur and noise, as uint8."""
    n = atten.shape[0]
    k = rng.uniform(1.0, 1.5)
    resp = (1.0 - np.exp(-k * np.clip(atten, 0.0, None))) / (1.0 - np.exp(-k * 1.1))
    lo, hi, gamma = rng.uniform(0.03, 0.08), rng.uniform(0.88, 0.98), rng.uniform(1.3, 1.8)
    img = lo + (hi - lo) * np.clip(resp, 0.0, 1.15) ** gamma
    ys = (np.arange(n, dtype=np.float32)[:, None] + 0.5) / n * 2 - 1
    xs = (np.arange(n, dtype=np.float32)[None, :] + 0.5) / n * 2 - 1
    img *= (1.0 + rng.uniform(-0.06, 0.06) * ys) * (1.0 - rng.uniform(0.0, 0.1) * (xs**2 + ys**2) / 2)
    img = ndimage.gaussian_filter(img, 0.5 * n / DEFAULT_SIZE)
    img += rng.uniform(0.006, 0.02) * rng.standard_normal((n, n)).astype(np.float32)
    img += 0.012 * _field(rng, n, 12)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _pathology(rng, category: str, f: _Frame, right, left, edt, info) -> np.ndarray:
    """Fraction of the lung air replaced by disease, in [0, 1], for ``category`` (zero for ``Normal``)."""
    lungs = right | left
    if category == "Normal" or not lungs.any():
        return np.zeros(lungs.shape, dtype=np.float32)
    zone = np.clip((f.Y - info["apex"]) / (max(info["domes"]) - info["apex"]), 0.0, 1.0)  # 0 apex, 1 base
    if category == "COVID":
        opacity = _ground_glass(rng, f, right, edt, zone)
    elif category == "Lung_Opacity":
        opacity = _consolidation(rng, f, right, left, zone)
    else:
        opacity = _interstitial(rng, f)
    return (np.clip(opacity, 0.0, 1.0) * lungs).astype(np.float32)


def _ground_glass(rng, f: _Frame, right, edt, zone) -> np.ndarray:
    """COVID-19: bilateral, peripheral (subpleural), lower-zone predominant, patchy ground-glass haze."""
    severity = rng.uniform(0.25, 0.85)
    periph = np.exp(-edt / rng.uniform(0.06, 0.12))
    lower = _sigmoid((zone - rng.uniform(0.3, 0.5)) / 0.12)
    patches = np.clip(0.7 + 0.6 * _field(rng, f.size, 7), 0.1, 1.5)
    side = np.where(right, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    return severity * (0.35 + 0.65 * periph) * (0.1 + 0.9 * lower) * patches * side


def _consolidation(rng, f: _Frame, right, left, zone) -> np.ndarray:
    """Lung opacity: a dense focal or lobar consolidation, in one lung (80 %) or both, with a sharp fissure border
    when it fills an upper zone and sometimes air bronchograms."""
    X, Y, n = f.X, f.Y, f.size
    severity = rng.uniform(0.5, 1.0)
    sides = [right, left] if rng.random() < 0.2 else [right if rng.random() < 0.55 else left]
    opacity = np.zeros((n, n), dtype=np.float32)
    for mask in sides:
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            continue
        zone_pick = rng.choice(3, p=[0.25, 0.25, 0.5])  # upper, middle, lower
        band = (zone[rows, cols] >= zone_pick / 3) & (zone[rows, cols] <= (zone_pick + 1) / 3)
        rows, cols = (rows[band], cols[band]) if band.any() else (rows, cols)
        i = rng.integers(len(rows))
        c = np.array([X[rows[i], cols[i]], Y[rows[i], cols[i]]])
        r = rng.uniform(0.14, 0.3)
        dist = np.hypot((X - c[0]) / (r * rng.uniform(0.8, 1.4)), (Y - c[1]) / r) - 1.0
        blob = _sigmoid(-(dist + 0.35 * _field(rng, n, 6)) / 0.08)
        if zone_pick == 0 and rng.random() < 0.5:  # upper lobe: a sharp lower border at the horizontal fissure
            blob = blob * (Y < c[1] + 0.6 * r)
        dense = severity * blob * mask
        if rng.random() < 0.5:  # air bronchograms: dark branching airways from the hilum into the consolidation
            segs = _grow_tree_2d(rng, np.array([np.sign(c[0]) * 0.15, 0.0]), [c, c], lambda q: True, 0.012, 4)
            dense = dense * (1.0 - 0.5 * np.clip(_draw_segments(f, segs, n), 0.0, 1.0) * (blob > 0.5))
        opacity = np.maximum(opacity, dense)
    return opacity


def _interstitial(rng, f: _Frame) -> np.ndarray:
    """Viral pneumonia: a diffuse bilateral reticular (interstitial) network with a perihilar haze."""
    n, X, Y = f.size, f.X, f.Y
    severity = rng.uniform(0.3, 0.8)
    ctrl = [max(8, int(rng.integers(35, 50)) * n // DEFAULT_SIZE) for _ in range(2)]
    reticular = np.maximum(*(np.exp(-((_field(rng, n, c) / 0.25) ** 2)) for c in ctrl))
    hilar = np.exp(-np.minimum(np.hypot(X + 0.2, Y), np.hypot(X - 0.2, Y)) / rng.uniform(0.3, 0.5))
    return severity * (0.45 * ndimage.gaussian_filter(reticular, 0.5 * n / DEFAULT_SIZE) + 0.15 + 0.25 * hilar)


# ---------------------------------------------------------------------------------------------------------------
# writing a COVID-19 Radiography Database style folder
# ---------------------------------------------------------------------------------------------------------------
def _image_seed(seed: int, category: str, index: int) -> int:
    """Independent, reproducible seed of image ``index`` of ``category``, whatever other classes are written."""
    state = np.random.SeedSequence([int(seed), CATEGORIES.index(category), int(index)]).generate_state(1)
    return int(state[0])


def _save_png(array: np.ndarray, path: Path) -> None:
    """Write a 2D uint8 array as an 8-bit grayscale PNG, atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG"))


def _dataset_is_complete(out_dir: Path, params: dict) -> bool:
    """True when ``out_dir/phantom.json`` was written with ``params`` and every file it lists exists."""
    try:
        with open(out_dir / "phantom.json", encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("params") != params:
        return False
    images = record.get("images")
    expected = params["num_per_class"] * len(params["classes"])
    if not isinstance(images, list) or len(images) != expected:
        return False
    for item in images:
        if not isinstance(item, dict):
            return False
        for key in ("image", "mask"):
            p = out_dir / str(item.get(key, ""))
            if not p.is_file() or p.stat().st_size == 0:
                return False
    return True


def write_chest_xray_phantom_dataset(
    out_dir: str | os.PathLike,
    num_per_class: int = 24,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    classes: Sequence[str] = CATEGORIES,
) -> Path:
    """Write ``num_per_class`` phantoms of each class in the layout of the COVID-19 Radiography Database.

    Layout: ``<class>/images/<class>-<i>.png`` (8-bit grayscale) and ``<class>/masks/<class>-<i>.png`` (lung
    mask, 0/255, same name), ``i`` from 1, then ``phantom.json``: the generator parameters and the file list.
    Every file is written to a temporary name and renamed, and ``phantom.json`` is written last, so an interrupted
    run never looks complete. Image ``i`` of a class has a seed derived from ``(seed, class, i)``, so it does not
    depend on ``num_per_class`` or on the other classes.

    Idempotent: when ``phantom.json`` records the same parameters and all its files exist, nothing is rewritten.

    Args:
        out_dir: folder to create or complete (e.g. ``data/COVID-19_Radiography_phantom``).
        num_per_class: images per class, at least 1.
        seed: base seed of the dataset.
        size: image width and height in pixels (at least 32).
        classes: the classes to write, a subset of ``CATEGORIES``.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_per_class`` < 1, ``size`` < 32, or a class is unknown or repeated.
    """
    if int(num_per_class) < 1:
        raise ValueError(f"{out_dir}: num_per_class must be at least 1, got {num_per_class}")
    if int(size) < 32:
        raise ValueError(f"{out_dir}: chest X-ray phantom size must be at least 32 pixels, got {size}")
    classes = [str(c) for c in classes]
    unknown = [c for c in classes if c not in CATEGORIES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"{out_dir}: classes must be distinct names from {list(CATEGORIES)}; got {classes}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "size": int(size), "num_per_class": int(num_per_class), "classes": classes}
    if _dataset_is_complete(out_dir, params):
        logger.info("chest X-ray phantom dataset %s is already complete; nothing to do", out_dir)
        return out_dir
    images = []
    for category in classes:
        for i in range(1, int(num_per_class) + 1):
            name = f"{category}-{i}.png"
            image, mask = make_chest_xray_phantom(_image_seed(seed, category, i), category, size=int(size))
            _save_png(image, out_dir / category / "images" / name)
            _save_png(mask, out_dir / category / "masks" / name)
            images.append({"image": f"{category}/images/{name}", "mask": f"{category}/masks/{name}", "class": category})
        logger.info("wrote %d %s phantom radiographs", num_per_class, category)
    record = {
        "name": "COVID-19 Radiography Database phantom",
        "description": "Synthetic frontal chest radiographs with lung masks (seeded, generated by "
        "pipelines.phantoms.chest_xray), laid out like the COVID-19 Radiography Database. Not patient data.",
        "reference": "pipelines/phantoms/chest_xray.py",
        "licence": "CC0 (synthetic data)",
        "modality": "CXR",
        "classes": classes,
        "numImages": len(images),
        "images": images,
        "params": params,
    }
    write_json_atomic(record, out_dir / "phantom.json")
    logger.info("chest X-ray phantom dataset written to %s (%d images)", out_dir, len(images))
    return out_dir


def write_default_dataset(out_dir: str | os.PathLike, num_cases: int = 24, seed: int = 0) -> Path:
    """The chest X-ray workflow's default data (the registry's generator signature): ``num_cases`` images per class.

    See :func:`write_chest_xray_phantom_dataset`.
    """
    return write_chest_xray_phantom_dataset(out_dir, num_per_class=num_cases, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pipelines.phantoms.chest_xray --out DIR --num-per-class N --seed S``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.phantoms.chest_xray", description=__doc__.splitlines()[0].rstrip(",")
    )
    parser.add_argument("--out", required=True, help="folder to write (COVID-19 Radiography Database layout)")
    parser.add_argument("--num-per-class", type=int, default=24, help="images per class (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"image size in pixels (default {DEFAULT_SIZE})")
    parser.add_argument("--classes", nargs="+", default=list(CATEGORIES), choices=CATEGORIES, help="classes to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = write_chest_xray_phantom_dataset(args.out, args.num_per_class, args.seed, args.size, args.classes)
    logger.info("done: %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
