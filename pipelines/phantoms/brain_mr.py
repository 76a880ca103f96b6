"""Seeded brain MRI phantoms (FLAIR, T1, T1ce, T2) with BraTS glioma labels, built on the real MNI152 anatomy.

The phantoms are the default data of the brain workflow: they let the whole pipeline run anywhere, offline,
without BraTS. The anatomy is real: the ICBM 2009a nonlinear symmetric MNI152 template (skull-stripped T1 and
grey / white matter probability maps) that the ``nilearn`` wheel ships in ``nilearn/datasets/data/``. The files
are read with nibabel from the installed package (``nilearn`` is not even imported), so nothing is downloaded.
Everything else is synthetic: each case deforms the template (affine jitter, a smooth elastic field of a few mm),
derives T2 and FLAIR from the tissue probabilities (T1 and T1ce keep the template's real T1 contrast), inserts a
glioma-like tumour with BraTS sub-regions and a mild mass effect, then adds a bias field and Rician noise. The
images are skull-stripped like BraTS (0 outside the brain) in arbitrary scanner units (a few hundred).

Tumours: the tumour core (enhancing rim + necrosis) is 2-6 cm across, centred in cerebral white / grey matter at
least its radius from the brain surface; peritumoural oedema reaches 5-20 mm further with an irregular boundary
and prefers white matter. Most tumours are glioblastoma-like (necrotic core, enhancing rim; small ones may
enhance solidly), a fifth do not enhance (core all label 1). About one case in six is healthy (no tumour).

Geometry: RAS+ (NIfTI) world coordinates, approximately MNI mm; axis 0 towards the subject's Right, axis 1
Anterior, axis 2 Superior; affine ``diag(spacing)`` and the same field of view (160 x 192 x 160 mm, centred on
the template's brain) for every case, e.g. 80 x 96 x 80 voxels at 2 mm.

Command line::

    python -m pipelines.phantoms.brain_mr --out data/BraTS_phantom --num-cases 16 --seed 0
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from pipelines.io.atomic import write_json_atomic
from pipelines.phantoms.liver_ct import _case_seed, _save_nifti, _smooth_field

__all__ = ["CHANNELS", "LABELS", "make_brain_mri_phantom", "write_brain_phantom_task", "mni152_dir", "main"]

logger = logging.getLogger(__name__)

CHANNELS = ("flair", "t1", "t1ce", "t2")
LABELS = {"0": "background", "1": "necrotic tumour core", "2": "peritumoral oedema", "4": "GD-enhancing tumour"}
DEFAULT_SPACING = 2.0
FOV_MM = (160.0, 192.0, 160.0)
HEALTHY_EVERY = 6  # the task writer makes case i healthy when i % HEALTHY_EVERY == HEALTHY_EVERY // 2
HEALTHY_FRACTION = 1.0 / HEALTHY_EVERY
MNI152_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
TEMPLATE_SOURCE = (
    "MNI ICBM152 2009a nonlinear template (files mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz of nilearn; "
    "Fonov et al. 2009, 2011; Collins et al. 1999)"
)
TEMPLATE_LICENCE = (
    "anatomy: MNI ICBM152 template, copyright Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
    "Institute, McGill University, free to use, copy and distribute with its copyright notice (nilearn's own "
    "dataset description lists the licence as 'unknown'); synthetic contrasts, tumours and labels: CC0"
)
GENERATOR_VERSION = 1

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


# ---------------------------------------------------------------------------------------------------------------
# the MNI152 template, read once per process and prepared once per spacing
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Template:
    """The template at 1 mm (anti-aliased for one output spacing) and the output grid of that spacing."""

    volumes: np.ndarray  # (4, X, Y, Z) float32: t1 (0..1), gm, wm, brain mask (0..1), 1 mm voxels
    origin: np.ndarray  # world mm of voxel (0, 0, 0) of ``volumes`` (axes are RAS+, 1 mm)
    shape: tuple[int, int, int]  # output grid
    affine: np.ndarray  # output grid voxel -> world mm
    centres: np.ndarray  # (N, 3) world mm of candidate tumour centres (deep cerebral parenchyma)
    depths: np.ndarray  # (N,) their distance to the brain surface in mm


def mni152_dir() -> Path:
    """The folder of the MNI152 files inside the installed ``nilearn`` package (without importing nilearn).

    Raises:
        ModuleNotFoundError: if nilearn is not installed.
        FileNotFoundError: if one of the template files is missing, naming it.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the brain phantoms read the MNI152 template of nilearn: pip install nilearn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    for name in MNI152_FILES.values():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: MNI152 template file missing from the nilearn package")
    return folder


