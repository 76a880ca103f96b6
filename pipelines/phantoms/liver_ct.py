"""Seeded synthetic abdominal CT phantoms (Hounsfield units) with liver and liver-tumour labels.

The phantoms are the default training data of the liver bundle: they let the whole pipeline (datalist, training,
evaluation, inference) run anywhere, without downloading LiTS / MSD Task03_Liver. They are not anatomy-accurate;
they aim to have the intensities, structures and label statistics a liver model meets in portal-venous or
non-contrast abdominal CT.

Geometry: voxel axes are RAS+ as NIfTI defines it (axis 0: towards the patient's Right, axis 1: Anterior, axis 2:
Superior) and the affine is ``diag(spacing)`` with the volume centred on the world origin. The liver therefore
lies on the patient's right, at positive world x, the HIGH index side of axis 0. The body is laid out with axis 0
pointing to the patient's left (as in the radiological display) and mirrored into RAS+ as the last step; phantoms
written before that fix (``dataset.json`` without ``"axes": "RAS"`` in its ``phantom`` record) had the organs on
the wrong side, and :func:`write_liver_phantom_task` rewrites them. The spine is posterior (low index of axis 1)
and the liver dome is at the top slices (high index of axis 2).

Command line::

    python -m pipelines.phantoms.liver_ct --out data/Task03_Liver_phantom --num-cases 12 --seed 0
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.io.atomic import write_json_atomic
from pipelines.phantoms.common import (
    AIR_HU,
    case_seed,
    ellipsoid_radius,
    listed_files_exist,
    paint,
    phantom_parser,
    run_writer,
    save_nifti,
    smooth_field,
    superellipse,
)
from pipelines.phantoms.liver_ct_anatomy import (
    add_tumours,
    draw_ribs,
    gallbladder_mask,
    keep_largest_component,
    stomach_contents_hu,
)
from pipelines.phantoms.liver_ct_regions import BodyFrame, paint_lower_chest, paint_pelvis, psoas_muscles

__all__ = [
    "case_z_range",
    "make_liver_ct_phantom",
    "write_liver_phantom_task",
    "write_liver_default_task",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (224, 224, 64)
DEFAULT_SPACING = (1.6, 1.6, 2.5)
LABELS = {"0": "background", "1": "liver", "2": "cancer"}
# Raised whenever the generator draws different phantoms: a task folder written by an older one is rewritten.
GENERATOR_VERSION = 3


# ---------------------------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------------------------
def make_liver_ct_phantom(
    seed: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    z_range: Sequence[float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one synthetic abdominal CT volume with liver and liver-tumour labels.

    The body is scaled down to fit the field of view when ``shape * spacing`` is smaller than an adult abdomen,
    so tiny volumes (e.g. ``(48, 48, 16)``) still hold every structure. Craniocaudal positions are fractions of
    the field of view: the bottom 15-35 % of the slices never contain liver, the top slices hold the liver dome
    and the lung bases.

    Contents (HU before noise): air -1000; subcutaneous fat about -100; abdominal wall and paraspinal muscle
    40-65; peritoneal soft tissue 25-45 with visceral fat patches; vertebral body (cortex 700-900, cancellous
    180-280), discs, spinal canal and posterior arch; ribs; aorta and IVC (40-150 depending on the contrast
    phase); kidneys, spleen, stomach (an enhancing wall; water, food as dense as liver, or oral contrast; an air-fluid
    level), gallbladder (bile -5..25 HU, under the right lobe; not liver), bowel gas pockets (-1000..-800), lung bases;
    liver parenchyma 48-66 without contrast, up to about 125 with it (one liver in eight fatty, 15-40 HU
    darker), with vessels; 0-4 tumours (radius 5-30 mm, mostly hypodense by 15-40 HU, some hyperdense); psoas
    muscles beside the lumbar spine. Below the iliac crests (0.9 to 1.05 of the abdomen's height below its top),
    the pelvis: iliac wings, sacrum, femoral heads, gluteal muscles, pelvic fat, bladder and rectum
    (:mod:`pipelines.phantoms.liver_ct_regions`). Above it, the lower chest: lungs, heart and sternum.
    Then a slight Gaussian blur (partial volume) and correlated Gaussian noise (sigma 8-15 HU).

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed, shape and spacing give identical output.
        shape: number of voxels along (x: patient right, y: anterior, z: superior).
        spacing: voxel size in mm along the same axes.
        z_range: the craniocaudal extent of the scan in units of the abdomen described above (0 its bottom slice,
            1 its top slice). The default scans the abdomen only; ``(-1.0, 1.6)`` scans 2.6 times as far, with
            the pelvis below and the chest above, so the liver covers a realistic fraction of a
            chest-abdomen-pelvis scan (choose ``shape[2]`` to keep the slice spacing).

    Returns:
        ``(image, label, affine)``: ``image`` int16 HU of ``shape``; ``label`` uint8 of ``shape`` with
        0 background, 1 liver, 2 tumour (tumour voxels are always inside the liver); ``affine`` float64 4x4,
        voxel index to RAS+ world mm, as ``nibabel.Nifti1Image`` expects.

    Raises:
        ValueError: if ``shape`` or ``spacing`` is not three positive numbers.
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    z_lo, z_hi = (float(v) for v in z_range)
    if z_hi <= z_lo:
        raise ValueError(f"phantom z_range must increase, got {tuple(z_range)}")
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 4 or min(spacing) <= 0:
        raise ValueError(
            f"phantom needs 3 dimensions of at least 4 voxels and positive spacing; "
            f"got shape {shape}, spacing {spacing}"
        )
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    sx, sy, sz = spacing
    fov = np.array(shape) * np.array(spacing)

    # world coordinates (mm) relative to the volume centre, and z as a fraction of the field of view (0 = bottom)
    x = ((np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * sx)[:, None, None]
    y = ((np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * sy)[None, :, None]
    zf = (z_lo + (z_hi - z_lo) * np.arange(nz, dtype=np.float32) / max(nz - 1, 1))[None, None, :]
    zmm = ((np.arange(nz, dtype=np.float32) - (nz - 1) / 2) * sz)[None, None, :]
    full = (nx, ny, nz)

    # ---- body outline; every in-plane length below is multiplied by the scale u -------------------------------
    half_w, half_ap = rng.uniform(140, 165), rng.uniform(100, 125)
    u = float(min(1.0, 0.47 * fov[0] / half_w, 0.47 * fov[1] / half_ap))
    half_w, half_ap = half_w * u, half_ap * u
    cx, cy = rng.uniform(-6, 6) * u, rng.uniform(-6, 6) * u
    taper = rng.uniform(-0.05, 0.05)
    a_z = half_w * (1 + taper * (zf - 0.5))
    b_z = half_ap * (1 + 0.5 * taper * (zf - 0.5))
    fat_t = rng.uniform(8, 30) * u
    muscle_t = rng.uniform(6, 12) * u
    body_r = superellipse(x, y, (cx, cy), a_z, b_z)
    body = body_r < 1.0
    wall = superellipse(x, y, (cx, cy), a_z - fat_t, b_z - fat_t) < 1.0
    inner = superellipse(x, y, (cx, cy), a_z - fat_t - muscle_t, b_z - fat_t - muscle_t) < 1.0

    contrast = rng.uniform(0.0, 1.0)  # 0 = non-contrast, 1 = strong portal-venous enhancement
    fat_hu = rng.uniform(-115, -85)
    muscle_hu = rng.uniform(40, 55) + 10 * contrast
    img = np.full(full, AIR_HU, dtype=np.float32)
    paint(img, body, fat_hu)
    paint(img, wall & body, muscle_hu)
    soft_hu = rng.uniform(25, 45)
    paint(img, inner & wall & body, soft_hu)
    # bowel loops separated by mesenteric fat (fat where a medium-frequency field crosses zero), and fatty regions
    loops = np.abs(smooth_field(rng, full, (16, 16, 8))) < rng.uniform(0.15, 0.35)
    fatty = smooth_field(rng, full, (8, 8, 4)) > rng.uniform(0.5, 1.5)
    paint(img, inner & (loops | fatty), fat_hu + 10)

    # ---- spine: vertebral body, discs, canal, posterior arch, paraspinal muscles ------------------------------
    vb_c = (cx + rng.uniform(-4, 4) * u, cy - half_ap + fat_t + rng.uniform(45, 60) * u)
    vb_r = (rng.uniform(17, 22) * u, rng.uniform(14, 18) * u)
    cort = max(2.5 * u, 0.8 * min(sx, sy))
    vb_rad = ellipsoid_radius(x, y, None, vb_c, vb_r)
    vb = np.broadcast_to(vb_rad < 1.0, full)
    disc_period = rng.uniform(28, 34) * u
    disc = ((zmm + rng.uniform(0, disc_period)) % disc_period) < max(5.0 * u, sz * 0.6)
    canal_c = (vb_c[0], vb_c[1] - vb_r[1] - 9 * u)
    canal_rad = ellipsoid_radius(x, y, None, canal_c, (9 * u, 8 * u))
    arch = (canal_rad < 1.6) & ~(canal_rad < 1.0)
    spinous = ellipsoid_radius(x, y, None, (canal_c[0], canal_c[1] - 26 * u), (5 * u, 20 * u)) < 1.0
    for side in (-1, 1):
        para = ellipsoid_radius(x, y, None, (canal_c[0] + side * 30 * u, canal_c[1] - 12 * u), (22 * u, 18 * u))
        paint(img, np.broadcast_to(para < 1.0, full) & body, muscle_hu)
    cortical_hu, cancellous_hu = rng.uniform(700, 900), rng.uniform(180, 280)
    bone_arch = np.broadcast_to(arch | spinous, full) & body
    paint(img, bone_arch, cortical_hu)
    paint(img, np.broadcast_to(canal_rad < 1.0, full), rng.uniform(15, 30))
    paint(img, vb, cortical_hu)
    paint(img, vb & np.broadcast_to(vb_rad < 1.0 - cort / min(vb_r), full), cancellous_hu)
    paint(img, vb & disc, rng.uniform(70, 100))
    spine = vb | bone_arch | np.broadcast_to(canal_rad < 1.0, full)
    # below the iliac crests (seldom inside the default field of view) the pelvis replaces the lumbar spine; its
    # draws come from their own generator, so the abdomen of a seed is the same whatever the scan's range
    region_rng = np.random.default_rng([int(seed), 1])
    pelvis_top = region_rng.uniform(-0.05, 0.1)
    frame = BodyFrame((cx, cy), half_w, half_ap, vb_c, vb_r, fat_t, u, fov[2] / (z_hi - z_lo))
    region_hu = {"fat": fat_hu, "muscle": muscle_hu, "cortical": cortical_hu, "cancellous": cancellous_hu}

    # ---- great vessels -----------------------------------------------------------------------------------------
    ao_r = rng.uniform(9, 13) * u
    ao_c = (vb_c[0] + rng.uniform(8, 18) * u, vb_c[1] + vb_r[1] + ao_r + rng.uniform(1, 4) * u)
    aorta = np.broadcast_to(ellipsoid_radius(x, y, None, ao_c, (ao_r, ao_r)) < 1.0, full)
    ivc_c = (vb_c[0] - rng.uniform(20, 28) * u, vb_c[1] + vb_r[1] + rng.uniform(6, 12) * u)
    ivc = np.broadcast_to(ellipsoid_radius(x, y, None, ivc_c, (12 * u, 8 * u)) < 1.0, full)
    vessels = aorta | ivc

    # ---- kidneys (right one lower), spleen, stomach, bowel gas, lung bases -----------------------------------
    kidneys = np.zeros(full, dtype=bool)
    fossae = np.zeros(full, dtype=bool)
    kidney_hu = 32 + 140 * contrast
    for side, zc in ((-1, rng.uniform(0.15, 0.35)), (1, rng.uniform(0.3, 0.45))):
        kc = (vb_c[0] + side * rng.uniform(55, 68) * u, vb_c[1] + rng.uniform(-2, 8) * u, zc)
        radii = (rng.uniform(20, 26) * u, rng.uniform(25, 32) * u, rng.uniform(0.22, 0.3))
        k_rad = ellipsoid_radius(x, y, zf, kc, radii, angle=side * rng.uniform(0.3, 0.6))
        kidney = (k_rad < 1.0) & inner
        # perirenal and posterior pararenal fat: the renal fossa, open to the back wall; the liver never enters it
        ry = np.where(y < kc[1], 3.5 * radii[1], 1.25 * radii[1])  # elongated posteriorly, up to the back wall
        fossa_r2 = ((x - kc[0]) / (1.35 * radii[0])) ** 2 + ((y - kc[1]) / ry) ** 2
        fossa = (fossa_r2 + ((zf - zc) / (1.2 * radii[2])) ** 2 < 1.0) & inner
        kidneys |= kidney
        fossae |= fossa
        paint(img, fossa, fat_hu + 5)
        paint(img, kidney, kidney_hu)
        paint(img, kidney & (k_rad < 0.45), fat_hu + 20)  # renal sinus fat

    spleen_c = (cx + 0.58 * half_w, cy - 0.3 * half_ap, rng.uniform(0.7, 0.85))
    spleen_rad = ellipsoid_radius(
        x, y, zf, spleen_c, (0.16 * half_w, 0.32 * half_ap, rng.uniform(0.15, 0.25)), angle=-0.5
    )
    spleen = (spleen_rad < 1.0) & inner
    paint(img, spleen, 45 + 70 * contrast)

    st_c = (cx + 0.35 * half_w, cy + 0.2 * half_ap, rng.uniform(0.65, 0.8))
    st_r = (0.24 * half_w, 0.3 * half_ap, rng.uniform(0.15, 0.22))
    st_rad = ellipsoid_radius(x, y, zf, st_c, st_r)
    stomach = (st_rad < 1.0) & inner
    rng.uniform(5, 25)  # the draw of the old uniform contents, kept so the later organs of a seed stay the same
    # the new organs draw from their own generator, as the regions do
    organ_rng = np.random.default_rng([int(seed), 2])
    paint(img, stomach, muscle_hu + 25 * contrast)  # the wall, 3-5 mm, enhancing with contrast
    paint(
        img, (st_rad < 1.0 - organ_rng.uniform(3, 5) * u / min(st_r[:2])) & inner, stomach_contents_hu(organ_rng, full)
    )
    gas_level = st_c[1] + st_r[1] * rng.uniform(-0.2, 1.1)  # above 1.0 * radius: collapsed, no gas
    paint(img, stomach & np.broadcast_to(y > gas_level, full), rng.uniform(-1000, -900))

    for _ in range(int(rng.integers(3, 10))):
        gc = (cx + rng.uniform(-0.6, 0.6) * half_w, cy + rng.uniform(-0.1, 0.6) * half_ap, rng.uniform(0.0, 0.5))
        gr = (rng.uniform(5, 18) * u, rng.uniform(4, 12) * u, rng.uniform(0.03, 0.12))
        pocket = (ellipsoid_radius(x, y, zf, gc, gr, angle=rng.uniform(0, np.pi)) < 1.0) & inner
        paint(img, pocket, rng.uniform(-1000, -800))

    lungs = np.zeros(full, dtype=bool)
    lung_start = rng.uniform(0.82, 0.95)
    grow = np.clip((zf - lung_start) / (1.0 - lung_start + 1e-6), 0.0, 1.0)
    for side in (-1, 1):  # posterolateral costophrenic recesses, growing towards the top slices
        lc = (vb_c[0] + side * 0.42 * half_w, cy - 0.75 * half_ap)
        lr = ellipsoid_radius(x, y, None, lc, (0.36 * half_w, 0.5 * half_ap), angle=-side * 0.5)
        lungs |= (lr < grow) & inner & (grow > 0)
    lung_hu = rng.uniform(-880, -820)
    paint(img, lungs, lung_hu)

    # ---- the regions around the abdomen: psoas and pelvis below, lungs and heart above -----------------------
    psoas = psoas_muscles(x, y, zf, frame, pelvis_top, full) & inner & ~(kidneys | fossae | spine)
    paint(img, psoas, muscle_hu)
    pelvis = paint_pelvis(region_rng, img, x, y, zf, frame, pelvis_top, body, inner, region_hu, full)
    sacral = np.broadcast_to(zf < pelvis_top, full)  # the lumbar spine and the aorta end at the pelvis
    paint(img, sacral & spine & ~pelvis, muscle_hu)
    paint(img, sacral & vessels & ~pelvis, soft_hu)
    spine &= ~sacral
    vessels &= ~sacral
    chest = paint_lower_chest(region_rng, img, x, y, zf, frame, inner, {**region_hu, "lung": lung_hu}, contrast, full)

    # ---- liver: right lobe + left lobe (smooth union), deformed by low-frequency noise -----------------------
    z_bot, z_top = rng.uniform(0.15, 0.35), rng.uniform(0.95, 1.12)
    right = ellipsoid_radius(
        x,
        y,
        zf,
        (cx - rng.uniform(0.38, 0.48) * half_w, cy + rng.uniform(-0.1, 0.05) * half_ap, (z_bot + z_top) / 2),
        (rng.uniform(0.4, 0.5) * half_w, rng.uniform(0.7, 0.85) * half_ap, (z_top - z_bot) / 2),
        angle=rng.uniform(-0.2, 0.2),
    )
    left_zc = rng.uniform(0.65, 0.85)
    left = ellipsoid_radius(
        x,
        y,
        zf,
        (cx + rng.uniform(-0.05, 0.15) * half_w, cy + rng.uniform(0.35, 0.5) * half_ap, left_zc),
        (rng.uniform(0.3, 0.45) * half_w, rng.uniform(0.22, 0.32) * half_ap, rng.uniform(0.15, 0.3)),
    )
    k = 0.08
    blend = -k * np.logaddexp(-right / k, -left / k)
    blend += 0.12 * smooth_field(rng, full, (6, 6, 5))
    liver = (blend < 1.0) & inner & ~(spine | vessels | kidneys | fossae | lungs | psoas | pelvis | chest)
    liver &= np.broadcast_to(zf >= z_bot, full)
    right_centre = (cx - 0.43 * half_w, cy)
    gallbladder = gallbladder_mask(organ_rng, x, y, zf, right_centre, half_w, half_ap, u, z_bot, full)
    gallbladder &= inner & ~(spine | vessels | kidneys | psoas | pelvis | chest)
    liver &= ~gallbladder
    # fat of a renal fossa left as a hole in an axial slice of the liver (above the kidney pole) becomes liver
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    liver |= ndimage.binary_fill_holes(liver, structure=in_plane) & fossae & ~(kidneys | vessels | spine)
    keep_largest_component(liver)

    # parenchyma: 48-66 HU without contrast, up to about 125 in the portal-venous phase (as bright as the spleen);
    # one liver in eight is fatty (steatosis), darker than the muscles; intensity alone never tells liver apart
    liver_hu = rng.uniform(48, 66) + contrast * rng.uniform(40, 60)
    if rng.random() < 0.125:
        liver_hu -= rng.uniform(15, 40)
    texture = 2.5 * smooth_field(rng, full, (12, 12, 6))
    paint(img, liver, liver_hu + texture)
    # hepatic / portal vessels: tubes where two smooth fields are both near zero
    ves = np.abs(smooth_field(rng, full, (14, 14, 7))) < 0.12
    ves &= np.abs(smooth_field(rng, full, (14, 14, 7))) < 0.12
    paint(img, liver & ves, liver_hu + (-15 + 60 * contrast))
    paint(img, gallbladder, organ_rng.uniform(-5, 25))

    label = np.zeros(full, dtype=np.uint8)
    label[liver] = 1
    add_tumours(rng, img, label, liver, (x, y, zmm), spacing, u, liver_hu)

    # ---- vessels, ribs painted last (outside the liver label) --------------------------------------------------
    paint(img, aorta & vessels & body, 45 + 105 * contrast)
    paint(img, ivc & vessels & body & ~aorta, 40 + 80 * contrast)
    ribs = draw_ribs(rng, x, y, zf, (cx, cy), a_z - fat_t - 0.5 * muscle_t, b_z - fat_t - 0.5 * muscle_t, u, full)
    ribs &= ~(label > 0)
    paint(img, ribs, rng.uniform(450, 750))

    # ---- acquisition: partial volume blur, correlated noise, int16 --------------------------------------------
    blur = (0.6, 0.6, 0.6 * min(1.0, sx / sz))
    img = ndimage.gaussian_filter(img, blur, truncate=3.0)
    sigma = rng.uniform(8, 15)
    noise = rng.standard_normal(full, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, (0.5, 0.5, 0.0), truncate=3.0)
    noise *= sigma / (noise[::3, ::3, ::2].std() + 1e-6)
    img += noise
    image = np.clip(np.rint(img), -1024, 3071).astype(np.int16)

    # laid out with axis 0 towards the patient's left; NIfTI's RAS+ axis 0 points to the right: mirror
    image, label = np.ascontiguousarray(image[::-1]), np.ascontiguousarray(label[::-1])
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(spacing)
    return image, label, affine


# ---------------------------------------------------------------------------------------------------------------
# writing an MSD-style task folder
# ---------------------------------------------------------------------------------------------------------------
def case_z_range(seed: int) -> tuple[float, float]:
    """The craniocaudal range of a case of a task written with varied ranges, drawn from ``seed``.

    A quarter of the cases scan the abdomen alone (as the default of :func:`make_liver_ct_phantom`); the others
    reach down into the pelvis (as far as the femoral heads) and up into the lower chest (the heart and the lungs),
    as abdomen-pelvis and chest-abdomen-pelvis scans do. ``0`` and ``1`` are the abdomen's bottom and top slices.
    """
    rng = np.random.default_rng([int(seed), 2])
    if rng.random() < 0.25:
        return 0.0, 1.0
    return round(float(rng.uniform(-0.9, 0.0)), 3), round(float(rng.uniform(1.0, 1.45)), 3)


def _task_is_complete(out_dir: Path, num_cases: int, params: dict) -> bool:
    """True when ``out_dir/dataset.json`` lists ``num_cases`` cases, made with ``params``, whose files exist."""
    ds_path = out_dir / "dataset.json"
    try:
        with open(ds_path, encoding="utf-8") as f:
            ds = json.load(f)
    except (OSError, ValueError):
        return False
    training = ds.get("training")
    if not isinstance(training, list) or len(training) != num_cases:
        return False
    if ds.get("phantom", params) != params:
        return False
    negatives = ds.get("negatives", [])
    if not isinstance(negatives, list) or len(negatives) != params.get("negatives", 0):
        return False
    return listed_files_exist(out_dir, training + negatives)


def write_liver_phantom_task(
    out_dir: str | os.PathLike,
    num_cases: int = 12,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    z_range: Sequence[float] | None = None,
    negatives: int = 0,
) -> Path:
    """Write ``num_cases`` phantoms as a Medical Segmentation Decathlon Task03_Liver folder.

    Layout: ``imagesTr/liver_<i>.nii.gz`` (int16 HU), ``labelsTr/liver_<i>.nii.gz`` (uint8, 0/1/2) and
    ``dataset.json`` (MSD fields plus a ``phantom`` record of the generator parameters). Every file is written
    to a temporary name in its folder and renamed, and ``dataset.json`` is written last, so an interrupted run
    never looks complete. Case ``i`` uses a seed derived from ``(seed, i)``, so a case does not depend on
    ``num_cases``.

    Idempotent: when ``dataset.json`` already lists ``num_cases`` cases made with the same seed, shape, spacing
    and range by the same version of the generator (:data:`GENERATOR_VERSION`) and all their files exist, nothing
    is rewritten.

    Args:
        out_dir: task folder to create or complete (e.g. ``data/Task03_Liver_phantom``).
        num_cases: number of image/label pairs, at least 1.
        seed: base seed of the task.
        shape: voxels per case along (x, y, z).
        spacing: voxel size in mm.
        z_range: craniocaudal extent of every scan (see :func:`make_liver_ct_phantom`), or ``None`` (the default)
            for a range of its own per case (:func:`case_z_range`): from abdomen-only to pelvis-to-lower-chest,
            as real abdominal CTs come. The slice spacing then grows with the range (``spacing[2]`` for the
            abdomen alone), so every case keeps ``shape[2]`` slices.
        negatives: head CTs without liver to add (:func:`pipelines.phantoms.head_ct.write_head_ct_negatives`),
            listed under ``negatives`` in ``dataset.json``, not in ``training``: datalist builders put them in a
            ``negatives`` section that only the slice gate trains on, so that it learns to keep no slice of a head.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_cases`` < 1 or the shape / spacing is invalid.
    """
    if int(num_cases) < 1:
        raise ValueError(f"{out_dir}: num_cases must be at least 1, got {num_cases}")
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "shape": [int(s) for s in shape], "spacing": [float(s) for s in spacing]}
    params["axes"] = "RAS"  # absent from tasks written with the organs mirrored: those are rewritten
    params["version"] = GENERATOR_VERSION
    if z_range is None:
        params["z_range"] = "per case"
    elif tuple(float(v) for v in z_range) != (0.0, 1.0):
        params["z_range"] = [float(v) for v in z_range]
    if int(negatives):
        params["negatives"] = int(negatives)
    if _task_is_complete(out_dir, int(num_cases), params):
        logger.info("phantom task %s is already complete (%d cases); nothing to do", out_dir, num_cases)
        return out_dir
    (out_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(int(num_cases)):
        name = f"liver_{i}.nii.gz"
        case_range, case_spacing = z_range, spacing
        if z_range is None:
            case_range = case_z_range(case_seed(seed, i))
            case_spacing = (*spacing[:2], spacing[2] * (case_range[1] - case_range[0]))
        image, label, affine = make_liver_ct_phantom(
            case_seed(seed, i), shape=shape, spacing=case_spacing, z_range=case_range
        )
        save_nifti(image, affine, out_dir / "imagesTr" / name)
        save_nifti(label, affine, out_dir / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        logger.info("wrote phantom case %d/%d: %s (%d tumour voxels)", i + 1, num_cases, name, int((label == 2).sum()))
    dataset = {
        "name": "LiverPhantom",
        "description": "Synthetic abdominal CT phantoms (seeded, generated by pipelines.phantoms.liver_ct) with liver "
        "and "
        "liver tumour labels, laid out like the Medical Segmentation Decathlon Task03_Liver. Not patient data.",
        "reference": "pipelines/phantoms/liver_ct.py",
        "licence": "CC0 (synthetic data)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
        "phantom": params,
    }
    if int(negatives):
        from pipelines.phantoms.head_ct import write_head_ct_negatives

        dataset["negatives"] = [
            {k: f"./{v}" for k, v in case.items()} for case in write_head_ct_negatives(out_dir, negatives, seed)
        ]
    write_json_atomic(dataset, out_dir / "dataset.json")
    logger.info("phantom task written to %s (%d cases)", out_dir, len(training))
    return out_dir


#: head CTs added to the default task as negatives for the slice gate
DEFAULT_NEGATIVES = 2


def write_liver_default_task(out_dir: str | os.PathLike, num_cases: int = 12, seed: int = 0) -> Path:
    """The liver workflow's embedded default data: :func:`write_liver_phantom_task` with a range of its own per
    case and :data:`DEFAULT_NEGATIVES` head CTs as negatives for the slice gate."""
    return write_liver_phantom_task(out_dir, num_cases, seed, negatives=DEFAULT_NEGATIVES)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pipelines.phantoms.liver_ct --out DIR --num-cases N --seed S``."""
    parser = phantom_parser("liver_ct", __doc__, "task folder to write (MSD Task03_Liver layout)", default_count=12)
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING), metavar=("SX", "SY", "SZ"))
    parser.add_argument(
        "--z-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
        help="craniocaudal extent in units of the abdomen, the same for every case (0 1: the abdomen; -1 1.6: "
        "chest-abdomen-pelvis); default: a range of its own per case",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return run_writer(
        lambda: write_liver_phantom_task(args.out, args.num_cases, args.seed, args.shape, args.spacing, args.z_range),
        logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
