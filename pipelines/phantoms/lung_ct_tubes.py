"""Tubes for the lung CT phantom: branching trees of segments, drawn by splatting spheres along their centre lines.

The bronchovascular trees, airways and great vessels of :mod:`pipelines.phantoms.lung_ct` are drawn with these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["sample_segments", "splat", "random_perpendicular", "grow_tree"]


def sample_segments(segments: Sequence[tuple], min_step: float) -> tuple[np.ndarray, np.ndarray]:
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


def splat(field: np.ndarray, pts: np.ndarray, radii: np.ndarray, origin, spacing, mode: str, margin=0.0) -> None:
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


def random_perpendicular(rng: np.random.Generator, d: Sequence[float]) -> tuple[float, float, float]:
    """A random unit vector perpendicular to the unit vector ``d``."""
    v = rng.standard_normal(3).tolist()
    dot = v[0] * d[0] + v[1] * d[1] + v[2] * d[2]
    return _unit((v[0] - dot * d[0], v[1] - dot * d[1], v[2] - dot * d[2]))


def grow_tree(rng, root, targets, r0, inside, max_gen: int = 9, min_radius: float = 0.4) -> list[tuple]:
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
            trial = d if attempt == 0 else _rotate(d, random_perpendicular(rng, d), rng.uniform(0.3, 0.8))
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
        axis = random_perpendicular(rng, d)
        for sign, ratio, turn in ((1, rng.uniform(0.78, 0.9), (0.3, 0.5)), (-1, rng.uniform(0.6, 0.75), (0.5, 0.8))):
            child = _rotate(d, axis, sign * rng.uniform(*turn))
            stack.append((end, child, length * rng.uniform(0.68, 0.85), r_end * ratio, gen + 1))
    return segments