@functools.lru_cache(maxsize=1)
def _load_mni152() -> tuple[np.ndarray, np.ndarray]:
    """The template volumes (t1, gm, wm, brain) at 1 mm cropped to the brain plus 16 mm, and their origin."""
    folder = mni152_dir()
    arrays, affine = [], None
    for key, name in MNI152_FILES.items():
        img = nib.load(folder / name)
        if affine is None:
            affine = img.affine
        elif not np.allclose(img.affine, affine):
            raise ValueError(f"{folder / name}: affine differs from the {MNI152_FILES['t1']} one")
        arrays.append(np.asarray(img.dataobj, dtype=np.float32) / 255.0)
        logger.debug("read MNI152 %s: %s", key, folder / name)
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise ValueError(f"{folder / MNI152_FILES['t1']}: expected a 1 mm RAS+ template, affine {affine.tolist()}")
    t1 = arrays[0]
    brain = (t1 > 0).astype(np.float32)
    lo = np.maximum(np.argwhere(brain).min(axis=0) - 16, 0)
    hi = np.argwhere(brain).max(axis=0) + 17
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    volumes = np.stack([a[box] for a in (*arrays, brain)])
    return np.ascontiguousarray(volumes), affine[:3, 3] + lo


@functools.lru_cache(maxsize=4)
def _template(spacing: float) -> _Template:
    """The template prepared for output voxels of ``spacing`` mm (cached: about 1 s the first time)."""
    volumes, origin = _load_mni152()
    if spacing > 1.0:  # anti-aliasing before sampling the 1 mm volumes at the coarser output grid
        sigma = 0.42 * np.sqrt(spacing**2 - 1.0)
        volumes = np.stack([ndimage.gaussian_filter(v, sigma, truncate=3.0) for v in volumes])
    brain = volumes[3] > 0.5
    centre = origin + (np.argwhere(brain).min(axis=0) + np.argwhere(brain).max(axis=0)) / 2.0
    shape = tuple(int(round(f / spacing)) for f in FOV_MM)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - (np.array(shape) - 1) / 2.0 * spacing

    # candidate tumour centres on a 2 mm lattice: cerebral parenchyma, off the midline, at least 10 mm deep
    step = 2
    depth = ndimage.distance_transform_edt(brain[::step, ::step, ::step], sampling=step)
    tissue = (volumes[1] + volumes[2])[::step, ::step, ::step]
    idx = np.argwhere((depth >= 10.0) & (tissue >= 0.9))
    world = origin + idx * step
    keep = (world[:, 2] >= -10.0) & (np.abs(world[:, 0]) >= 6.0)
    idx, world = idx[keep], world[keep]
    return _Template(
        volumes=np.ascontiguousarray(volumes),
        origin=origin,
        shape=shape,
        affine=affine,
        centres=world.astype(np.float64),
        depths=depth[tuple(idx.T)].astype(np.float64),
    )


# ---------------------------------------------------------------------------------------------------------------
# per-case geometry: where each output voxel samples the template
# ---------------------------------------------------------------------------------------------------------------
def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles in radians (about x, then y, then z)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _template_coordinates(rng: np.random.Generator, tpl: _Template) -> np.ndarray:
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
        coords[k] = row + centre[k] + shift[k] + amplitude * _smooth_field(rng, shape, ctrl)
    return coords


