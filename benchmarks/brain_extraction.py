"""Benchmark: brain extraction (BET, ``transforms.brain_extraction``) against the true brain mask, time and memory.

Cases, each extracted in a fresh child process (so that its peak resident memory is its own):

* ``mni152``: the real MNI152 2009a T1 that the ``nilearn`` wheel ships, at 1 mm. nilearn ships it skull-stripped
  only (no head template), so a synthetic head (:mod:`pipelines.phantoms.brain_mr_head`) is painted around it; the
  template's own brain (its non-zero voxels) is the reference mask.
* ``phantom``: brain phantoms (:mod:`pipelines.phantoms.brain_mr`, seeds 1..N) with a head, at each spacing.
* ``--real IMAGE MASK``: a real head MRI and a reference brain mask on its grid, read as the brain workflow reads
  its input (RAS, 2 mm). None is shipped; a public example: ``tests/test_data/input/tcia_example_t1c.nii.gz`` and
  ``bet_tcia_example_t1c_mask.nii.gz`` of the BrainLesion/preprocessing repository (TCGA-LGG from TCIA, CC BY 3.0;
  the mask is that package's HD-BET result, not a manual one).

Printed per case: the detection figures (background fraction and foreground volume of the skull-stripped input, of
the head with noise, and of the head with its air set to 0) and what auto mode decides, the Dice of the extracted
mask against the truth, the wall time of the extraction (after one warm-up fit, which loads or compiles numba's
code), and the peak resident memory of the child process that extracts, before (imports and input) and after.

    python benchmarks/brain_extraction.py
    python benchmarks/brain_extraction.py --seeds 3 --spacings 2 --iterations 1000 --fractional-threshold 0.5
    python benchmarks/brain_extraction.py --seeds 0 --no-mni152 --real t1c.nii.gz t1c_brain_mask.nii.gz
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def _case(kind: str, seed: int, spacing: float) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """``(skull-stripped channels, label, affine, head phantom)`` of one case."""
    import nibabel as nib

    from pipelines.phantoms.brain_mr import MNI152_FILES, make_brain_mri_phantom, mni152_dir
    from pipelines.phantoms.brain_mr_head import add_head

    if kind == "mni152":
        img = nib.load(mni152_dir() / MNI152_FILES["t1"])
        channels = {"t1": np.asarray(img.dataobj, dtype=np.float32)}
        label, affine = np.zeros(channels["t1"].shape, dtype=np.uint8), img.affine
    else:
        channels, label, affine = make_brain_mri_phantom(seed, spacing, tumour=True)
    return channels, label, affine, add_head(channels, label, affine, seed)


def _prepare(kind: str, seed: int, spacing: float) -> dict:
    """In a child process: the case's head (T1), true brain, voxel size, and the detection figures."""
    from pipelines.phantoms.brain_mr_head import add_head
    from transforms.brain_extraction import skull_strip_evidence

    channels, label, affine, head = _case(kind, seed, spacing)
    voxel = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    zeroed = add_head(channels, label, affine, seed, zero_background=True)
    return {
        "case": f"{kind} seed {seed}" if kind == "phantom" else kind,
        "group": kind,
        "t1": head.channels["t1"],
        "truth": head.brain,
        "voxel": voxel,
        "evidence": {
            "stripped": skull_strip_evidence(channels["t1"], voxel),
            "head": skull_strip_evidence(head.channels["t1"], voxel),
            "head, air 0": skull_strip_evidence(zeroed.channels["t1"], voxel),
        },
    }


