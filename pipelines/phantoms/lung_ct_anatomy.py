"""The anatomy of the lung CT phantom: chest wall, abdomen below the domes, spine, ribs, mediastinum, lungs and
their bronchovascular trees, drawn on a :class:`Grid` (see :mod:`pipelines.phantoms.lung_ct` for the geometry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from pipelines.phantoms.common import AIR_HU, ellipsoid_radius, paint, smooth_field, superellipse
from pipelines.phantoms.lung_ct_tubes import grow_tree, random_perpendicular, sample_segments, splat

__all__ = [
    "Grid",
    "Wall",
    "draw_body_wall",
    "draw_abdomen",
    "draw_spine",
    "draw_ribs_and_chest_bones",
    "draw_mediastinum",
    "draw_lung_fields",
    "paint_mediastinum",
    "draw_bronchovascular_trees",
]


class Grid:
    """World coordinates (mm, RAS+, centred) of a volume: broadcastable ``x``, ``y``, ``zmm``, in-plane ``x2``,
    ``y2``, and ``zf``, the height of each slice in units of the chest (0 = the chest's bottom slice, 1 its top).

    ``z_range``: the scan's craniocaudal extent in those units. The default ``(0, 1)`` scans the chest alone, so
    ``zf`` is the fraction of the field of view; a longer range such as ``(-3.8, 1.8)`` reaches from the thighs to
    the neck, with the chest ``chest_mm`` high inside it.
    """

    def __init__(
        self, shape: tuple[int, int, int], spacing: tuple[float, float, float], z_range: Sequence[float] = (0.0, 1.0)
    ):
        self.shape, self.spacing = shape, spacing
        self.z_range = (float(z_range[0]), float(z_range[1]))
        self.fov = np.array(shape) * np.array(spacing)
        self.chest_mm = float(self.fov[2] / (self.z_range[1] - self.z_range[0]))  # the chest's height in mm
        self.origin = -(np.array(shape) - 1) / 2 * np.array(spacing)
        axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s) for n, s in zip(shape, spacing, strict=True)]
        self.x, self.y, self.zmm = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        z_lo, z_len = self.z_range[0], self.z_range[1] - self.z_range[0]
        self.zf = (z_lo + z_len * (np.arange(shape[2], dtype=np.float32) / max(shape[2] - 1, 1)))[None, None, :]
        self.x2, self.y2 = self.x[:, :, 0], self.y[:, :, 0]
        self.zscale = min(1.0, self.chest_mm / 192.0)  # craniocaudal lengths shrink with a short chest

    def z_of(self, fraction: float) -> float:
        """The height (mm) of a height in chest units (0 the chest's bottom slice, 1 its top slice)."""
        z_lo, z_len = self.z_range[0], self.z_range[1] - self.z_range[0]
        return float(self.origin[2] + (fraction - z_lo) / z_len * (self.shape[2] - 1) * self.spacing[2])

    def column(self, mask2: np.ndarray) -> np.ndarray:
        """An in-plane mask repeated along z (a read-only view)."""
        return np.broadcast_to(mask2[..., None], self.shape)


class Wall(NamedTuple):
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
    center: tuple[float, float]  # the body outline's centre
    half_w: float  # half the body's width
    half_ap: float  # half its anteroposterior depth
    fat_t: float  # the subcutaneous fat's thickness


def draw_body_wall(rng, g: Grid) -> Wall:
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
    r_cav = superellipse(x2, y2, ccav, a_cav, b_cav, p=2.1)
    cavity = r_cav < 1.0
    dx, dy = x2 - ccav[0], y2 - ccav[1]
    return Wall(
        u=u,
        body=superellipse(x2, y2, (cx, cy), half_w, half_ap, p=2.2) < 1.0,
        wall=superellipse(x2, y2, (cx, cy), half_w - fat_t, half_ap - fat_t, p=2.2) < 1.0,
        cavity=cavity,
        band=(superellipse(x2, y2, ccav, a_cav + rib_t, b_cav + rib_t, p=2.1) < 1.0) & ~cavity,
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
        center=(cx, cy),
        half_w=half_w,
        half_ap=half_ap,
        fat_t=fat_t,
    )


def draw_abdomen(rng, g: Grid, w: Wall, img: np.ndarray) -> tuple[np.ndarray, dict]:
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
    paint(img, abdomen, rng.uniform(30, 45))  # stomach wall, spleen, bowel
    paint(img, liver, rng.uniform(55, 68))
    centre = (w.mx + 0.45 * w.a_cav, w.ccav[1] + 0.2 * w.b_cav, g.z_of(dome_top[1] - 0.1))
    bubble = ellipsoid_radius(x, y, g.zmm, centre, (0.25 * w.a_cav, 0.3 * w.b_cav, 0.06 * g.chest_mm))
    if rng.random() < 0.7:
        paint(img, abdomen & ~liver & (bubble < 1.0), rng.uniform(-1000, -950))  # gastric fundus gas
    return below, dome_top


def draw_spine(rng, g: Grid, w: Wall, img: np.ndarray) -> dict:
    """Paint the vertebrae (cortex, cancellous bone, discs), canal, posterior arch and paraspinal muscles;
    return the vertebral body centre and radii and the in-plane zone the lungs keep away from."""
    x2, y2, u = g.x2, g.y2, w.u
    vb_r = (rng.uniform(15, 19) * u, rng.uniform(13, 16) * u)
    vb_c = (w.mx, w.ccav[1] - w.b_cav + 0.4 * vb_r[1])
    vb_rad = ellipsoid_radius(x2, y2, None, vb_c, vb_r)
    canal_c = (vb_c[0], vb_c[1] - vb_r[1] - 8 * u)
    canal_rad = ellipsoid_radius(x2, y2, None, canal_c, (8 * u, 7 * u))
    arch = (canal_rad < 1.6) & ~(canal_rad < 1.0)
    arch |= ellipsoid_radius(x2, y2, None, (canal_c[0], canal_c[1] - 18 * u), (4 * u, 14 * u)) < 1.0
    for side in (-1, 1):
        tp_c = (canal_c[0] + side * 20 * u, canal_c[1] + 2 * u)
        arch |= ellipsoid_radius(x2, y2, None, tp_c, (12 * u, 4 * u), angle=side * 0.3) < 1.0  # transverse process
        para = ellipsoid_radius(x2, y2, None, (canal_c[0] + side * 28 * u, canal_c[1] - 14 * u), (20 * u, 17 * u))
        paint(img, g.column((para < 1.0) & w.body & ~w.cavity), w.muscle_hu)
    cortical_hu, cancellous_hu = rng.uniform(700, 900), rng.uniform(180, 280)
    disc_period = rng.uniform(26, 32) * g.zscale
    disc = ((g.zmm + rng.uniform(0, disc_period)) % disc_period) < max(5.0, 0.6 * g.spacing[2])
    vb = g.column(vb_rad < 1.0)
    paint(img, g.column(arch & w.body), cortical_hu)
    paint(img, g.column(canal_rad < 1.0), rng.uniform(15, 30))
    paint(img, vb, cortical_hu)
    cort = max(2.5 * u, 0.8 * min(g.spacing[:2]))
    paint(img, vb & g.column(vb_rad < 1.0 - cort / min(vb_r)), cancellous_hu)
    paint(img, vb & disc, rng.uniform(70, 100))
    return {"centre": vb_c, "radii": vb_r, "zone": (vb_rad < 1.25) | (canal_rad < 2.2)}


def draw_ribs_and_chest_bones(rng, g: Grid, w: Wall, img: np.ndarray, dome_top: dict) -> None:
    """Paint intercostal muscle and ribs sloping down towards the front (costal cartilage anteriorly), the
    sternum and, with a thick enough muscle layer, the scapulae."""
    u = w.u
    paint(img, g.column(w.band), w.muscle_hu)
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
    st_rad = ellipsoid_radius(g.x2, g.y2, None, st_c, (rng.uniform(13, 18) * u, 0.6 * w.rib_t))
    sternum = g.column(st_rad < 1.0) & (g.zf > dome_top[-1] - 0.05)
    paint(img, sternum, rng.uniform(600, 800))
    paint(img, sternum & g.column(st_rad < 0.6), rng.uniform(200, 320))
    if w.muscle_t > 9 * u:
        dx, dy = g.x2 - w.ccav[0], g.y2 - w.ccav[1]
        for side in (-1, 1):
            ang = np.arctan2(dy / w.b_cav, side * dx / w.a_cav)  # mirrored for the right side
            plate = (w.depth > w.rib_t + 2 * u) & (w.depth < w.rib_t + 6 * u) & (ang > -1.25) & (ang < -0.45)
            scapula = g.column(plate) & (g.zf > rng.uniform(0.45, 0.6)) & (img > 0)
            paint(img, scapula, rng.uniform(450, 700))


def draw_mediastinum(rng, g: Grid, w: Wall, spine: dict, dome_top: dict) -> dict:
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
    top = max(1.05, g.z_range[1] + 0.05)  # above the chest the trachea and oesophagus go on through the neck
    airways = [((*tr_c, z_of(z_car)), (*tr_c, z_of(top)), tr_r + 2, tr_r + 2)]  # radii include a 2 mm wall
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
            z_of(z_arch) + 0.04 * g.chest_mm * np.sin(np.pi * a),
        )
        for a in arc
    ]
    vessels = [((*asc, z_of(heart_c[2])), arch[0], ao_r * 1.1, ao_r)]  # ascending aorta
    vessels += [(arch[i], arch[i + 1], ao_r, ao_r * 0.95) for i in range(len(arch) - 1)]
    vessels.append((arch[-1], (*desc, z_of(-0.05)), ao_r * 0.95, ao_r * 0.85))  # descending aorta
    pa_c = (mx + rng.uniform(8, 16) * u, asc[1] - rng.uniform(0, 8) * u, z_of(z_car - 0.1))
    vessels.append(((pa_c[0] + 10 * u, w.ccav[1] + 0.35 * w.b_cav, z_of(heart_c[2] + 0.05)), pa_c, 13 * u, 12 * u))
    for side in (-1, 1):
        vessels.append((pa_c, tuple(hila[side] + np.array([0, 8 * u, 0.03 * g.chest_mm])), 10 * u, 8 * u))
    svc = (mx - rng.uniform(24, 30) * u, asc[1] - rng.uniform(0, 8) * u)
    vessels.append(((*svc, z_of(heart_c[2] + 0.1)), (*svc, z_of(1.05)), 9 * u, 9 * u))
    eso = (mx + rng.uniform(2, 8) * u, vb_c[1] + vb_r[1] + 6 * u)
    vessels.append(((*eso, z_of(-0.05)), (*eso, z_of(top)), 6.5 * u, 6.5 * u))

    margin, step = 4.0 * u, 0.5 * min(g.spacing)
    vessel_dist = np.full(g.shape, 1e3, dtype=np.float32)
    splat(vessel_dist, *sample_segments(vessels, step), g.origin, g.spacing, "distance", margin)
    airway_dist = np.full(g.shape, 1e3, dtype=np.float32)
    splat(airway_dist, *sample_segments(airways, step), g.origin, g.spacing, "distance", margin)
    heart = ellipsoid_radius(g.x, g.y, g.zf, heart_c, heart_r, angle=rng.uniform(0.3, 0.6))
    # a central wedge from the spine to the sternum, wide behind (oesophagus, aorta), narrow in front (the
    # anterior junction line), plus margins around the heart, the great vessels and the airways
    band_w = rng.uniform(14, 22) * u
    front = vb_c[1] + vb_r[1]
    ant = np.clip((g.y2 - front) / (w.ccav[1] + w.b_cav - front), 0.0, 1.0)
    wedge = (np.abs(g.x2 - mx) < band_w * (1.1 - 0.85 * ant)) | spine["zone"]
    mask = g.column(wedge) | (heart < 1.12) | (vessel_dist < margin) | (airway_dist < margin)
    return {"mask": mask, "heart": heart, "vessel_dist": vessel_dist, "airway_dist": airway_dist, "hila": hila}


