"""The drawing of the chest X-ray phantom: body, heart, lungs, airways, vessels, bones, pathology and the film.

Everything is drawn in the canonical coordinates of a :class:`Frame` (the pose of the patient on the image);
:func:`pipelines.phantoms.chest_xray.make_chest_xray_phantom` assembles the parts into a radiograph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, special

from pipelines.phantoms.common import smooth_field

__all__ = [
    "DEFAULT_SIZE",
    "Frame",
    "smooth_field_2d",
    "soft",
    "draw_body",
    "draw_heart",
    "draw_lungs",
    "draw_airways_and_bubble",
    "draw_vessels",
    "draw_bones",
    "draw_pathology",
    "film",
]

DEFAULT_SIZE = 256


def smooth_field_2d(rng: np.random.Generator, n: int, ctrl: int) -> np.ndarray:
    """Smooth 2D random field of shape ``(n, n)``, unit standard deviation, ``ctrl`` control points per side."""
    return smooth_field(rng, (n, n, 1), (ctrl, ctrl, 1))[..., 0]


def _sigmoid(v):
    return special.expit(v)


class Frame:
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


def soft(mask_distance: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``mask_distance < 0`` with an edge ``width`` wide (canonical units)."""
    return _sigmoid(-mask_distance / max(width, 1e-6))


def draw_lungs(rng, f: Frame, heart: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The two lung fields (bool masks: image left = patient right, image right = patient left), their apex and
    domes; ``heart`` is a signed outline of the heart and aortic knob (< 0 inside), carved out of both lungs."""
    X, Y = f.X, f.Y
    apex = rng.uniform(-0.72, -0.62)
    dome_r = rng.uniform(0.34, 0.5)  # inspiration depth: the right dome top
    dome_l = dome_r + rng.uniform(0.02, 0.08)
    deform = 0.025 * smooth_field_2d(rng, f.size, 6)
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


def _draw_segments(f: Frame, segs, n: int) -> np.ndarray:
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


def draw_body(rng, f: Frame) -> tuple[np.ndarray, np.ndarray, float]:
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


def draw_heart(rng, f: Frame) -> tuple[np.ndarray, np.ndarray]:
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


def draw_airways_and_bubble(rng, f: Frame, info: dict) -> np.ndarray:
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
        out -= rng.uniform(0.1, 0.22) * soft(bubble * 0.06, 0.01)
    return out


def draw_vessels(rng, f: Frame, right: np.ndarray, left: np.ndarray) -> np.ndarray:
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


def draw_bones(rng, f: Frame, width: np.ndarray, shoulder_y: float, info: dict) -> np.ndarray:
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


def film(rng, atten: np.ndarray) -> np.ndarray:
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
    img += 0.012 * smooth_field_2d(rng, n, 12)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def draw_pathology(rng, category: str, f: Frame, right, left, edt, info) -> np.ndarray:
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


def _ground_glass(rng, f: Frame, right, edt, zone) -> np.ndarray:
    """COVID-19: bilateral, peripheral (subpleural), lower-zone predominant, patchy ground-glass haze."""
    severity = rng.uniform(0.25, 0.85)
    periph = np.exp(-edt / rng.uniform(0.06, 0.12))
    lower = _sigmoid((zone - rng.uniform(0.3, 0.5)) / 0.12)
    patches = np.clip(0.7 + 0.6 * smooth_field_2d(rng, f.size, 7), 0.1, 1.5)
    side = np.where(right, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    return severity * (0.35 + 0.65 * periph) * (0.1 + 0.9 * lower) * patches * side


def _consolidation(rng, f: Frame, right, left, zone) -> np.ndarray:
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
        blob = _sigmoid(-(dist + 0.35 * smooth_field_2d(rng, n, 6)) / 0.08)
        if zone_pick == 0 and rng.random() < 0.5:  # upper lobe: a sharp lower border at the horizontal fissure
            blob = blob * (Y < c[1] + 0.6 * r)
        dense = severity * blob * mask
        if rng.random() < 0.5:  # air bronchograms: dark branching airways from the hilum into the consolidation
            segs = _grow_tree_2d(rng, np.array([np.sign(c[0]) * 0.15, 0.0]), [c, c], lambda q: True, 0.012, 4)
            dense = dense * (1.0 - 0.5 * np.clip(_draw_segments(f, segs, n), 0.0, 1.0) * (blob > 0.5))
        opacity = np.maximum(opacity, dense)
    return opacity


def _interstitial(rng, f: Frame) -> np.ndarray:
    """Viral pneumonia: a diffuse bilateral reticular (interstitial) network with a perihilar haze."""
    n, X, Y = f.size, f.X, f.Y
    severity = rng.uniform(0.3, 0.8)
    ctrl = [max(8, int(rng.integers(35, 50)) * n // DEFAULT_SIZE) for _ in range(2)]
    reticular = np.maximum(*(np.exp(-((smooth_field_2d(rng, n, c) / 0.25) ** 2)) for c in ctrl))
    hilar = np.exp(-np.minimum(np.hypot(X + 0.2, Y), np.hypot(X - 0.2, Y)) / rng.uniform(0.3, 0.5))
    return severity * (0.45 * ndimage.gaussian_filter(reticular, 0.5 * n / DEFAULT_SIZE) + 0.15 + 0.25 * hilar)
