"""The body regions around the liver CT phantom's abdomen: the pelvis below it, the lower chest above it.

A real abdominal CT rarely stops at the abdomen: abdomen-pelvis and chest-abdomen-pelvis scans hold the iliac
wings, the sacrum, the bladder and the femoral heads below the liver, and the heart and the lungs above it. A model
that never saw them takes them for liver (a slice gate trained on the abdomen alone scored real pelvic slices
p = 1.0). These functions paint those regions into the phantom wherever its craniocaudal range reaches them.

Coordinates follow :func:`pipelines.phantoms.liver_ct.make_liver_ct_phantom`: in-plane millimetres with axis 0
towards the patient's LEFT (mirrored into RAS+ at the end), axis 1 anterior, and ``zf`` the craniocaudal position
in units of the abdomen (0 its bottom, 1 its top). Every in-plane length is multiplied by the body scale ``u``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.phantoms.common import ellipsoid_radius, paint, smooth_field

__all__ = ["BodyFrame", "paint_lower_chest", "paint_pelvis", "psoas_muscles"]


@dataclass(frozen=True)
class BodyFrame:
    """Where the abdomen's landmarks lie, shared by the regions: all in-plane values in mm, already scaled by ``u``.

    Attributes:
        center: the body outline's centre (x, y).
        half_w: half of the body's width.
        half_ap: half of its anteroposterior depth.
        vb_c: centre of the vertebral body (x, y).
        vb_r: radii of the vertebral body (x, y).
        fat_t: thickness of the subcutaneous fat.
        u: the body scale (1 for an adult abdomen in a large enough field of view).
        mm_per_unit: millimetres per craniocaudal unit (``zf``), to draw round things round.
    """

    center: tuple[float, float]
    half_w: float
    half_ap: float
    vb_c: tuple[float, float]
    vb_r: tuple[float, float]
    fat_t: float
    u: float
    mm_per_unit: float


def _segment_distance(x, y, p0, p1) -> np.ndarray:
    """In-plane distance (mm) from each voxel to the segment ``p0``-``p1`` (end points may vary along z)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * dx + (y - p0[1]) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return np.hypot(x - (p0[0] + t * dx), y - (p0[1] + t * dy))


def _paint_bone(img, solid, shell, cortical_hu, cancellous_hu) -> None:
    """Paint a bone: ``solid`` cancellous bone (as a mask) with its ``shell`` of cortex."""
    paint(img, solid, cancellous_hu)
    paint(img, solid & shell, cortical_hu)


def psoas_muscles(x, y, zf, frame: BodyFrame, pelvis_top: float, full) -> np.ndarray:
    """The two psoas muscles beside the lumbar spine, growing from the kidneys' level down to the pelvis."""
    u = frame.u
    grow = np.clip((0.55 - zf) / (0.55 - pelvis_top + 1e-6), 0.0, 1.0)  # 0 above the kidneys, 1 at the crest
    radius = (4.0 + 16.0 * grow) * u
    psoas = np.zeros(full, dtype=bool)
    for side in (-1, 1):
        cx = frame.vb_c[0] + side * (frame.vb_r[0] + radius + 2 * u)
        cy = frame.vb_c[1] + 0.2 * frame.vb_r[1]
        psoas |= (((x - cx) / radius) ** 2 + ((y - cy) / (1.1 * radius)) ** 2 < 1.0) & (zf > pelvis_top - 0.35)
    return psoas & (grow > 0)


