"""Benchmark: time to the first prediction, and where the start-up time goes.

1. In one fresh process, step by step: ``import torch``, ``import monai``, ``import pipelines.api``, building the
   ``Segmenter`` (config parsing, networks, weights), the first prediction of one held-out case, and a second
   prediction of the same case (what a long-lived process, e.g. MONAI Label or the Python API, pays per case).
2. End to end, wall time of the two commands users type to segment that one case:
   ``python -m monai.bundle run ... inference.yaml --input_path CASE`` and ``radcascade run WORKFLOW inference``.

    python benchmarks/startup.py lung
    python benchmarks/startup.py liver --skip-commands

Needs trained checkpoints (``radcascade demo <workflow>``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def _steps(workflow: str) -> int:
    """Child: time each start-up step in this fresh process; print them as one JSON line."""
    marks, start = [], time.perf_counter()

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter() - start - sum(s for _, s in marks)))

    import torch  # noqa: F401

    mark("import torch")
    import monai  # noqa: F401

    mark("import monai (and ignite, its submodules)")
    from monai.data import load_decathlon_datalist

    from pipelines.api import Segmenter
    from pipelines.workflows import get_workflow

    mark("import pipelines.api")
    segment = Segmenter(workflow)
    mark("Segmenter(): parse the bundle config, build the networks, load the weights")

    parser = get_workflow(workflow).config_parser("inference")
    case = load_decathlon_datalist(
        parser.get_parsed_content("data_list_file_path"), True, "test", parser.get_parsed_content("dataset_dir")
    )[0]["image"]
    mark("(read the datalist)")
    segment(case)
    mark("first prediction")
    segment(case)
    mark("second prediction of the same case")
    print(json.dumps({"case": case if isinstance(case, str) else case[0], "steps": marks}))
    return 0


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print their tables; returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow")
    args_parser.add_argument("--skip-commands", action="store_true", help="only the in-process steps")
    args_parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = args_parser.parse_args(argv)
    if args.child:
        return _steps(args.workflow)

    done = subprocess.run(
        [sys.executable, __file__, args.workflow, "--child"],
        capture_output=True, text=True, encoding="utf-8", errors="replace",
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    child = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n1. {args.workflow}: start-up steps in one fresh process (case {Path(child['case']).name})")
    total = 0.0
    for name, seconds in child["steps"]:
        total += seconds
        print(f"  {name:72s} {seconds:7.2f} s  (at {total:6.2f} s)")

    if not args.skip_commands:
        from pipelines.workflows import get_workflow

        files = get_workflow(args.workflow).config_files("inference")
        print("\n2. end to end, one case, wall time")
        with tempfile.TemporaryDirectory() as tmp:
            bundle = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(f) for f in files])]
            bundle += ["--input_path", child["case"], "--output_dir", f"{tmp}/bundle"]
            cli = ["radcascade", "run", args.workflow, "inference", "--set", f"input_path={child['case']}"]
            cli += ["--set", f"output_dir={tmp}/cli"]
            for name, cmd in (("python -m monai.bundle run", bundle), ("radcascade run", cli)):
                print(f"  {name:30s} {_wall(cmd):7.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
