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
    python -m pipelines.phantoms.lung_ct --out data/lung_long --num-cases 3 --shape 192 192 600 \
        --spacing 1.8 1.8 1.79 --z-range -3.8 1.8      # thighs to neck, the lungs on about a fifth of the slices

By default every case scans a craniocaudal range of its own (:func:`case_z_range`), from the chest alone to the
thighs and the neck (:mod:`pipelines.phantoms.lung_ct_regions`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from pipelines.io.atomic import write_json_atomic
from pipelines.phantoms.common import (
    AIR_HU,
    case_seed,
    listed_files_exist,
    paint,
    phantom_parser,
    run_writer,
    save_nifti,
    smooth_field,
)
from pipelines.phantoms.lung_ct_anatomy import (
    Grid,
    draw_abdomen,
    draw_body_wall,
    draw_bronchovascular_trees,
    draw_lung_fields,
    draw_mediastinum,
    draw_ribs_and_chest_bones,
    draw_spine,
    paint_mediastinum,
)
from pipelines.phantoms.lung_ct_lesions import add_ground_glass, add_nodules, lesion_window
from pipelines.phantoms.lung_ct_regions import paint_beyond_chest

__all__ = [
    "LungCT",
    "build_lung_ct",
    "make_lung_ct_phantom",
    "write_lung_ct_phantom_task",
    "case_name",
    "case_z_range",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (192, 192, 64)
DEFAULT_SPACING = (1.8, 1.8, 3.0)
LABELS = {"0": "background", "1": "lesion"}
HEALTHY_FRACTION = 0.2
MAX_SLICE_THICKENING = 4.0 / 3.0  # default tasks' longer ranges: slices at most this many times spacing[2]
CASE_PREFIX = "volume-covid19-phantom"


class LungCT(NamedTuple):
    """Everything :func:`build_lung_ct` makes; :func:`make_lung_ct_phantom` returns the first three fields."""

    image: np.ndarray  #: int16 HU
    label: np.ndarray  #: uint8, 1 = lesion
    affine: np.ndarray  #: 4x4 voxel to RAS+ mm
    lungs: np.ndarray  #: bool, both lungs (lesions included)
    lesions: tuple[dict, ...]  #: one ``{"kind": "ggo" | "nodule", "center": (i, j, k), "voxels": n}`` per lesion


# ---------------------------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------------------------
def make_lung_ct_phantom(
    seed: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    z_range: Sequence[float] = (0.0, 1.0),
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
        z_range: the scan's craniocaudal extent in units of the chest described above (0 its bottom slice, 1 its
            top slice). The default scans the chest alone; a longer range adds what a chest-abdomen-pelvis or
            whole-body scan holds around it (:mod:`pipelines.phantoms.lung_ct_regions`): ``(-3.8, 1.8)`` reaches
            from the thighs to the neck, with the lungs on about a fifth of the slices (choose
            ``shape[2]`` for the slice spacing you want). The chest itself is the same as with the default range.

    Returns:
        ``(image, label, affine)``: ``image`` int16 HU of ``shape``; ``label`` uint8 of ``shape`` with
        0 background, 1 lesion (always inside the lungs); ``affine`` float64 4x4, voxel index to RAS+ world mm.

    Raises:
        ValueError: if ``shape`` or ``spacing`` is not three positive numbers, or ``z_range`` does not increase.
    """
    case = build_lung_ct(seed, shape, spacing, z_range)
    return case.image, case.label, case.affine


def build_lung_ct(
    seed: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    z_range: Sequence[float] = (0.0, 1.0),
) -> LungCT:
    """Like :func:`make_lung_ct_phantom`, also returning the lung mask and a description of the lesions."""
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 8 or min(spacing) <= 0:
        raise ValueError(
            f"lung CT phantom needs 3 dimensions of at least 8 voxels and positive spacing; "
            f"got shape {shape}, spacing {spacing}"
        )
    z_lo, z_hi = (float(v) for v in z_range)
    if not z_hi > z_lo:
        raise ValueError(f"lung CT phantom z_range must increase, got {tuple(z_range)}")
    rng = np.random.default_rng(seed)
    g = Grid(shape, spacing, (z_lo, z_hi))
    w = draw_body_wall(rng, g)
    img = np.full(shape, AIR_HU, dtype=np.float32)
    paint(img, g.column(w.body), w.fat_hu)
    paint(img, g.column(w.wall & w.body), w.muscle_hu)
    below, dome_top = draw_abdomen(rng, g, w, img)
    spine = draw_spine(rng, g, w, img)
    draw_ribs_and_chest_bones(rng, g, w, img, dome_top)
    med = draw_mediastinum(rng, g, w, spine, dome_top)
    lungs = draw_lung_fields(rng, g, w, below, med["mask"])
    soft_hu = paint_mediastinum(rng, g, w, img, lungs, below, med)

    lung_hu = rng.uniform(-870, -830) + rng.uniform(10, 35) * (-(g.y - w.ccav[1]) / w.b_cav)  # denser posteriorly
    paint(img, lungs, lung_hu + 12.0 * smooth_field(rng, shape, (12, 12, 6)))
    label = np.zeros(shape, dtype=np.uint8)
    kind = rng.choice(4, p=[HEALTHY_FRACTION, 0.55, 0.1, 1.0 - HEALTHY_FRACTION - 0.65])  # healthy/ggo/nodule/both
    window = lesion_window(rng, lungs) if kind else None
    n_ggo = int(rng.integers(2, 7)) if kind in (1, 3) else 0
    n_nodules = int(rng.integers(1, 4)) if kind in (2, 3) else 0
    lesions = add_ground_glass(rng, img, label, lungs, w.r_cav, g, w.u, window, n_ggo)
    draw_bronchovascular_trees(rng, g, w, img, lungs, med["hila"], soft_hu)
    lesions += add_nodules(rng, img, label, lungs, w.r_cav, g, w.u, window, n_nodules)
    paint_beyond_chest(np.random.default_rng([int(seed), 3]), g, w, img, spine, dome_top)

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


# ---------------------------------------------------------------------------------------------------------------
# writing a COVID-19-20 challenge style folder
# ---------------------------------------------------------------------------------------------------------------
def case_name(index: int) -> str:
    """Name of case ``index``: ``volume-covid19-phantom-0000`` (the challenge's ``volume-covid19-A-0000`` style)."""
    return f"{CASE_PREFIX}-{int(index):04d}"


def case_z_range(seed: int) -> tuple[float, float]:
    """The craniocaudal range (chest units) of a case of a task written with varied ranges, drawn from ``seed``.

    A quarter of the cases scan the chest alone; the others reach down into the abdomen, the pelvis or the thighs
    (to 2.4 chest heights below the chest) and up into the neck, as chest and chest-abdomen-pelvis CTs do.
    """
    rng = np.random.default_rng([int(seed), 2])
    if rng.random() < 0.25:
        return 0.0, 1.0
    return round(float(rng.uniform(-2.4, -0.1)), 3), round(float(rng.uniform(1.0, 1.6)), 3)


def _case_grid(shape: list[int], spacing: list[float], z_range: tuple[float, float]) -> tuple[list, list]:
    """A case's shape and spacing for ``z_range``: the chest keeps ``shape[2]`` slices of ``spacing[2]``; a longer
    range thickens the slices up to 4/3 of ``spacing[2]`` (4 mm by default: the lung bundle's ``pixdim``, so no
    lesion detail is lost at the network's resolution), then adds slices."""
    extent = spacing[2] * shape[2] * (z_range[1] - z_range[0])
    slices = max(shape[2], int(np.ceil(extent / (MAX_SLICE_THICKENING * spacing[2]) - 1e-6)))
    return [shape[0], shape[1], slices], [spacing[0], spacing[1], extent / slices]


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
    return listed_files_exist(out_dir, cases)


def write_lung_ct_phantom_task(
    out_dir: str | os.PathLike,
    num_cases: int = 16,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    z_range: Sequence[float] | None = None,
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
        z_range: the scans' craniocaudal extent in chest units (see :func:`make_lung_ct_phantom`), the same for
            every case, or ``None`` (the default) for a range of its own per case (:func:`case_z_range`): from the
            chest alone to the pelvis or the thighs below and the neck above, as real chest CTs and
            chest-abdomen-pelvis scans come, so the models meet the slices around the chest. A case then has
            ``shape[2]`` slices, up to 4/3 as thick as ``spacing[2]``, and more slices for a longer range.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_cases`` < 1 or the shape / spacing / range is invalid.
    """
    if int(num_cases) < 1:
        raise ValueError(f"{out_dir}: num_cases must be at least 1, got {num_cases}")
    z_range_l = None if z_range is None else [float(v) for v in z_range]
    if z_range_l is not None and (len(z_range_l) != 2 or not z_range_l[1] > z_range_l[0]):
        raise ValueError(f"{out_dir}: lung CT phantom z_range must be two increasing numbers, got {tuple(z_range)}")
    shape_l, spacing_l = [int(s) for s in shape], [float(s) for s in spacing]
    if len(shape_l) != 3 or len(spacing_l) != 3 or min(shape_l) < 8 or min(spacing_l) <= 0:
        raise ValueError(
            f"{out_dir}: lung CT phantom needs 3 dimensions of at least 8 voxels and positive spacing; "
            f"got shape {tuple(shape)}, spacing {tuple(spacing)}"
        )
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "shape": shape_l, "spacing": spacing_l}
    params["axes"] = "RAS"  # absent from tasks written with the organs mirrored: those are rewritten
    if z_range_l != [0.0, 1.0]:
        params["z_range"] = z_range_l or "per case"  # absent for the chest alone, as before ranges existed
    if z_range_l is None:
        params["max_slice_mm"] = round(MAX_SLICE_THICKENING * spacing_l[2], 4)
    if _task_is_complete(out_dir, int(num_cases), params):
        logger.info("lung CT phantom task %s is already complete (%d cases); nothing to do", out_dir, num_cases)
        return out_dir
    (out_dir / "Train").mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(int(num_cases)):
        name = case_name(i)
        case_shape, case_spacing, case_range = shape_l, spacing_l, z_range_l
        if z_range_l is None:
            case_range = case_z_range(case_seed(seed, i))
            case_shape, case_spacing = _case_grid(shape_l, spacing_l, case_range)
        image, label, affine = make_lung_ct_phantom(case_seed(seed, i), case_shape, case_spacing, case_range)
        save_nifti(image, affine, out_dir / "Train" / f"{name}_ct.nii.gz")
        save_nifti(label, affine, out_dir / "Train" / f"{name}_seg.nii.gz")
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
    parser = phantom_parser("lung_ct", __doc__, "folder to write (COVID-19-20 challenge layout)")
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING), metavar=("SX", "SY", "SZ"))
    parser.add_argument(
        "--z-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
        help="craniocaudal extent in units of the chest, the same for every case (0 1: the chest alone; -3.8 1.8: "
        "thighs to neck); default: a range of its own per case",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return run_writer(
        lambda: write_lung_ct_phantom_task(args.out, args.num_cases, args.seed, args.shape, args.spacing, args.z_range),
        logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