def paint_pelvis(rng, img, x, y, zf, frame: BodyFrame, pelvis_top: float, body, inside, hu: dict, full) -> np.ndarray:
    """Paint the pelvis below ``pelvis_top`` (the iliac crests' level, in ``zf`` units) and return its mask.

    Drawn: gluteal muscles, the iliac wings converging from the crests to the acetabula, the sacrum (taking the
    lumbar spine's place), the femoral heads in their acetabula, the bladder and the rectum. The pelvis spans
    0.95 units (about 150 mm in an adult) below the crests; a scan reaching lower continues the thighs' bones.

    Args:
        rng: the phantom's random generator.
        img: the HU volume, painted in place.
        x, y, zf: the phantom's broadcastable grids (in-plane mm, craniocaudal units).
        frame: the abdomen's landmarks.
        pelvis_top: ``zf`` of the iliac crests.
        body: the body's outline.
        inside: the region inside the abdominal wall's muscle, where the viscera lie.
        hu: intensities ``fat``, ``muscle``, ``cortical``, ``cancellous``.
        full: the volume's shape.

    Returns:
        The mask of everything painted but the fat (bones, muscles, bladder, rectum): no liver may lie there.
    """
    u, (vx, vy), hw, hap = frame.u, frame.vb_c, frame.half_w, frame.half_ap
    depth = (pelvis_top - zf) / 0.95  # 0 at the iliac crests, 1 at the ischia
    pelvis = np.broadcast_to(depth > 0, full)
    painted = np.zeros(full, dtype=bool)
    if not pelvis.any():
        return painted
    cortex = 3.0 * u

    # pelvic and mesenteric fat between the loops and organs, more of it than in the abdomen above
    fat = (smooth_field(rng, full, (10, 10, 6)) > rng.uniform(-0.4, 0.4)) & inside & pelvis
    paint(img, fat, hu["fat"] + 10)

    # gluteal muscles behind the wings, largest low in the pelvis
    g = np.clip(depth / 0.6, 0.0, 1.0)
    for side in (-1, 1):
        glut = ellipsoid_radius(x, y, None, (vx + side * 0.5 * hw, vy - 0.05 * hap), (0.32 * hw, 0.3 * hap))
        muscle = (glut < 0.4 + 0.6 * g) & pelvis & (depth < 1.3) & body
        paint(img, muscle, hu["muscle"])
        painted |= muscle

    # iliac wings: bone plates from the sacroiliac joints out and forward, converging towards the acetabula
    wing_d = np.clip(depth / 0.6, 0.0, 1.0)
    for side in (-1, 1):
        p0 = (vx + side * (0.16 + 0.08 * wing_d) * hw, vy + (0.02 + 0.25 * wing_d) * hap)
        p1 = (vx + side * (0.78 - 0.25 * wing_d) * hw, vy + (0.55 - 0.25 * wing_d) * hap)
        half_t = (4.0 + 7.0 * wing_d) * u
        dist = _segment_distance(x, y, p0, p1)
        wing = (dist < half_t) & pelvis & (depth < 0.62)
        _paint_bone(img, wing, dist > half_t - cortex, hu["cortical"], hu["cancellous"])
        painted |= wing
        iliacus = (dist < half_t + 10 * u) & ~wing & pelvis & (depth < 0.62) & (y > vy + 0.1 * hap) & inside
        paint(img, iliacus & ~painted, hu["muscle"])
        painted |= iliacus

    # sacrum: replaces the vertebral body below the crests, tilting backwards and narrowing downwards
    sac_w = (0.3 - 0.18 * np.clip(depth / 0.7, 0, 1)) * hw
    sac_c = (vx, vy - 0.12 * depth * hap)
    sac_r = ellipsoid_radius(x, y, None, sac_c, (sac_w, 0.11 * hap))
    sacrum = (sac_r < 1.0) & pelvis & (depth < 0.75)
    _paint_bone(img, sacrum, sac_r > 1.0 - cortex / (0.11 * hap), hu["cortical"], hu["cancellous"])
    canal = (ellipsoid_radius(x, y, None, (sac_c[0], sac_c[1] - 0.05 * hap), (0.06 * hw, 0.03 * hap)) < 1) & sacrum
    paint(img, canal, hu["fat"] + 60)
    painted |= sacrum

    # femoral heads in their acetabula, then the femoral necks and shafts going laterally downwards
    head_z = pelvis_top - 0.95 * rng.uniform(0.75, 0.85)
    head_r = rng.uniform(21, 25) * u
    for side in (-1, 1):
        fc = (vx + side * 0.5 * hw, vy + 0.42 * hap, head_z)
        r = ellipsoid_radius(x, y, zf, fc, (head_r, head_r, head_r / frame.mm_per_unit))
        socket = (r < 1.45) & (r >= 1.08) & (x * side > fc[0] * side - 0.3 * head_r)
        _paint_bone(img, socket, np.ones_like(socket), hu["cortical"], hu["cancellous"])
        head = r < 1.0
        _paint_bone(img, head, r > 1.0 - cortex / head_r, hu["cortical"], hu["cancellous"])
        below = zf < head_z
        shaft_c = (fc[0] + side * (0.18 * hw) * np.clip((head_z - zf) / 0.15, 0, 1), fc[1] - 0.05 * hap)
        shaft_r = ellipsoid_radius(x, y, None, shaft_c, (0.7 * head_r, 0.7 * head_r))
        shaft = (shaft_r < 1.0) & below
        _paint_bone(img, shaft, shaft_r > 1.0 - cortex / (0.7 * head_r), hu["cortical"], hu["cancellous"] + 100)
        painted |= socket | head | shaft

    # bladder (urine, a few HU) in front, the rectum (stool and gas) behind, just before the sacrum
    bl_c = (frame.center[0], vy + rng.uniform(0.5, 0.6) * hap, pelvis_top - 0.95 * rng.uniform(0.6, 0.75))
    bl_r = (rng.uniform(0.15, 0.32) * hw, rng.uniform(0.15, 0.28) * hap, rng.uniform(0.1, 0.22))
    bladder = (ellipsoid_radius(x, y, zf, bl_c, bl_r) < 1.0) & inside & ~painted
    paint(img, bladder, rng.uniform(0, 18))
    rec_c = (vx + rng.uniform(-6, 6) * u, vy + 0.11 * hap + rng.uniform(12, 20) * u)
    rec_r = rng.uniform(10, 18) * u
    rectum = (ellipsoid_radius(x, y, None, rec_c, (rec_r, 0.8 * rec_r)) < 1.0) & pelvis & (depth > 0.35) & inside
    rectum &= ~painted
    content = np.where(smooth_field(rng, full, (6, 6, 4)) > 0.3, -900.0, rng.uniform(-80, 20))
    paint(img, rectum, content)
    return painted | bladder | rectum


