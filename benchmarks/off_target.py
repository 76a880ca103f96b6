"""Benchmark: a CT workflow on scans without its organ, where the right answer is an empty mask.

A head CT sent to the liver or lung workflow (by mistake, or as the first series of a whole-body study) should come
back empty, with the slice gate keeping no slice so that the segmenter never runs. The scans are head CT phantoms
(:mod:`pipelines.phantoms.head_ct`: the MNI152 brain, real anatomy, in a drawn skull, scalp and neck) at 1 mm and
at 5 mm slices, written once under ``data/head_ct_phantom/``. Each goes through the workflow's inference with the
cascade and on the whole volume, in one process. Printed per scan: the slices the gate kept and the segmenter ran
on (of all slices at the bundle's spacing), the foreground each mode predicted (voxels and mL), the wall time of
each; then the peak resident memory.

    python benchmarks/off_target.py liver
    python benchmarks/off_target.py lung --set cascade_threshold=0.5

Needs trained checkpoints (``radcascade demo <workflow>``). No real head CT with a licence that allows it was found
in the public repositories searched (see the issue notes); these phantoms stand in for one.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipelines.api import Segmenter  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.phantoms.head_ct import write_head_ct  # noqa: E402

SCANS = {"head CT, 1 mm slices": 1, "head CT, 5 mm slices": 5}  # name: slice thickness
SEED = 0


def head_scans(folder: Path = REPO_ROOT / "data" / "head_ct_phantom") -> dict[str, Path]:
    """The head CT phantoms, written once (``<folder>/head_ct_seed0_<mm>mm.nii.gz``)."""
    paths = {}
    for name, slice_mm in SCANS.items():
        path = folder / f"head_ct_seed{SEED}_{slice_mm}mm.nii.gz"
        if not path.is_file():
            write_head_ct(path, SEED, slice_mm)
        paths[name] = path
    return paths


def run_scan(path: Path, segmenters: dict[str, Segmenter]) -> dict:
    """Both modes on one scan: time, foreground voxels and mL, and for the cascade the slices kept and segmented."""
    row: dict = {}
    for mode, segmenter in segmenters.items():
        start = time.perf_counter()
        pred = segmenter(str(path))
        row[f"{mode}_s"] = time.perf_counter() - start
        mask = np.asarray(pred[0]) > 0
        voxel_ml = float(np.abs(np.linalg.det(np.asarray(pred.affine, dtype=np.float64)[:3, :3]))) / 1000.0
        row[f"{mode}_voxels"] = int(mask.sum())
        row[f"{mode}_ml"] = row[f"{mode}_voxels"] * voxel_ml
        report = segmenter.last_report
        if report is not None:
            row["slices"] = report["num_slices"]
            row["kept"] = report["slices_kept"]
            row["segmented"] = report["slices_segmented"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0, or 1 when a mode predicted foreground on a head."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", choices=["liver", "lung"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--scan-dir", type=Path, default=REPO_ROOT / "data" / "head_ct_phantom", help="where the head CTs are written"
    )
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    segmenters = {
        "cascade": Segmenter(args.workflow, use_cascade=True, **overrides),
        "full": Segmenter(args.workflow, use_cascade=False, **overrides),
    }
    rows = []
    print(f"{args.workflow}: scans without the organ (the right answer: an empty mask, the segmenter not run)")
    print(f"{'scan':<24} {'kept':>8} {'segmented':>10} {'cascade mL':>11} {'full mL':>9} {'casc s':>7} {'full s':>7}")
    for name, path in head_scans(args.scan_dir).items():
        row = {"scan": name, "path": str(path), **run_scan(path, segmenters)}
        rows.append(row)
        print(
            f"{name:<24} {row['kept']:>4}/{row['slices']:<3} {row['segmented']:>6}/{row['slices']:<3} "
            f"{row['cascade_ml']:>11.1f} {row['full_ml']:>9.1f} {row['cascade_s']:>7.2f} {row['full_s']:>7.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    empty = {mode: all(r[f"{mode}_voxels"] == 0 for r in rows) for mode in ("cascade", "full")}
    skipped = all(r["segmented"] == 0 for r in rows)
    print(
        f"cascade: {'empty' if empty['cascade'] else 'FOREGROUND'} on every scan, segmenter "
        f"{'never run' if skipped else 'run'}; full volume: {'empty' if empty['full'] else 'FOREGROUND'}; "
        f"peak RSS {peak:.0f} MiB"
    )
    if args.json:
        summary = {"empty": empty, "segmenter_skipped": skipped, "peak_rss_mib": peak}
        Path(args.json).write_text(json.dumps({"summary": summary, "scans": rows}, indent=2) + "\n")
    return 0 if empty["cascade"] and skipped else 1


if __name__ == "__main__":
    raise SystemExit(main())
