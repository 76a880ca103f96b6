"""Inference over a folder holding bad cases: they are skipped and reported, the good case is segmented."""

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.cli.main import main


@pytest.fixture
def mixed_folder(tiny_liver_task, tmp_path) -> Path:
    """One good CT, one truncated copy of it, one 2D image."""
    task, _ = tiny_liver_task
    folder = tmp_path / "cases"
    folder.mkdir()
    good = folder / "good.nii.gz"
    shutil.copy(sorted((task / "imagesTr").glob("*.nii.gz"))[0], good)
    data = good.read_bytes()
    (folder / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), folder / "flat.nii.gz")
    return folder


def _check_outputs(out: Path, folder: Path) -> None:
    report = json.loads((out / "predictions" / "failures.json").read_text())
    assert (report["total"], report["segmented"], report["failed"]) == (3, 1, 2), report
    failed = {f["case"]: f for f in report["failures"]}
    assert set(failed) == {"truncated", "flat"}
    assert failed["flat"]["file"] == str(folder / "flat.nii.gz") and "is 2D" in failed["flat"]["error"]
    assert failed["truncated"]["file"] == str(folder / "truncated.nii.gz") and failed["truncated"]["error"]
    assert (out / "predictions" / "good_seg.nii.gz").is_file()
    assert sorted(p.name for p in (out / "predictions").glob("*_seg.nii.gz")) == ["good_seg.nii.gz"]


@pytest.mark.parametrize("read_ahead", [False, True])
def test_bundle_run_skips_bad_cases_and_logs_a_summary(
    trained, liver_stage, mixed_folder, tmp_path, caplog, read_ahead
):
    """Also with the next scan read by a worker process: its failures still reach the report."""
    out = tmp_path / "out"
    overrides = {**trained, "input_path": str(mixed_folder), "use_cascade": False, "output_dir": str(out)}
    overrides["read_ahead"] = read_ahead
    with caplog.at_level(logging.INFO, logger="pipelines.inference.robust_inference"):
        liver_stage("inference", overrides)  # what `python -m monai.bundle run` does: initialize, run, finalize
    _check_outputs(out, mixed_folder)
    assert "inference: 3 case(s), 1 segmented, 2 failed in " in caplog.text
    assert "scans per minute)" in caplog.text


def test_command_line_exits_3_when_a_case_failed(trained, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    overrides = {**trained, "input_path": str(mixed_folder), "use_cascade": False, "output_dir": str(out)}
    argv = ["run", "liver", "inference"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        status = main(argv)
    finally:  # the bundle's logging.conf replaced the root handlers
        root.handlers[:] = handlers
        root.setLevel(level)
    assert status == 3
    assert "2 case(s) could not be segmented" in capsys.readouterr().err
    _check_outputs(out, mixed_folder)