def _mass_effect(coords: np.ndarray, centre: np.ndarray, radius: float, push: float) -> np.ndarray:
    """Coordinates that sample the anatomy pushed radially away from a tumour of ``radius`` mm by ``push`` mm.

    A template point at distance ``r`` from ``centre`` is sampled at ``r (1 - push / radius)`` inside the tumour
    and at ``r - push radius**2 / r**2`` outside it: monotonic, continuous, and fading with distance.
    """
    d = coords - centre.astype(np.float32)[:, None, None, None]
    r = np.sqrt((d * d).sum(axis=0)) + 1e-3
    inside = r < radius
    scale = np.where(inside, 1.0 - push / radius, 1.0 - push * radius**2 / r**3).astype(np.float32)
    return centre.astype(np.float32)[:, None, None, None] + d * scale


def _sample(tpl: _Template, coords: np.ndarray) -> np.ndarray:
    """Sample the template volumes (t1, gm, wm, brain) at world ``coords``, trilinear, 0 outside."""
    vox = coords - tpl.origin.astype(np.float32)[:, None, None, None]
    return np.stack(
        [ndimage.map_coordinates(v, vox, order=1, mode="constant", cval=0.0, output=np.float32) for v in tpl.volumes]
    )


# ---------------------------------------------------------------------------------------------------------------
# the tumour
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Tumour:
    """A tumour drawn for one case, in template world mm."""

    centre: np.ndarray
    radius: float  # tumour core (enhancing + necrosis) radius, mm
    margin: float  # oedema beyond the core, mm
    rim: float  # enhancing rim thickness, mm; 0: non-enhancing tumour; >= radius: solid enhancement
    push: float  # mass effect, mm


def _draw_tumour(rng: np.random.Generator, tpl: _Template) -> _Tumour:
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
    return _Tumour(
        centre=centre,
        radius=float(radius),
        margin=float(rng.uniform(5.0, 20.0)),
        rim=float(rim),
        push=float(rng.uniform(0.15, 0.3) * radius),
    )


