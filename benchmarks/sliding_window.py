"""Benchmark: the bundle's sliding-window inferer vs MONAI's plain ``SlidingWindowInferer``, same network and weights.

The baseline is MONAI's ``SlidingWindowInferer`` as the bundles used it before ``FastSlidingWindowInferer``: the
bundle's ``roi_size``, ``sw_batch_size`` 4, overlap 0.25, gaussian blending, float32, under ``torch.no_grad``.
"ours" is whatever the bundle's ``inferer`` id builds (override it with ``--set``); "bf16" isolates bfloat16
autocast and "layers" the exact layer rewrites of ``pipelines.models.fast_layers`` (in float32), both at the baseline's
settings. Two parts, each printing a table:

1. Held-out cases (the datalist's test split, on the network's grid): time and Dice against the label of each
   inferer, after argmax and the bundle's ``label_postprocessing``, side by side in this process.
2. CT-sized volumes (default 512x512x200 and 256x256x100 voxels on the network's grid, made by mirror-tiling the
   first held-out case): each inferer in a fresh child process, one after the other, for a clean peak resident
   memory; wall time, voxels per second, peak RSS, and the Dice of each prediction against the baseline's.

    python benchmarks/sliding_window.py lung
    python benchmarks/sliding_window.py liver --sizes 512x512x200 --set sw_overlap=0.25 --json out.json

Needs a trained ``models/model.pt`` for meaningful Dice (``radcascade demo <workflow>``); without it the network
keeps random weights, and only the times and memory mean anything (the table says so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from monai.bundle import ConfigParser  # noqa: E402
from monai.data import load_decathlon_datalist  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.metrics import DiceMetric  # noqa: E402
from monai.transforms import AsDiscrete  # noqa: E402

from pipelines.api import load_weights  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.inference.fast_inference import FastSlidingWindowInferer  # noqa: E402
from pipelines.io.inputs import case_name  # noqa: E402
from pipelines.workflows import get_workflow  # noqa: E402

VARIANTS = ("monai", "bf16", "layers", "ours")
BASELINE = {"sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}


def _parser(workflow: str, overrides: list[str]) -> ConfigParser:
    return get_workflow(workflow).config_parser("inference", parse_overrides(overrides))


def _network(parser: ConfigParser) -> tuple[torch.nn.Module, bool]:
    """The bundle's segmenter on the CPU in eval mode, with its trained weights when they exist."""
    network = parser.get_parsed_content("network_def").eval()
    ckpt = Path(parser.get_parsed_content("ckpt_path"))
    if ckpt.is_file():
        load_weights(network, ckpt)
        return network, True
    return network, False


def _inferer(parser: ConfigParser, variant: str):
    roi = parser.get_parsed_content("roi_size")
    if variant == "monai":
        return SlidingWindowInferer(roi_size=roi, **BASELINE)
    if variant == "bf16":
        return FastSlidingWindowInferer(roi_size=roi, precision="bf16", fast_layers=False, **BASELINE)
    if variant == "layers":
        return FastSlidingWindowInferer(roi_size=roi, precision="fp32", fast_layers=True, **BASELINE)
    return parser.get_parsed_content("inferer")


def _describe(inferer) -> str:
    extra = (
        f", {inferer.precision}, channels_last={inferer.channels_last}, fast_layers={inferer.fast_layers}"
        if hasattr(inferer, "precision")
        else ""
    )
    return f"sw_batch_size {inferer.sw_batch_size}, overlap {inferer.overlap}, {inferer.mode}{extra}"


def _predict(inferer, network, image: torch.Tensor) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        start = time.perf_counter()
        logits = inferer(image, network)
        return logits, time.perf_counter() - start


