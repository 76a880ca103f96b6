"""Benchmark: wall time and peak memory of the inference command on a CT-sized volume (default 512x512x600).

The volume is a held-out phantom case of the workflow resampled (trilinear) onto a 512x512x600 grid over the same
field of view, written once as NIfTI (int16) next to the default data. The command users run,
``radcascade run <workflow> inference``, segments it in a child process; printed: wall time, the child's peak
resident memory, and the cascade's own timing from its report.

    python benchmarks/large_volume.py lung
    python benchmarks/large_volume.py lung --shape 512 512 200 --set use_cascade=false
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

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def _large_case(workflow: str, shape: tuple[int, int, int]) -> Path:
    """A held-out case of ``workflow`` resampled to ``shape`` voxels over its field of view (written once, and again
    when the case is newer, e.g. after the phantoms were regenerated)."""
    import nibabel as nib
    from monai.data import load_decathlon_datalist
    from scipy.ndimage import zoom

    from pipelines.workflows import ensure_default_data, get_workflow

    parser = get_workflow(workflow).config_parser("inference")
    dataset_dir = parser.get_parsed_content("dataset_dir")
    ensure_default_data(workflow, dataset_dir)
    source = load_decathlon_datalist(parser.get_parsed_content("data_list_file_path"), True, "test", dataset_dir)
    source = source[0]["image"]
    if not isinstance(source, str):
        raise SystemExit(f"{workflow}: cases with several files per image are not supported here")
    out = REPO_ROOT / "data" / f"large_{workflow}_{'x'.join(map(str, shape))}.nii.gz"
    if out.is_file() and out.stat().st_mtime >= Path(source).stat().st_mtime:
        return out
    image = nib.load(source)
    data = np.asanyarray(image.dataobj).astype(np.float32)
    factors = [n / s for n, s in zip(shape, data.shape, strict=True)]
    large = zoom(data, factors, order=1).astype(np.int16)
    affine = image.affine @ np.diag([1 / f for f in factors] + [1.0])
    affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, :3] @ (0.5 / np.array(factors) - 0.5)  # same extent
    tmp = out.with_name(".tmp_" + out.name)
    nib.save(nib.Nifti1Image(large, affine), tmp)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Segment the large volume with the inference command; print time and memory. Returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("workflow")
    args_parser.add_argument("--shape", nargs=3, type=int, default=[512, 512, 600])
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args = args_parser.parse_args(argv)

    case = _large_case(args.workflow, tuple(args.shape))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["radcascade", "run", args.workflow, "inference", "--set", f"input_path={case}"]
        cmd += ["--set", f"output_dir={tmp}"] + [x for o in args.overrides for x in ("--set", o)]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", errors="replace")
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        reports = list(Path(tmp, "reports").glob("*_cascade.json"))
        seconds = json.loads(reports[0].read_text())["seconds"] if reports else None
    shape = "x".join(map(str, args.shape))
    print(f"{args.workflow}: inference of one {shape} CT ({case.name}), overrides {args.overrides or 'none'}")
    print(f"  wall time {wall:.1f} s (with start-up), peak RSS {peak:.2f} GiB")
    if seconds:
        print("  cascade: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