def _tumour_labels(
    rng: np.random.Generator, tumour: _Tumour, coords: np.ndarray, anatomy: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """BraTS labels (0/1/2/4) of the tumour and the oedema strength (0..1) per voxel.

    ``coords`` are the template coordinates before the mass effect (the tumour is a ball there, made irregular by
    smooth random fields); ``anatomy`` is the displaced (t1, gm, wm, brain) the tumour grows into.
    """
    shape = coords.shape[1:]
    fov = np.array(shape) * spacing

    def field(wavelength: float) -> np.ndarray:  # smooth random field with features of about ``wavelength`` mm
        ctrl = tuple(int(np.clip(round(f / wavelength) + 1, 2, min(24, n))) for f, n in zip(fov, shape, strict=True))
        return _smooth_field(rng, shape, ctrl)

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


# ---------------------------------------------------------------------------------------------------------------
# the contrasts
# ---------------------------------------------------------------------------------------------------------------
def _normal_tissue(rng: np.random.Generator, anatomy: np.ndarray) -> np.ndarray:
    """(flair, t1, t1ce, t2) of normal brain: T1 is the template's, T2 and FLAIR mix the tissue probabilities."""
    t1, gm, wm, brain = anatomy
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    jitter = rng.uniform(0.93, 1.07, size=6)
    t2 = _T2["csf"] * jitter[0] * csf + _T2["gm"] * jitter[1] * gm + _T2["wm"] * jitter[2] * wm
    flair = _FLAIR["csf"] * jitter[3] * csf + _FLAIR["gm"] * jitter[4] * gm + _FLAIR["wm"] * jitter[5] * wm
    return np.stack([flair, t1, t1, t2])


def _paint_tumour(
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
        texture = 1.0 + rng.uniform(0.5, 1.0) * heterogeneity * _smooth_field(rng, shape, ctrl)
        for c, value in enumerate(_TUMOUR[name]):
            target = value * rng.uniform(0.92, 1.08) * texture
            out[c] += frac * (target - out[c])
    return out


def _acquire(rng: np.random.Generator, signal: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel: gain, smooth multiplicative bias field, Rician noise, 0 outside the brain (skull-stripped)."""
    shape = brain.shape
    ctrl = tuple(min(3, n) for n in shape)
    channels = {}
    for c, name in enumerate(CHANNELS):
        gain = rng.uniform(300.0, 900.0)
        bias = np.exp(rng.uniform(0.04, 0.12) * _smooth_field(rng, shape, ctrl))
        clean = gain * bias * signal[c]
        sigma = gain * rng.uniform(0.01, 0.025)
        real = clean + sigma * rng.standard_normal(shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(shape, dtype=np.float32)
        channels[name] = np.where(brain, np.sqrt(real * real + imag * imag), 0.0).astype(np.float32)
    return channels


def make_brain_mri_phantom(
    seed: int, spacing: float = DEFAULT_SPACING, *, tumour: bool | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Generate one synthetic, skull-stripped four-channel brain MRI with BraTS tumour labels.

    The first call in a process reads the MNI152 template from the nilearn package and prepares it for
    ``spacing`` (about 1-2 s); each case then takes well under a second at 2 mm.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed and spacing give identical output.
        spacing: isotropic voxel size in mm (1 to 4); the field of view is always 160 x 192 x 160 mm.
        tumour: ``True`` / ``False`` forces a tumour or a healthy brain; ``None`` (default) lets the seed decide,
            healthy with probability 1/6.

    Returns:
        ``(channels, label, affine)``: ``channels`` maps ``"flair"``, ``"t1"``, ``"t1ce"``, ``"t2"`` to float32
        volumes of the same shape (0 outside the brain, a few hundred inside); ``label`` uint8 of that shape with
        0 background, 1 necrotic / non-enhancing tumour core, 2 peritumoral oedema, 4 GD-enhancing tumour (all
        inside the brain); ``affine`` float64 4x4, voxel index to RAS+ world mm (about MNI).

    Raises:
        ValueError: if ``spacing`` is not a number from 1 to 4.
    """
    spacing = float(spacing)
    if not 1.0 <= spacing <= 4.0:
        raise ValueError(f"brain phantom spacing must be from 1 to 4 mm, got {spacing}")
    rng = np.random.default_rng(seed)
    has_tumour = bool(rng.random() >= HEALTHY_FRACTION) if tumour is None else bool(tumour)
    tpl = _template(spacing)
    coords = _template_coordinates(rng, tpl)
    if has_tumour:
        drawn = _draw_tumour(rng, tpl)
        anatomy = _sample(tpl, _mass_effect(coords, drawn.centre, drawn.radius, drawn.push))
        label, strength = _tumour_labels(rng, drawn, coords, anatomy, spacing)
        signal = _paint_tumour(rng, _normal_tissue(rng, anatomy), label, strength, non_enhancing=drawn.rim <= 0.0)
    else:
        anatomy = _sample(tpl, coords)
        label = np.zeros(tpl.shape, dtype=np.uint8)
        signal = _normal_tissue(rng, anatomy)
    brain = (anatomy[3] > 0.5) | (label > 0)
    channels = _acquire(rng, signal, brain)
    return channels, label, tpl.affine.copy()


# ---------------------------------------------------------------------------------------------------------------
# writing a BraTS-style task folder
# ---------------------------------------------------------------------------------------------------------------
def _case_name(index: int) -> str:
    """Folder and file stem of case ``index``: ``BraTS-Phantom-007``."""
    return f"BraTS-Phantom-{index:03d}"


def _case_files(out_dir: Path, name: str) -> list[Path]:
    """The four image files of a case, in :data:`CHANNELS` order, then its segmentation."""
    return [out_dir / name / f"{name}_{suffix}.nii.gz" for suffix in (*CHANNELS, "seg")]


def _task_is_complete(out_dir: Path, record: dict) -> bool:
    """True when ``out_dir/phantom.json`` holds ``record`` and every case file it lists exists."""
    try:
        with open(out_dir / "phantom.json", encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(found, dict) or found.get("params") != record["params"]:
        return False
    for case in record["cases"]:
        for path in _case_files(out_dir, case["name"]):
            if not path.is_file() or path.stat().st_size == 0:
                return False
    return True


def write_brain_phantom_task(
    out_dir: str | os.PathLike, num_cases: int = 16, seed: int = 0, spacing: float = DEFAULT_SPACING
) -> Path:
    """Write ``num_cases`` brain phantoms in the BraTS (up to 2021) layout, with ``phantom.json`` last.

    Layout: ``out_dir/BraTS-Phantom-<iii>/BraTS-Phantom-<iii>_{flair,t1,t1ce,t2}.nii.gz`` (float32) and
    ``_seg.nii.gz`` (uint8, 0/1/2/4), which :mod:`data_manifests.brats` reads; ``phantom.json`` records the
    parameters, labels, channels, source and licence, and each case's tumour voxel counts. Files are written
    atomically and ``phantom.json`` last (removed first when rewriting), so an interrupted run never looks
    complete. Case ``i`` uses a seed derived from ``(seed, i)`` and is healthy when ``i % 6 == 3``, so a task of
    four or more cases always has healthy brains and a case does not depend on ``num_cases``.

    Idempotent: when ``phantom.json`` holds the same parameters and every file exists, nothing is written.

    Args:
        out_dir: task folder to create or complete.
        num_cases: number of cases, at least 1.
        seed: base seed of the task.
        spacing: isotropic voxel size in mm (see :func:`make_brain_mri_phantom`).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_cases`` < 1 or ``spacing`` is invalid.
    """
    num_cases = int(num_cases)
    if num_cases < 1:
        raise ValueError(f"{out_dir}: num_cases must be at least 1, got {num_cases}")
    spacing = float(spacing)
    if not 1.0 <= spacing <= 4.0:
        raise ValueError(f"{out_dir}: brain phantom spacing must be from 1 to 4 mm, got {spacing}")
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "num_cases": num_cases, "spacing": spacing, "generator_version": GENERATOR_VERSION}
    names = [_case_name(i) for i in range(num_cases)]
    if _task_is_complete(out_dir, {"params": params, "cases": [{"name": n} for n in names]}):
        logger.info("brain phantom task %s is already complete (%d cases); nothing to do", out_dir, num_cases)
        return out_dir
    (out_dir / "phantom.json").unlink(missing_ok=True)
    cases = []
    for i, name in enumerate(names):
        healthy = i % HEALTHY_EVERY == HEALTHY_EVERY // 2
        channels, label, affine = make_brain_mri_phantom(_case_seed(seed, i), spacing, tumour=not healthy)
        paths = _case_files(out_dir, name)
        for path, key in zip(paths, CHANNELS, strict=False):
            _save_nifti(channels[key], affine, path)
        _save_nifti(label, affine, paths[-1])
        counts = {k: int((label == int(k)).sum()) for k in LABELS if k != "0"}
        cases.append({"name": name, "tumour": not healthy, "voxels": counts})
        logger.info("wrote brain phantom %d/%d: %s (tumour voxels %s)", i + 1, num_cases, name, counts)
    record = {
        "name": "BraTSPhantom",
        "description": "Synthetic skull-stripped brain MRI (FLAIR, T1, T1ce, T2) with glioma-like tumours, "
        "generated by pipelines.phantoms.brain_mr from the MNI152 template; BraTS (up to 2021) file layout and "
        "labels. Not patient data.",
        "reference": "pipelines/phantoms/brain_mr.py",
        "anatomy": TEMPLATE_SOURCE,
        "licence": TEMPLATE_LICENCE,
        "channels": list(CHANNELS),
        "labels": dict(LABELS),
        "params": params,
        "cases": cases,
    }
    write_json_atomic(record, out_dir / "phantom.json")
    logger.info("brain phantom task written to %s (%d cases)", out_dir, num_cases)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pipelines.phantoms.brain_mr --out DIR --num-cases N --seed S [--spacing MM]``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.phantoms.brain_mr", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="task folder to write (BraTS layout)")
    parser.add_argument("--num-cases", type=int, default=16, help="number of cases (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--spacing", type=float, default=DEFAULT_SPACING, help="voxel size in mm (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = write_brain_phantom_task(args.out, args.num_cases, args.seed, args.spacing)
    logger.info("done: %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
