"""Benchmark: training throughput with MONAI's Dataset, CacheDataset and PersistentDataset on the default data.

Each dataset kind runs in a fresh child process, one after the other, with the bundle's own training transforms
(deterministic ones, then random crops and augmentation), its network, loss and optimizer, and the bundle's
data loader settings (``ThreadDataLoader``; ``--workers`` sets its worker count). Printed per kind: the time to
build the dataset (CacheDataset fills its cache there, PersistentDataset writes its cache during the first
epoch), each epoch's time, iterations per second in the last epoch, the share of that epoch spent waiting for
data, and the peak resident memory of the process.

    python benchmarks/training_throughput.py liver
    python benchmarks/training_throughput.py brain --epochs 3 --kinds dataset cache
    python benchmarks/training_throughput.py liver --set "channels=[8,16,32,64,128]"   # a lighter network
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from monai.bundle import ConfigParser  # noqa: E402
from monai.data import CacheDataset, Dataset, PersistentDataset, ThreadDataLoader  # noqa: E402
from monai.utils import set_determinism  # noqa: E402

from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.workflows import ensure_default_data, get_workflow  # noqa: E402

KINDS = ("dataset", "cache", "persistent")


def _dataset(kind: str, data, transform, parser: ConfigParser, cache_dir: str):
    if kind == "dataset":
        return Dataset(data, transform)
    if kind == "cache":
        workers = parser.get_parsed_content("num_workers")
        return CacheDataset(data, transform, cache_rate=1.0, num_workers=workers, progress=False)
    return PersistentDataset(data, transform, cache_dir=cache_dir)


def _child(args) -> int:
    """Train ``args.epochs`` epochs with one dataset kind; print the figures as one JSON line."""
    torch.set_num_threads(args.threads)
    set_determinism(0)
    workflow = get_workflow(args.workflow)
    parser = workflow.config_parser("train", parse_overrides(args.overrides))
    ensure_default_data(args.workflow, parser.get_parsed_content("dataset_dir"))
    data = parser.get_parsed_content("train_datalist")
    transform = parser.get_parsed_content("train#preprocessing")
    network = parser.get_parsed_content("network").train()
    loss_fn = parser.get_parsed_content("loss")
    optimizer = parser.get_parsed_content("optimizer")
    device = parser.get_parsed_content("device")
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        dataset = _dataset(args.child, data, transform, parser, cache_dir)
        build_s = time.perf_counter() - start
        loader = ThreadDataLoader(
            dataset, batch_size=parser.get_parsed_content("batch_size"), shuffle=True, num_workers=args.workers
        )
        epochs = []
        for _ in range(args.epochs):
            wait = steps = 0
            start = tick = time.perf_counter()
            for batch in loader:
                wait += time.perf_counter() - tick
                image, label = batch["image"].to(device), batch["label"].to(device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(network(image), label)
                loss.backward()
                optimizer.step()
                steps += 1
                tick = time.perf_counter()
            epochs.append({"seconds": time.perf_counter() - start, "data_wait_s": wait, "iterations": steps})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"build_s": build_s, "epochs": epochs, "peak_rss_mib": rss, "cases": len(data)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run each dataset kind in a child process and print the table; returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow")
    args_parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args_parser.add_argument("--epochs", type=int, default=2)
    args_parser.add_argument("--workers", type=int, default=0, help="data loader workers (the bundles use 0)")
    args_parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args_parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args_parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = args_parser.parse_args(argv)
    if args.child:
        return _child(args)

    rows = {}
    for kind in args.kinds:
        cmd = [sys.executable, __file__, args.workflow, "--child", kind, "--epochs", str(args.epochs)]
        cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
        cmd += [x for o in args.overrides for x in ("--set", o)]
        done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
        if done.returncode:
            raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
        rows[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {kind}: done", flush=True)

    cases = next(iter(rows.values()))["cases"]
    print(f"\n{args.workflow}: {cases} training cases, {args.epochs} epochs, {args.threads} threads, "
          f"{args.workers} loader workers")  # fmt: skip
    epoch_cols = " ".join(f"{'epoch ' + str(i + 1) + ' s':>10s}" for i in range(args.epochs))
    header = f"{'dataset':12s} {'build s':>8s} {epoch_cols} {'it/s':>6s} {'data wait':>9s} {'x Dataset':>9s}"
    print(f"{header} {'peak RSS':>9s}")
    base = rows.get("dataset", {}).get("epochs", [{}])[-1].get("seconds")
    for kind, r in rows.items():
        last = r["epochs"][-1]
        epochs = " ".join(f"{e['seconds']:10.1f}" for e in r["epochs"])
        ratio = f"{base / last['seconds']:9.2f}" if base else f"{'-':>9s}"
        print(
            f"{kind:12s} {r['build_s']:8.1f} {epochs} {last['iterations'] / last['seconds']:6.2f} "
            f"{100 * last['data_wait_s'] / last['seconds']:8.0f}% {ratio} {r['peak_rss_mib']:6.0f} MiB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