def _warm_up(inferer, network, channels: int, roi) -> None:
    """One pass over a volume of 1.5 windows per side (8 windows): kernels for full batches get built here."""
    _predict(inferer, network, torch.zeros(1, channels, *(r + r // 2 for r in roi)))


def _dice(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> list[float]:
    """Dice of each foreground class between two label maps (NaN where both are empty)."""
    out = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        total = p.sum() + r.sum()
        out.append(float(2 * np.logical_and(p, r).sum() / total) if total else float("nan"))
    return out


def _held_out(parser, network, items, num_classes) -> list[dict]:
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocess = parser.get_parsed_content("label_postprocessing")
    onehot = AsDiscrete(to_onehot=num_classes)
    dice_metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    inferers = {v: _inferer(parser, v) for v in ("monai", "ours")}
    roi = parser.get_parsed_content("roi_size")
    for inferer in inferers.values():
        _warm_up(inferer, network, parser.get_parsed_content("in_channels"), roi)
    rows = []
    for item in items:
        data = preprocessing(item)
        image, label = data["image"][None], onehot(data["label"])
        source = item["image"][0] if isinstance(item["image"], list) else item["image"]
        row = {"case": case_name(source), "shape": list(image.shape[2:])}
        labels = {}
        for name, inferer in inferers.items():
            logits, row[f"{name}_s"] = _predict(inferer, network, image)
            pred = postprocess({"pred": logits[0].argmax(0, keepdim=True)})["pred"]
            labels[name] = np.asarray(pred[0])
            row[f"{name}_dice"] = [float(d) for d in dice_metric(onehot(pred)[None], label[None])[0]]
        row["agreement"] = _dice(labels["ours"], labels["monai"], num_classes)
        rows.append(row)
    return rows


def _ct_sized_volume(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` ``(C, X, Y, Z)`` mirror-tiled (and cropped) to ``(C, *shape)``."""
    pads = [(0, 0)] + [(0, max(0, s - n)) for s, n in zip(shape, image.shape[1:], strict=True)]
    while any(p[1] for p in pads):
        step = [(0, 0)] + [(0, min(p[1], n - 1)) for p, n in zip(pads[1:], image.shape[1:], strict=True)]
        image = np.pad(image, step, mode="symmetric")
        pads = [(0, 0)] + [(0, max(0, s - n)) for s, n in zip(shape, image.shape[1:], strict=True)]
    return np.ascontiguousarray(image[(slice(None), *(slice(0, s) for s in shape))], dtype=np.float32)


def _child(args) -> int:
    """Run one variant on one saved volume; print its figures as one JSON line."""
    torch.set_num_threads(args.threads)
    parser = _parser(args.workflow, args.overrides)
    network, _ = _network(parser)
    inferer = _inferer(parser, args.child)
    volume = torch.from_numpy(np.load(args.volume))[None]
    roi = parser.get_parsed_content("roi_size")
    _warm_up(inferer, network, volume.shape[1], roi)
    times = []
    for _ in range(args.repeats):
        logits, seconds = _predict(inferer, network, volume)
        times.append(seconds)
    np.save(args.out, logits[0].argmax(0).numpy().astype(np.uint8))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": min(times), "all_seconds": times, "peak_rss_mib": rss, "inferer": _describe(inferer)}))
    return 0


def _ct_sized(args, image: np.ndarray, label: np.ndarray, num_classes: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            shape = tuple(int(s) for s in size.split("x"))
            volume_path = os.path.join(tmp, "volume.npy")
            np.save(volume_path, _ct_sized_volume(image, shape))
            truth = _ct_sized_volume(label, shape)[0].round().astype(np.uint8)
            row = {"size": size, "voxels": int(np.prod(shape))}
            for variant in VARIANTS:
                out = os.path.join(tmp, f"{variant}.npy")
                cmd = [sys.executable, __file__, args.workflow, "--child", variant, "--volume", volume_path]
                cmd += ["--out", out, "--threads", str(args.threads), "--repeats", str(args.repeats)]
                cmd += [x for o in args.overrides for x in ("--set", o)]
                done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
                if done.returncode:
                    raise RuntimeError(f"variant {variant} on {size} failed:\n{done.stderr[-3000:]}")
                row[variant] = json.loads(done.stdout.strip().splitlines()[-1])
                row[variant]["dice"] = _dice(np.load(out), truth, num_classes)
                if variant != "monai":
                    baseline = np.load(os.path.join(tmp, "monai.npy"))
                    row[variant]["agreement"] = _dice(np.load(out), baseline, num_classes)
                print(f"  {size} {variant}: {row[variant]['seconds']:.1f} s", flush=True)
            rows.append(row)
    return rows


def _print_held_out(rows, classes) -> dict:
    print(f"\n1. held-out cases ({len(rows)}): Dice against the label, after the bundle's postprocessing")
    print(f"{'case':22s} {'shape':>14s} {'monai s':>8s} {'ours s':>7s} {'ratio':>6s} "
          + " ".join(f"{'monai ' + c:>12s} {'ours ' + c:>12s}" for c in classes))  # fmt: skip
    for r in rows:
        dice = " ".join(f"{m:12.4f} {o:12.4f}" for m, o in zip(r["monai_dice"], r["ours_dice"], strict=True))
        shape = "x".join(map(str, r["shape"]))
        ratio = r["monai_s"] / r["ours_s"]
        print(f"{r['case']:22s} {shape:>14s} {r['monai_s']:8.2f} {r['ours_s']:7.2f} {ratio:6.2f} {dice}")
    mean = {k: np.nanmean([r[k] for r in rows], axis=0) for k in ("monai_dice", "ours_dice", "agreement")}
    summary = {
        "speedup": sum(r["monai_s"] for r in rows) / sum(r["ours_s"] for r in rows),
        "mean_dice_monai": dict(zip(classes, map(float, mean["monai_dice"]), strict=True)),
        "mean_dice_ours": dict(zip(classes, map(float, mean["ours_dice"]), strict=True)),
        "max_abs_dice_difference": float(np.nanmax(np.abs(mean["ours_dice"] - mean["monai_dice"]))),
        "mean_agreement_dice": dict(zip(classes, map(float, mean["agreement"]), strict=True)),
    }
    print(
        f"total x{summary['speedup']:.2f}; mean Dice monai {summary['mean_dice_monai']}, "
        f"ours {summary['mean_dice_ours']}"
        f" (largest class difference {summary['max_abs_dice_difference']:.4f}); "
        f"Dice of ours against monai's prediction {summary['mean_agreement_dice']}"
    )
    return summary


def _print_ct_sized(rows, classes) -> None:
    print(
        "\n2. CT-sized volumes, each inferer in a fresh process (best of the timed passes, after a warm-up pass; "
        "Dice of the raw argmax against the mirror-tiled label)"
    )
    print(f"{'size':>12s} {'inferer':8s} {'seconds':>8s} {'Mvox/s':>7s} {'x monai':>8s} {'peak RSS':>9s}  "
          f"{'Dice vs label':>14s} {'Dice vs monai':>14s}  settings")  # fmt: skip
    for r in rows:
        base = r["monai"]["seconds"]
        for v in VARIANTS:
            f = r[v]
            agree = " ".join(f"{d:.4f}" for d in f.get("agreement", [])) or "-"
            dice = " ".join(f"{d:.4f}" for d in f["dice"])
            print(f"{r['size']:>12s} {v:8s} {f['seconds']:8.2f} {r['voxels'] / f['seconds'] / 1e6:7.2f} "
                  f"{base / f['seconds']:8.2f} {f['peak_rss_mib']:6.0f} MiB  {dice:>14s} {agree:>14s}  "
                  f"{f['inferer']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow")
    args_parser.add_argument("--section", default="test", help="datalist section of the held-out cases")
    args_parser.add_argument("--sizes", nargs="*", default=["512x512x200", "256x256x100"], metavar="XxYxZ")
    args_parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args_parser.add_argument("--repeats", type=int, default=2, help="timed passes per CT-sized run (best is kept)")
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args_parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args_parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args_parser.add_argument("--volume", help=argparse.SUPPRESS)
    args_parser.add_argument("--out", help=argparse.SUPPRESS)
    args = args_parser.parse_args(argv)
    if args.child:
        return _child(args)

    torch.set_num_threads(args.threads)
    workflow = get_workflow(args.workflow)
    parser = _parser(args.workflow, args.overrides)
    network, trained = _network(parser)
    num_classes = parser.get_parsed_content("num_classes")
    items = load_decathlon_datalist(
        parser.get_parsed_content("data_list_file_path"), True, args.section, parser.get_parsed_content("dataset_dir")
    )
    print(f"{args.workflow}: {'trained weights' if trained else 'RANDOM weights (no checkpoint): Dice meaningless'}; "
          f"{args.threads} threads; monai: {_describe(_inferer(parser, 'monai'))}; "
          f"ours: {_describe(_inferer(parser, 'ours'))}")  # fmt: skip
    classes = list(workflow.classes[1:])
    held_out = _held_out(parser, network, items, num_classes)
    summary = _print_held_out(held_out, classes)
    first = parser.get_parsed_content("preprocessing")(items[0])
    image, label = np.asarray(first["image"]), np.asarray(first["label"])
    ct_sized = _ct_sized(args, image, label, num_classes) if args.sizes else []
    if ct_sized:
        _print_ct_sized(ct_sized, classes)
    if args.json:
        figures = {"held_out": held_out, "summary": summary, "ct_sized": ct_sized}
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