def paint_lower_chest(rng, img, x, y, zf, frame: BodyFrame, inside, hu: dict, contrast: float, full) -> np.ndarray:
    """Paint the lower chest above the abdomen and return the mask of what no liver may overlap.

    Drawn: the lungs widening and reaching forward above the diaphragm (with their vessels), the heart on the
    diaphragm left of the midline (blood pool, myocardium and its fat) and the sternum. The liver's dome, drawn
    afterwards, stays below the heart and outside the lungs.

    Args:
        rng: the phantom's random generator.
        img: the HU volume, painted in place.
        x, y, zf: the phantom's broadcastable grids.
        frame: the abdomen's landmarks.
        inside: the region inside the chest wall's muscle.
        hu: intensities ``fat``, ``muscle``, ``cortical``, ``cancellous``, ``lung``.
        contrast: 0 non-contrast to 1 strongly enhanced.
        full: the volume's shape.

    Returns:
        The mask of the lungs and the heart painted here.
    """
    u, (vx, vy), hw, hap = frame.u, frame.vb_c, frame.half_w, frame.half_ap
    cx, cy = frame.center
    rise = np.clip((zf - 0.98) / 0.3, 0.0, 1.0)  # 0 at the abdomen's top, 1 in the full chest
    chest = np.broadcast_to(rise > 0, full)
    if not chest.any():
        return np.zeros(full, dtype=bool)

    heart_c = (cx + rng.uniform(0.08, 0.18) * hw, cy + rng.uniform(0.12, 0.25) * hap, rng.uniform(1.12, 1.25))
    heart_r = (rng.uniform(0.28, 0.36) * hw, rng.uniform(0.32, 0.42) * hap, rng.uniform(0.18, 0.25))
    h = ellipsoid_radius(x, y, zf, heart_c, heart_r, angle=rng.uniform(0.3, 0.7))
    pericardial_fat = (h < 1.12) & inside
    heart = (h < 1.0) & inside
    spine_zone = ellipsoid_radius(x, y, None, (vx, vy), (frame.vb_r[0] + 14 * u, frame.vb_r[1] + 30 * u)) < 1.0

    lungs = np.zeros(full, dtype=bool)
    for side in (-1, 1):
        lc = (vx + side * 0.45 * hw, cy + (-0.2 + 0.15 * rise) * hap)
        lr = ellipsoid_radius(x, y, None, lc, (0.4 * hw, (0.45 + 0.35 * rise) * hap), angle=-side * 0.3)
        lungs |= (lr < np.sqrt(rise)) & inside & chest
    lungs &= ~(pericardial_fat | spine_zone)
    paint(img, lungs, hu["lung"])
    vessels = (np.abs(smooth_field(rng, full, (18, 18, 8))) < 0.06) & lungs
    paint(img, vessels, rng.uniform(-50, 40))

    paint(img, pericardial_fat & chest, hu["fat"])
    paint(img, heart, 40 + 130 * contrast)
    paint(img, heart & (h > 0.82), 45 + 60 * contrast)  # myocardium

    st_r = ellipsoid_radius(x, y, None, (cx, cy + hap - frame.fat_t - 10 * u), (13 * u, 6 * u))
    sternum = np.broadcast_to(st_r < 1.0, full) & np.broadcast_to(zf > 1.02, full)
    _paint_bone(img, sternum, np.broadcast_to(st_r > 0.6, full), hu["cortical"], hu["cancellous"])
    return lungs | heart | pericardial_fat
