"""Benchmark: the peak memory of each preprocessing transform of a workflow's inference stage, on one large scan.

Runs the inference config's ``preprocessing`` transforms one at a time on one input (by default the real CT
resampled to 512x512x600 that ``benchmarks/whole_scan.py`` writes) and prints, for each, the peak resident memory
above the process's own after start-up (Linux ``VmHWM``, reset before each transform through
``/proc/self/clear_refs``), the memory still held after it, and the image it leaves. The largest line is where the
inference stage's peak comes from before the network.

    python benchmarks/preprocessing_memory.py liver
    python benchmarks/preprocessing_memory.py liver --input data/my_ct.nii.gz
    python benchmarks/preprocessing_memory.py liver --set-new 'spatial_transforms#1#dtype=$np.float64'   # MONAI's

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def _memory_mib() -> dict[str, float]:
    """``VmHWM`` (peak) and ``VmRSS`` (now) of this process, in MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(value.split()[0]) / 1024
    return values


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current RSS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow")
    parser.add_argument("--input", default=None, help="default: the 512x512x600 real CT of whole_scan.py")
    parser.add_argument("--set-new", dest="new_ids", action="append", default=[], metavar="ID=VALUE")
    args = parser.parse_args(argv)
    if not Path("/proc/self/clear_refs").exists():
        print("needs Linux /proc (VmHWM and clear_refs)", file=sys.stderr)
        return 2

    from pipelines.cli.main import parse_overrides
    from pipelines.workflows import get_workflow

    path = args.input
    if path is None:
        from whole_scan import _whole_scan

        path = str(_whole_scan((512, 512, 600))[0])
    config = get_workflow(args.workflow).config_parser("inference")
    for key, value in parse_overrides(args.new_ids).items():
        config[key] = value
    transforms = config.get_parsed_content("preprocessing").transforms
    gc.collect()
    baseline = _memory_mib()["VmRSS"]
    print(f"{args.workflow}: {path}; process after start-up {baseline:.0f} MiB")
    data: dict = {"image": path}
    for transform in transforms:
        _reset_peak()
        data = transform(data)
        gc.collect()
        now = _memory_mib()
        image = data["image"]
        peak, held = now["VmHWM"] - baseline, now["VmRSS"] - baseline
        name = type(transform).__name__
        print(f"  {name:24s} peak +{peak:6.0f} MiB, held +{held:6.0f} MiB; image {tuple(image.shape)} {image.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
