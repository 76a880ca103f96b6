"""The sliding-window benchmark runs end to end (tiny network, tiny phantoms) and prints and saves its tables.

The figures themselves are machine-dependent and not asserted; the test keeps the script from rotting.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sliding_window_benchmark_prints_both_tables(tiny_liver_task, shrink_overrides, tmp_path):
    task, datalist = tiny_liver_task
    overrides = shrink_overrides(task, datalist, tmp_path / "run")  # no checkpoint there: random weights
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "sliding_window.py"), "liver"]
    command += ["--sizes", "40x36x20", "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "figures.json")]
    for key in ("dataset_dir", "data_list_file_path", "ckpt_dir", "pixdim", "roi_size", "channels", "strides"):
        command += ["--set", f"{key}={json.dumps(overrides[key])}"]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RANDOM weights" in done.stdout
    assert "1. held-out cases" in done.stdout and "2. CT-sized volumes" in done.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())
    (row,) = figures["ct_sized"]
    assert row["size"] == "40x36x20" and row["voxels"] == 40 * 36 * 20
    for variant in ("monai", "bf16", "layers", "ours"):
        assert row[variant]["seconds"] > 0 and row[variant]["peak_rss_mib"] > 0
        assert len(row[variant]["dice"]) == 2  # liver, tumour
    assert all(0 <= d <= 1 for d in row["ours"]["agreement"] if d == d)
    assert figures["held_out"] and "speedup" in figures["summary"]
