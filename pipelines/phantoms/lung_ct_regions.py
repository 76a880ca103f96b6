"""The body regions around the lung CT phantom's chest: the abdomen and pelvis below it, the neck above it.

A chest CT is often part of a longer scan: a chest-abdomen-pelvis staging CT or a whole-body PET-CT holds the
lungs on a quarter of its slices or less. :func:`paint_beyond_chest` paints what such a scan holds below and above
the chest wherever the phantom's craniocaudal range (:class:`pipelines.phantoms.lung_ct_anatomy.Grid`'s
``z_range``) reaches beyond it: the liver and upper abdomen ending, the lower costal margin (no ribs below it), the
lower abdomen with bowel and fat, the pelvis with its bones, bladder and rectum down to the femoral shafts (drawn
by :func:`pipelines.phantoms.liver_ct_regions.paint_pelvis`), and the neck narrowing above the lung apices.

Heights are in chest units (``Grid.zf``: 0 the chest's bottom slice, 1 its top), converted from adult sizes in
millimetres with ``Grid.chest_mm``. Nothing is painted for a range inside ``(-0.3, 1.15)``, so a chest-only phantom
is unchanged by this module.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.common import AIR_HU, paint, smooth_field, superellipse
from pipelines.phantoms.liver_ct_regions import BodyFrame, paint_pelvis
from pipelines.phantoms.lung_ct_anatomy import Grid, Wall

__all__ = ["NECK_FLOOR", "paint_beyond_chest"]

NECK_FLOOR = 1.2  #: chest units above which the body narrows to the neck (above every lung apex, at most 1.15)
_PELVIS_UNIT_MM = 160.0  # paint_pelvis's craniocaudal unit: the liver phantom's abdomen height


def paint_beyond_chest(rng, g: Grid, w: Wall, img: np.ndarray, spine: dict, dome_top: dict) -> None:
    """Paint, in place, the regions of a long scan below and above the chest (see the module docstring).

    Args:
        rng: a random generator of its own (a chest-only phantom must draw the same numbers with or without it).
        g: the phantom's grid.
        w: the chest wall.
        img: the HU volume, laid out with axis 0 towards the patient's left.
        spine: :func:`pipelines.phantoms.lung_ct_anatomy.draw_spine`'s result.
        dome_top: the diaphragm domes' tops (chest units).
    """
    zf = g.zf[0, 0]  # increasing: the slices below a height are a prefix, those above it a suffix (views of img)
    per_mm = 1.0 / g.chest_mm
    liver_floor = dome_top[-1] - rng.uniform(150, 190) * per_mm  # the liver's lower tip
    rib_floor = dome_top[-1] - rng.uniform(100, 140) * per_mm  # the lowest ribs (the costal margin)
    pelvis_top = liver_floor - rng.uniform(60, 100) * per_mm  # the iliac crests
    if zf[0] < rib_floor:
        _remove_ribs(img[:, :, : int((zf < rib_floor).sum())], w, spine)
    if zf[0] < liver_floor:
        _paint_lower_abdomen(rng, img[:, :, : int((zf < liver_floor).sum())], g, w)
    if zf[0] < pelvis_top:
        _paint_pelvis(rng, img, g, w, spine, pelvis_top)
    thigh_top = pelvis_top - rng.uniform(150, 170) * per_mm  # below the ischia
    if zf[0] < thigh_top:
        _split_into_thighs(rng, img[:, :, : int((zf < thigh_top).sum())], g, w)
    if zf[-1] > NECK_FLOOR:
        _narrow_to_neck(rng, img[:, :, int((zf <= NECK_FLOOR).sum()) :], g, w, spine)


def _remove_ribs(sub: np.ndarray, w: Wall, spine: dict) -> None:
    """Below the costal margin (``sub``: those slices of the volume, painted in place) the rib layer is abdominal
    wall muscle."""
    sub[w.band & ~spine["zone"]] = w.muscle_hu


def _paint_lower_abdomen(rng, sub: np.ndarray, g: Grid, w: Wall) -> None:
    """Below the liver (``sub``: those slices, painted in place): bowel loops (soft tissue with gas pockets) in
    mesenteric fat, filling the cavity."""
    shape = sub.shape
    per_loop = 12.0 / np.array(g.spacing)  # bowel loops of 20-30 mm
    loops = smooth_field(rng, shape, tuple(max(2, int(n / p)) for n, p in zip(shape, per_loop, strict=True)))
    gas = smooth_field(rng, shape, tuple(max(2, int(1.5 * n / p)) for n, p in zip(shape, per_loop, strict=True)))
    fill = np.where(loops > rng.uniform(-0.6, -0.2), rng.uniform(25, 40), rng.uniform(-110, -85)).astype(np.float32)
    fill = np.where((gas > 1.8) & (loops > 0.0), rng.uniform(-1000, -900), fill)
    cavity = np.broadcast_to(w.cavity[..., None], shape)
    sub[cavity] = fill[cavity]


def _paint_pelvis(rng, img, g: Grid, w: Wall, spine: dict, pelvis_top: float) -> None:
    """The pelvis below the iliac crests, drawn by the liver phantom's painter in its own craniocaudal units."""
    scale = g.chest_mm / _PELVIS_UNIT_MM
    frame = BodyFrame(
        center=w.center,
        half_w=w.half_w,
        half_ap=w.half_ap,
        vb_c=spine["centre"],
        vb_r=spine["radii"],
        fat_t=w.fat_t,
        u=w.u,
        mm_per_unit=_PELVIS_UNIT_MM,
    )
    hu = {
        "fat": w.fat_hu,
        "muscle": w.muscle_hu,
        "cortical": rng.uniform(700, 900),
        "cancellous": rng.uniform(180, 280),
    }
    paint_pelvis(
        rng, img, g.x, g.y, g.zf * scale, frame, pelvis_top * scale, g.column(w.body), g.column(w.cavity), hu, g.shape
    )