def draw_lung_fields(rng, g: Grid, w: Wall, below: np.ndarray, mediastinum: np.ndarray) -> np.ndarray:
    """Two lungs: super-ellipses narrowing to the apices, clipped by the cavity, the mediastinum and the domes;
    each lung keeps its largest connected part."""
    z_mid, z_apex = rng.uniform(0.5, 0.6), rng.uniform(1.0, 1.15)
    prof = np.sqrt(np.clip(1.0 - ((np.maximum(g.zf, z_mid) - z_mid) / (z_apex - z_mid)) ** 2, 0.0, 1.0))
    deform = 0.05 * smooth_field(rng, g.shape, (6, 6, 4))
    allowed = g.column(w.cavity) & ~below & ~mediastinum
    lungs = np.zeros(g.shape, dtype=bool)
    for side in (-1, 1):
        shrink = 0.9 if side == 1 else 1.0  # the left lung is smaller
        lc = (w.mx + side * 0.52 * w.a_cav, w.ccav[1] - 0.05 * w.b_cav)
        lr = superellipse(g.x, g.y, lc, 0.62 * w.a_cav * prof * shrink + 1e-3, 1.08 * w.b_cav * prof + 1e-3, p=2.2)
        part = (lr + deform < 1.0) & g.column(side * (g.x2 - w.mx) > 0) & allowed
        lab, n = ndimage.label(part)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            part = lab == int(np.argmax(sizes))
        lungs |= part
    return lungs


