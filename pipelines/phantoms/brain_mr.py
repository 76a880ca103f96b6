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

import functools
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from pipelines.io.atomic import write_json_atomic
from pipelines.phantoms.brain_mr_anatomy import (
    Template,
    draw_tumour,
    mass_effect,
    normal_tissue,
    paint_tumour,
    sample_template,
    template_coordinates,
    tumour_labels,
)
from pipelines.phantoms.common import case_seed, phantom_parser, run_writer, save_nifti, smooth_field

__all__ = [
    "CHANNELS",
    "LABELS",
    "make_brain_mri_phantom",
    "write_brain_phantom_task",
    "mni152_dir",
    "load_mni152",
    "main",
]

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


# ---------------------------------------------------------------------------------------------------------------
# the MNI152 template, read once per process and prepared once per spacing
# ---------------------------------------------------------------------------------------------------------------
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
def load_mni152() -> tuple[np.ndarray, np.ndarray]:
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
def _template(spacing: float) -> Template:
    """The template prepared for output voxels of ``spacing`` mm (cached: about 1 s the first time)."""
    volumes, origin = load_mni152()
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
    return Template(
        volumes=np.ascontiguousarray(volumes),
        origin=origin,
        shape=shape,
        affine=affine,
        centres=world.astype(np.float64),
        depths=depth[tuple(idx.T)].astype(np.float64),
    )


# ---------------------------------------------------------------------------------------------------------------
# the phantom: acquisition and assembly of the anatomy, tumour and contrasts
# ---------------------------------------------------------------------------------------------------------------
def _acquire(rng: np.random.Generator, signal: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel: gain, smooth multiplicative bias field, Rician noise, 0 outside the brain (skull-stripped)."""
    shape = brain.shape
    ctrl = tuple(min(3, n) for n in shape)
    channels = {}
    for c, name in enumerate(CHANNELS):
        gain = rng.uniform(300.0, 900.0)
        bias = np.exp(rng.uniform(0.04, 0.12) * smooth_field(rng, shape, ctrl))
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
    coords = template_coordinates(rng, tpl)
    if has_tumour:
        drawn = draw_tumour(rng, tpl)
        anatomy = sample_template(tpl, mass_effect(coords, drawn.centre, drawn.radius, drawn.push))
        label, strength = tumour_labels(rng, drawn, coords, anatomy, spacing)
        signal = paint_tumour(rng, normal_tissue(rng, anatomy), label, strength, non_enhancing=drawn.rim <= 0.0)
    else:
        anatomy = sample_template(tpl, coords)
        label = np.zeros(tpl.shape, dtype=np.uint8)
        signal = normal_tissue(rng, anatomy)
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
        channels, label, affine = make_brain_mri_phantom(case_seed(seed, i), spacing, tumour=not healthy)
        paths = _case_files(out_dir, name)
        for path, key in zip(paths, CHANNELS, strict=False):
            save_nifti(channels[key], affine, path)
        save_nifti(label, affine, paths[-1])
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
    parser = phantom_parser("brain_mr", __doc__, "task folder to write (BraTS layout)")
    parser.add_argument("--spacing", type=float, default=DEFAULT_SPACING, help="voxel size in mm (default 2)")
    args = parser.parse_args(argv)
    return run_writer(lambda: write_brain_phantom_task(args.out, args.num_cases, args.seed, args.spacing), logger)


if __name__ == "__main__":
    raise SystemExit(main())