def _narrow_to_neck(rng, sub: np.ndarray, g: Grid, w: Wall, spine: dict) -> None:
    """Above the lung apices (``sub``: those slices, painted in place) the body narrows to the neck around the
    spine, the trachea and the oesophagus."""
    vb_c, u = spine["centre"], w.u
    centre = (w.mx, vb_c[1] + 10 * u)
    half_w, half_ap = rng.uniform(55, 70) * u, rng.uniform(55, 65) * u
    fat_t = rng.uniform(4, 10) * u
    neck = superellipse(g.x2, g.y2, centre, half_w, half_ap, p=2.2) < 1.0
    muscle = superellipse(g.x2, g.y2, centre, half_w - fat_t, half_ap - fat_t, p=2.2) < 1.0
    sub[~neck] = AIR_HU
    sub[neck & ~muscle] = w.fat_hu
    soft = (sub > -200) & (sub < 150)  # keep bone, air (trachea) and the vessels' blood; the rest is neck muscle
    paint(sub, soft & muscle[..., None] & ~w.cavity[..., None], w.muscle_hu)


def _split_into_thighs(rng, sub: np.ndarray, g: Grid, w: Wall) -> None:
    """Below the pelvis (``sub``: those slices, painted in place) the body is two thighs: muscle around the femoral
    shafts inside a ring of fat, air between.

    The femoral shafts are those painted by the pelvis (bone away from the midline); the spine's column ends."""
    (cx, cy), hw, hap, fat_t = w.center, w.half_w, w.half_ap, w.fat_t
    thighs = np.zeros(g.shape[:2], dtype=bool)
    inner = np.zeros(g.shape[:2], dtype=bool)
    for side in (-1, 1):
        centre = (cx + side * 0.47 * hw, cy + rng.uniform(-0.1, 0.05) * hap)
        radii = (rng.uniform(0.38, 0.44) * hw, rng.uniform(0.6, 0.7) * hap)
        thighs |= superellipse(g.x2, g.y2, centre, radii[0], radii[1], p=2.0) < 1.0
        inner |= superellipse(g.x2, g.y2, centre, radii[0] - fat_t, radii[1] - fat_t, p=2.0) < 1.0
    shafts = (sub > 300) & (np.abs(g.x2 - w.mx) > 0.25 * hw)[..., None] & thighs[..., None]
    sub[~thighs] = AIR_HU
    sub[thighs & ~inner] = w.fat_hu
    muscle = inner[..., None] & ~shafts
    paint(sub, muscle, w.muscle_hu + 12.0 * smooth_field(rng, sub.shape, (8, 8, 4)))