def paint_mediastinum(rng, g: Grid, w: Wall, img, lungs, below, med: dict) -> float:
    """Paint mediastinal fat (soft tissue at the apices), pericardial fat, the heart, the vessel tubes and the
    airways with their walls; return the soft-tissue HU used for blood and muscle."""
    cav = g.column(w.cavity) & ~below
    region = cav & ~lungs
    fill = np.where(g.zf > 0.85, rng.uniform(-60, 20), rng.uniform(-105, -80)).astype(np.float32)
    paint(img, region, np.broadcast_to(fill, g.shape))
    paint(img, (med["heart"] < 1.1) & region, rng.uniform(-105, -85))  # pericardial fat
    soft_hu = rng.uniform(35, 50)
    paint(img, (med["heart"] < 1.0) & region, soft_hu)
    h = min(g.spacing[:2])
    for dist, value in (
        (med["vessel_dist"], soft_hu),
        (med["airway_dist"], soft_hu + 20),
        (med["airway_dist"] + 2, AIR_HU),
    ):
        cover = np.clip(0.5 - dist[region] / h, 0.0, 1.0)
        img[region] += cover * (value - img[region])
    return soft_hu


def draw_bronchovascular_trees(rng, g: Grid, w: Wall, img, lungs, hila: dict, soft_hu: float) -> None:
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
        arteries = grow_tree(rng, hila[side], targets, rng.uniform(5.0, 6.5) * w.u, inside, min_radius=min_r)
        vein_root = hila[side] + np.array([0.0, rng.uniform(-5, 5) * w.u, -0.08 * g.chest_mm])
        veins = grow_tree(rng, vein_root, targets[:5], rng.uniform(4.5, 6.0) * w.u, inside, min_radius=min_r)
        splat(vessel, *sample_segments([s[:4] for s in arteries + veins], step), origin, spacing, "cover")
        offset = np.array(random_perpendicular(rng, (0.0, 0.0, 1.0)))
        airways = []
        for p0, p1, r0, r1, gen in arteries:
            if gen > 3:
                continue
            p0, p1 = np.asarray(p0), np.asarray(p1)
            d = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
            o = offset - offset.dot(d) * d
            o /= np.linalg.norm(o) + 1e-9
            airways.append((p0 + o * 2.2 * r0, p1 + o * 2.2 * r1, 0.85 * r0, 0.85 * r1))
        pts, rad = sample_segments(airways, step)
        splat(lumen, pts, rad, origin, spacing, "cover")
        splat(wall, pts, rad * 1.2 + 0.6, origin, spacing, "cover")
    for cover, value in ((wall, soft_hu - 10), (lumen, AIR_HU), (vessel, rng.uniform(30, 50))):
        where = lungs & (cover > 0)
        img[where] += cover[where] * (value - img[where])
