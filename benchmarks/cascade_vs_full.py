"""Benchmark: the cascade (slice classifier + slab segmentation) vs plain full-volume sliding-window segmentation.

Both use the same trained segmenter, preprocessing and postprocessing (argmax, the bundle's
``label_postprocessing``) on the same
held-out volumes, in one process, one after the other per case. Prints per case and overall: wall time of each,
their ratio, Dice per class of each against the label (on the preprocessed grid), the slices the gate kept (with
those added where the organ went on past its edge: ``followed``), the slices the segmenter ran on (the kept ones
grown to its window's depth), the labelled slices the cascade left out (``lost``), the classifier's throughput in
slices of volume per second (it scores every ``cascade_stride``-th slice and the edges) and its time as a fraction
of the full volume's.

    python benchmarks/cascade_vs_full.py liver                       # test split of the default datalist
    python benchmarks/cascade_vs_full.py liver --section validation --set sw_batch_size=8
    python benchmarks/cascade_vs_full.py liver --long-scans 3        # unseen phantoms of a chest-abdomen-pelvis length
    python benchmarks/cascade_vs_full.py liver --long-scans 3 --z-range -1.6 2.4 --scan-slices 600   # thighs to chest
    python benchmarks/cascade_vs_full.py lung --long-scans 3 --scan-slices 600   # thighs to neck, lungs on a fifth
    python benchmarks/cascade_vs_full.py lung                        # any workflow of pipelines.workflows

Needs trained checkpoints (``models/model.pt`` and ``models/classifier.pt``: run ``radcascade demo <workflow>``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from monai.data import load_decathlon_datalist  # noqa: E402
from monai.metrics import DiceMetric  # noqa: E402
from monai.transforms import AsDiscrete  # noqa: E402

from pipelines.api import load_weights  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.inference.slabs import Slab, slab_mask  # noqa: E402
from pipelines.io.inputs import case_name  # noqa: E402
from pipelines.workflows import get_workflow  # noqa: E402

#: each workflow's long scans by default: the craniocaudal range in its phantom's units (liver: pelvis to lower
#: chest; lung: thighs to neck, the lungs on about a fifth of the slices)
LONG_SCAN_RANGES = {"liver": (-1.0, 1.6), "lung": (-3.8, 1.8)}


def _long_scan_items(
    workflow: str, n: int, z_range: tuple[float, float] | None = None, slices: int | None = None
) -> tuple[list[dict], tuple[float, float]]:
    """``n`` phantoms of ``workflow`` (seeds unseen in training) scanning ``z_range``, written once; returns their
    items and the range used.

    ``z_range`` is in the phantom's own craniocaudal units, 0 the bottom and 1 the top of its body region (the
    liver's abdomen, the lung's chest); ``None`` takes :data:`LONG_SCAN_RANGES`. ``slices``: the scan's number of
    slices (thinner slices for a longer range); by default the phantoms' own slice spacing is kept.
    """
    if workflow not in LONG_SCAN_RANGES:
        raise SystemExit(f"--long-scans: no long-scan phantoms for '{workflow}' (only {', '.join(LONG_SCAN_RANGES)})")
    default_range = LONG_SCAN_RANGES[workflow]
    z_range = tuple(z_range or default_range)
    if workflow == "liver":  # an MSD task: the cases are dataset.json's training list
        from pipelines.phantoms.liver_ct import DEFAULT_SHAPE, DEFAULT_SPACING
        from pipelines.phantoms.liver_ct import write_liver_phantom_task as write_task

        name, listing = "Task03_Liver_phantom_long", ("dataset.json", "training")
    else:  # a COVID-19-20 folder: the cases are phantom.json's
        from pipelines.phantoms.lung_ct import DEFAULT_SHAPE, DEFAULT_SPACING
        from pipelines.phantoms.lung_ct import write_lung_ct_phantom_task as write_task

        name, listing = "COVID-19-20_phantom_long", ("phantom.json", "cases")
    height = DEFAULT_SHAPE[2] * DEFAULT_SPACING[2]  # the body region's extent in mm
    extent = (z_range[1] - z_range[0]) * height
    nz = slices or round(DEFAULT_SHAPE[2] * (z_range[1] - z_range[0]))
    shape, spacing = (*DEFAULT_SHAPE[:2], nz), (*DEFAULT_SPACING[:2], extent / nz)
    if (z_range, slices) != (default_range, None):
        name += f"_{nz}_slices_{z_range[0]:g}_{z_range[1]:g}"
    task = REPO_ROOT / "data" / name
    write_task(task, num_cases=n, seed=1000, shape=shape, spacing=spacing, z_range=z_range)
    cases = json.loads((task / listing[0]).read_text())[listing[1]]
    return [{k: str(task / item[k]) for k in ("image", "label")} for item in cases], z_range


def _source_slices(item: dict) -> int:
    """The number of slices of a case's image file, as written (before resampling to the bundle's spacing)."""
    import nibabel as nib

    source = item["image"][0] if isinstance(item["image"], list) else item["image"]
    return int(nib.load(source).shape[2]) if str(source).endswith((".nii", ".nii.gz")) else -1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow")
    args_parser.add_argument("--section", default="test")
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args_parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args_parser.add_argument(
        "--long-scans", type=int, default=0, metavar="N",
        help="instead of the datalist, N new phantoms of a longer scan (liver: pelvis to lower chest; lung: thighs "
        "to neck)",
    )  # fmt: skip
    args_parser.add_argument(
        "--z-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
        help="the long scans' craniocaudal range in heights of the phantom's body region (liver: the abdomen, "
        "default -1 1.6, and -1.6 2.4 for thighs to upper chest with the liver on about a quarter of the slices; "
        "lung: the chest, default -3.8 1.8)",
    )  # fmt: skip
    args_parser.add_argument(
        "--scan-slices", type=int, default=None, metavar="S",
        help="the long scans' number of slices as written (default: the phantoms' own slice spacing)",
    )  # fmt: skip
    args = args_parser.parse_args(argv)

    workflow = get_workflow(args.workflow)
    parser = workflow.config_parser("inference", parse_overrides(args.overrides))
    segmenter = load_weights(parser.get_parsed_content("network"), parser.get_parsed_content("ckpt_path"))
    load_weights(parser.get_parsed_content("classifier_network"), parser.get_parsed_content("classifier_ckpt_path"))
    preprocessing = parser.get_parsed_content("preprocessing")
    full_inferer = parser.get_parsed_content("inferer")
    cascade = parser.get_parsed_content("cascade_inferer")
    num_classes = parser.get_parsed_content("num_classes")
    in_channels = parser.get_parsed_content("in_channels")
    postprocess = parser.get_parsed_content("label_postprocessing")
    if args.long_scans:
        items, z_range = _long_scan_items(args.workflow, args.long_scans, args.z_range, args.scan_slices)
        args.section = f"{args.long_scans} long-scan phantoms, z {z_range[0]:g}..{z_range[1]:g}"
        if args.scan_slices:
            args.section += f", {args.scan_slices} slices"
    else:
        items = load_decathlon_datalist(
            parser.get_parsed_content("data_list_file_path"),
            True,
            args.section,
            parser.get_parsed_content("dataset_dir"),
        )
    onehot = AsDiscrete(to_onehot=num_classes)
    dice_metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    rows = []
    with torch.inference_mode():
        full_inferer(torch.zeros(1, in_channels, *parser.get_parsed_content("roi_size")), segmenter)  # warm-up
        for item in items:
            data = preprocessing(item)
            image, label = data["image"][None], onehot(data["label"])
            source = item["image"][0] if isinstance(item["image"], list) else item["image"]
            row = {"case": case_name(source), "slices": image.shape[-1], "source_slices": _source_slices(item)}
            for name, inferer in (("full", full_inferer), ("cascade", cascade)):
                start = time.perf_counter()
                logits = inferer(image, segmenter)
                row[f"{name}_s"] = time.perf_counter() - start
                pred = onehot(postprocess({"pred": logits[0].argmax(0, keepdim=True)})["pred"])
                dice = dice_metric(pred[None], label[None])
                row[f"{name}_dice"] = [float(d) for d in dice[0]]
            report = cascade.reports[-1]
            row["cascade_slices"] = report["slices_segmented"]
            row["cascade_kept"] = report["slices_kept"]
            row["cascade_followed"] = sum(s["stop"] - s["start"] for s in report["followed"])
            kept = slab_mask([Slab(**s) for s in report["kept"] + report["followed"]], image.shape[-1])
            labelled = data["label"][0].reshape(-1, image.shape[-1]).amax(0).cpu().numpy() > 0
            row["labelled_slices"] = int(labelled.sum())
            row["labelled_slices_lost"] = int((labelled & ~kept).sum())
            row["classify_s"] = report["seconds"]["classify"]
            rows.append(row)

    classes = workflow.classes[1:]
    print(f"\n{args.workflow}: cascade vs full-volume segmentation on '{args.section}' ({len(rows)} cases)")
    header = f"{'case':22s} {'full s':>7s} {'casc s':>7s} {'ratio':>6s} {'kept':>9s} {'followed':>8s} "
    header += f"{'segmented':>9s} {'lost':>7s} "
    header += " ".join(f"{'full ' + c:>11s} {'casc ' + c:>11s}" for c in classes)
    print(header)
    for r in rows:
        line = f"{r['case']:22s} {r['full_s']:7.2f} {r['cascade_s']:7.2f} {r['full_s'] / r['cascade_s']:6.2f} "
        line += f"{r['cascade_kept']:>4d}/{r['slices']:<4d} {r['cascade_followed']:8d} "
        line += f"{r['cascade_slices']:>4d}/{r['slices']:<4d} "
        line += f"{r['labelled_slices_lost']:>3d}/{r['labelled_slices']:<3d} "
        line += " ".join(f"{f:11.4f} {c:11.4f}" for f, c in zip(r["full_dice"], r["cascade_dice"], strict=True))
        print(line)
    full_t, casc_t = sum(r["full_s"] for r in rows), sum(r["cascade_s"] for r in rows)
    mean = {k: np.nanmean([r[k] for r in rows], axis=0) for k in ("full_dice", "cascade_dice")}
    slices = sum(r["slices"] for r in rows)
    summary = {
        "cases": len(rows),
        "full_seconds": full_t,
        "cascade_seconds": casc_t,
        "speedup": full_t / casc_t,
        "mean_dice_full": dict(zip(classes, map(float, mean["full_dice"]), strict=True)),
        "mean_dice_cascade": dict(zip(classes, map(float, mean["cascade_dice"]), strict=True)),
        "mean_dice_difference": float(np.nanmean(mean["cascade_dice"]) - np.nanmean(mean["full_dice"])),
        "slices_segmented_fraction": sum(r["cascade_slices"] for r in rows) / slices,
        "slices_kept_fraction": sum(r["cascade_kept"] for r in rows) / slices,
        "slices_followed": sum(r["cascade_followed"] for r in rows),
        "labelled_slices_lost": sum(r["labelled_slices_lost"] for r in rows),
        "labelled_slices": sum(r["labelled_slices"] for r in rows),
        "labelled_fraction": sum(r["labelled_slices"] for r in rows) / slices,
        "source_slices": [r["source_slices"] for r in rows],
        "gate_cost_fraction": sum(r["classify_s"] for r in rows) / full_t,
        "classifier_slices_per_second": slices / sum(r["classify_s"] for r in rows),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"total: full {full_t:.2f} s, cascade {casc_t:.2f} s, speedup x{summary['speedup']:.2f}; "
        f"mean Dice full {summary['mean_dice_full']}, cascade {summary['mean_dice_cascade']} "
        f"(difference of the class means {summary['mean_dice_difference']:+.4f}); "
        f"organ on {100 * summary['labelled_fraction']:.0f}% of the slices (scans of {summary['source_slices']} "
        f"slices as read); {100 * summary['slices_kept_fraction']:.0f}% of slices kept, "
        f"{100 * summary['slices_segmented_fraction']:.0f}% segmented ({summary['slices_followed']} of the kept "
        f"followed the organ past the gate); labelled slices left out {summary['labelled_slices_lost']} of "
        f"{summary['labelled_slices']}; "
        f"classifier {summary['classifier_slices_per_second']:.0f} slices/s of volume, its time "
        f"{100 * summary['gate_cost_fraction']:.0f}% of the full volume's; peak RSS {summary['peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
