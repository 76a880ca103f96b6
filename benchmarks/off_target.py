"""Benchmark: a CT workflow on anatomy outside its organ, where the right answer is no foreground there.

A head CT sent to the liver or lung workflow (by mistake, or as the first series of a whole-body study) should come
back empty, with the slice gate keeping no slice so that the segmenter never runs. The head scans are head CT
phantoms (:mod:`pipelines.phantoms.head_ct`: the MNI152 brain, real anatomy, in a drawn skull, scalp and neck) at
1 mm and at 5 mm slices, written once under ``data/head_ct_phantom/``. The lung workflow also gets a real
abdomen-pelvis CT whose top slices hold the lung bases (TotalSegmentator's example, in the repository with its
segmentation): no lesion may lie outside TotalSegmentator's lungs. Each scan goes through the workflow's inference
with the cascade and on the whole volume, in one process. Printed per scan: the slices the gate kept and the
segmenter ran on (of all slices at the bundle's spacing), the foreground each mode predicted and the part of it
outside the organ (mL), the wall time of each; then the peak resident memory.

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

from benchmarks.real_scans import label_on_grid  # noqa: E402
from pipelines.api import Segmenter  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.phantoms.head_ct import write_head_ct  # noqa: E402

SCANS = {"head CT, 1 mm slices": 1, "head CT, 5 mm slices": 5}  # name: slice thickness
SEED = 0
HEAD_DIR = REPO_ROOT / "data" / "head_ct_phantom"
REAL = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator"
#: real scans per workflow: name -> (image, segmentation holding the organ, the organ's values in it)
REAL_SCANS = {
    "lung": {
        "real abdomen-pelvis CT": (
            REAL / "example_ct.nii.gz",
            REAL / "example_seg_fast_force_split.nii.gz",
            (10, 11, 12, 13, 14),  # TotalSegmentator's lung lobes
        )
    }
}


def head_scans(folder: Path = HEAD_DIR) -> dict[str, Path]:
    """The head CT phantoms, written once (``<folder>/head_ct_seed0_<mm>mm.nii.gz``)."""
    paths = {}
    for name, slice_mm in SCANS.items():
        path = folder / f"head_ct_seed{SEED}_{slice_mm}mm.nii.gz"
        if not path.is_file():
            write_head_ct(path, SEED, slice_mm)
        paths[name] = path
    return paths


def run_scan(path: Path, segmenters: dict[str, Segmenter], organ: tuple[Path, tuple] | None = None) -> dict:
    """Both modes on one scan: time, foreground voxels and mL (all of it, and outside the organ: ``organ`` names a
    segmentation of the scan and the organ's values in it; none: the scan holds no organ), and for the cascade the
    slices kept and segmented."""
    row: dict = {}
    organ_mask = None
    for mode, segmenter in segmenters.items():
        start = time.perf_counter()
        pred = segmenter(str(path))
        row[f"{mode}_s"] = time.perf_counter() - start
        if organ is not None and organ_mask is None:  # on the prediction's grid (the scan's), axes reordered if need be
            organ_mask = np.isin(label_on_grid(str(organ[0]), pred), organ[1])
        mask = np.asarray(pred[0]) > 0
        voxel_ml = float(np.abs(np.linalg.det(np.asarray(pred.affine, dtype=np.float64)[:3, :3]))) / 1000.0
        row[f"{mode}_voxels"] = int(mask.sum())
        row[f"{mode}_ml"] = row[f"{mode}_voxels"] * voxel_ml
        outside = mask if organ_mask is None else mask & ~organ_mask
        row[f"{mode}_outside_ml"] = int(outside.sum()) * voxel_ml
        report = segmenter.last_report
        if report is not None:
            row["slices"] = report["num_slices"]
            row["kept"] = report["slices_kept"]
            row["segmented"] = report["slices_segmented"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0, or 1 when the cascade predicted foreground outside the
    organ (or ran the segmenter on a scan without it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", choices=["liver", "lung"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--scan-dir", type=Path, default=HEAD_DIR, help="where the head CTs are written")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    segmenters = {
        "cascade": Segmenter(args.workflow, use_cascade=True, **overrides),
        "full": Segmenter(args.workflow, use_cascade=False, **overrides),
    }
    scans = {name: (path, None) for name, path in head_scans(args.scan_dir).items()}
    for name, (image, segmentation, values) in REAL_SCANS.get(args.workflow, {}).items():
        scans[name] = (image, (segmentation, values))
    rows = []
    print(f"{args.workflow}: anatomy outside the organ (the right answer: no foreground there; on a scan without the")
    print("organ an empty mask and the segmenter not run)")
    print(
        f"{'scan':<24} {'kept':>8} {'segmented':>10} {'cascade mL (outside)':>21} {'full mL (outside)':>18} "
        f"{'casc s':>7} {'full s':>7}"
    )
    for name, (path, organ) in scans.items():
        row = {"scan": name, "path": str(path), "has_organ": organ is not None, **run_scan(path, segmenters, organ)}
        rows.append(row)
        print(
            f"{name:<24} {row['kept']:>4}/{row['slices']:<3} {row['segmented']:>6}/{row['slices']:<3} "
            f"{row['cascade_ml']:>11.1f} ({row['cascade_outside_ml']:>6.1f}) {row['full_ml']:>8.1f} "
            f"({row['full_outside_ml']:>6.1f}) {row['cascade_s']:>7.2f} {row['full_s']:>7.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    without = [r for r in rows if not r["has_organ"]]
    empty = {mode: all(r[f"{mode}_voxels"] == 0 for r in without) for mode in ("cascade", "full")}
    skipped = all(r["segmented"] == 0 for r in without)
    outside = {mode: sum(r[f"{mode}_outside_ml"] for r in rows) for mode in ("cascade", "full")}
    print(
        f"scans without the organ: cascade {'empty' if empty['cascade'] else 'FOREGROUND'}, segmenter "
        f"{'never run' if skipped else 'run'}; full volume {'empty' if empty['full'] else 'FOREGROUND'}. "
        f"Outside the organ, all scans: cascade {outside['cascade']:.1f} mL, full {outside['full']:.1f} mL; "
        f"peak RSS {peak:.0f} MiB"
    )
    if args.json:
        summary = {"empty": empty, "segmenter_skipped": skipped, "outside_ml": outside, "peak_rss_mib": peak}
        Path(args.json).write_text(json.dumps({"summary": summary, "scans": rows}, indent=2) + "\n")
    return 0 if empty["cascade"] and skipped and outside["cascade"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