def _prepare_real(image: str, reference: str, spacing: float) -> dict:
    """In a child process: a real image and its reference brain mask, as the brain workflow reads them (RAS,
    ``spacing`` mm: linear for the image, nearest for the mask), and the detection figures of the image."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    from transforms.brain_extraction import skull_strip_evidence

    keys = ["image", "reference"]
    read = Compose(
        [
            LoadImaged(keys),
            EnsureChannelFirstd(keys),
            Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd(keys, pixdim=spacing, mode=["bilinear", "nearest"]),
        ]
    )
    d = read({"image": image, "reference": reference})
    volume, voxel = d["image"][0].numpy(), np.full(3, float(spacing))
    return {
        "case": Path(image).name.split(".")[0][:30],
        "group": "real",
        "t1": volume,
        "truth": d["reference"][0].numpy() > 0.5,
        "voxel": voxel,
        "evidence": {"input": skull_strip_evidence(volume, voxel)},
    }


def _extract(t1: np.ndarray, voxel: np.ndarray, options: dict) -> dict:
    """In a fresh child process: one warm-up fit, then the timed extraction; its mask and memory figures."""
    from transforms.brain_extraction import extract_brain

    start = time.perf_counter()
    extract_brain(np.random.default_rng(0).uniform(0, 1, (24, 24, 24)), [2.0] * 3, iterations=20, recentre=0)
    warm_up = time.perf_counter() - start
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    mask = extract_brain(t1, voxel, **options)
    seconds = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mask": mask,
        "seconds": seconds,
        "warm_up": warm_up,
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_peak,
    }


def _in_child(function, *args):
    """``function(*args)`` in a fresh (spawned) process, so that its peak resident memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _verdict(evidence: dict, rule) -> str:
    """What auto mode of ``rule`` (a SkullStrip) decides from ``evidence``."""
    stripped = evidence["background_fraction"] >= rule.min_background_fraction
    stripped = stripped and evidence["foreground_ml"] <= rule.max_brain_ml
    return "skull-stripped" if stripped else "head: extract"


def main(argv: list[str] | None = None) -> int:
    """Run the cases one child process at a time and print one line per case, then a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="phantom seeds 1..N (default 6)")
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.0, 1.0], help="phantom spacings in mm")
    parser.add_argument("--phantoms-at-1mm", type=int, default=1, help="phantom cases at 1 mm (slow; default 1)")
    parser.add_argument("--no-mni152", action="store_true", help="skip the MNI152 template case")
    parser.add_argument(
        "--real",
        nargs=2,
        action="append",
        default=[],
        metavar=("IMAGE", "MASK"),
        help="also a real image with skull and its reference brain mask (NIfTI), read at --real-spacing; repeatable",
    )
    parser.add_argument("--real-spacing", type=float, default=2.0, help="voxel size (mm) of the --real cases")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--recentre", type=int, default=1)
    parser.add_argument("--fractional-threshold", type=float, default=0.65)
    args = parser.parse_args(argv)
    options = {
        "iterations": args.iterations,
        "recentre": args.recentre,
        "fractional_threshold": args.fractional_threshold,
    }
    from pipelines.evaluation.metrics import mask_dice
    from transforms.brain_extraction import SkullStrip

    rule = SkullStrip()
    cases = [] if args.no_mni152 else [("mni152", 0, 1.0)]
    for spacing in args.spacings:
        count = args.seeds if spacing > 1.0 else min(args.seeds, args.phantoms_at_1mm)
        cases += [("phantom", seed, spacing) for seed in range(1, count + 1)]
    print(
        f"BET (brainextractor) with {options}; detection: skull-stripped when background >= "
        f"{rule.min_background_fraction:g} and foreground <= {rule.max_brain_ml:g} mL"
    )
    rows = []
    jobs = [(_prepare, case) for case in cases]
    jobs += [(_prepare_real, (image, mask, args.real_spacing)) for image, mask in args.real]
    for prepare, case in jobs:
        row = _in_child(prepare, *case)
        row.update(_in_child(_extract, row["t1"], row["voxel"], options))
        mask, truth = row.pop("mask"), row.pop("truth")
        row["dice"] = mask_dice(mask, truth)
        row["spacing"], row["shape"] = float(row["voxel"][0]), tuple(truth.shape)
        rows.append(row)
        figures = "; ".join(
            f"{name}: background {e['background_fraction']:.2f}, foreground {e['foreground_ml']:.0f} mL -> "
            f"{_verdict(e, rule)}"
            for name, e in row["evidence"].items()
        )
        print(
            f"{row['case']:>15} {row['spacing']:.0f} mm {str(row['shape']):>16}: Dice {row['dice']:.4f}, "
            f"{row['seconds']:.1f} s (warm-up {row['warm_up']:.1f} s), RSS {row['rss_before_mib']:.0f} -> "
            f"{row['rss_peak_mib']:.0f} MiB peak\n{'':>17}{figures}",
            flush=True,
        )
    for group, spacing in sorted({(r["group"], r["spacing"]) for r in rows}):
        some = [r for r in rows if (r["group"], r["spacing"]) == (group, spacing)]
        dice = [r["dice"] for r in some]
        print(
            f"{group} {spacing:.0f} mm: {len(some)} case(s), Dice min {min(dice):.4f} mean {np.mean(dice):.4f}, "
            f"{np.mean([r['seconds'] for r in some]):.1f} s per volume, peak RSS "
            f"{max(r['rss_peak_mib'] for r in some):.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
