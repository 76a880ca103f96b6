"""Smoke tests of the liver bundle: every stage runs through MONAI's ConfigWorkflow on tiny phantoms."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.validation.errors import find_data_error
from pipelines.workflows import REPO_ROOT, get_workflow

CONFIGS = get_workflow("liver").bundle_dir / "configs"


def test_train_writes_checkpoint_and_finished_mlflow_run(trained):
    out = Path(trained["output_dir"])
    assert (out / "models" / "model.pt").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test_liver")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "1" and run.data.params["learning_rate"] == "0.002"
    assert "roi_size" in run.data.params and "cache_rate" in run.data.params
    assert "train_loss" in run.data.metrics
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 1
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "model.pt" in artifacts and "configs" in artifacts
    assert "configs/train.yaml" in [a.path for a in client.list_artifacts(run.info.run_id, "configs")]


def test_evaluate_writes_per_case_metrics_on_original_geometry(trained, liver_stage):
    liver_stage("evaluate", trained)
    eval_dir = Path(trained["output_dir"]) / "eval"
    with open(eval_dir / "test_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "filename" and len(rows) == 2  # header + one test case
    summary = (eval_dir / "metrics.csv").read_text()
    for name in ("test_mean_dice", "test_liver_dice", "test_tumour_dice", "test_hd95_mm"):
        assert name in summary
    assert (eval_dir / "test_hd95_mm_raw.csv").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(trained['output_dir']) / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test_liver")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name.startswith("evaluate_")]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert 0.0 <= runs[0].data.metrics["test_mean_dice"] <= 1.0
    assert "eval" in [a.path for a in client.list_artifacts(runs[0].info.run_id)]


def _write_non_ras_ct(path: Path) -> nib.Nifti1Image:
    """A CT volume in LPS-like orientation with anisotropic, oblique-free spacing and an odd shape."""
    rng = np.random.default_rng(0)
    data = rng.normal(40, 20, size=(37, 29, 11)).astype(np.int16)
    affine = np.array([[-0.9, 0.0, 0.0, 120.0], [0.0, -1.3, 0.0, 95.0], [0.0, 0.0, 3.5, -40.0], [0.0, 0.0, 0.0, 1.0]])
    image = nib.Nifti1Image(data, affine)
    nib.save(image, path)
    return image


def test_inference_output_matches_input_geometry(trained, liver_stage, tmp_path):
    source = _write_non_ras_ct(tmp_path / "odd_ct.nii.gz")
    liver_stage("inference", {**trained, "input_path": str(tmp_path / "odd_ct.nii.gz"), "use_cascade": False})
    pred = nib.load(Path(trained["output_dir"]) / "predictions" / "odd_ct_seg.nii.gz")
    assert pred.shape == source.shape
    np.testing.assert_allclose(pred.affine, source.affine, atol=1e-4)
    values = np.unique(np.asanyarray(pred.dataobj))
    assert pred.get_data_dtype() == np.uint8 and set(values.tolist()) <= {0, 1, 2}


def test_inference_reads_a_dicom_series(trained, liver_stage, tmp_path):
    volume = sitk.GetImageFromArray(np.random.default_rng(1).normal(0, 30, (9, 40, 36)).astype(np.int16))
    volume.SetSpacing((0.8, 0.8, 2.5))
    series = tmp_path / "series"
    series.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume.GetDepth()):
        slice_ = volume[:, :, z]
        slice_.SetMetaData("0008|0060", "CT")
        slice_.SetMetaData("0020|0013", str(z + 1))
        slice_.SetMetaData("0020|0032", "\\".join(map(str, volume.TransformIndexToPhysicalPoint((0, 0, z)))))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.1")
        writer.SetFileName(str(series / f"slice_{z:03d}.dcm"))
        writer.Execute(slice_)
    liver_stage("inference", {**trained, "input_path": str(series), "use_cascade": False})
    pred = nib.load(Path(trained["output_dir"]) / "predictions" / "series_seg.nii.gz")
    assert pred.shape == (36, 40, 9)
    np.testing.assert_allclose(np.abs(np.diag(pred.affine))[:3], [0.8, 0.8, 2.5], atol=1e-4)


def _break_missing(image: Path, label: Path) -> str:
    image.unlink()
    return f"{image}: file not found"


def _break_corrupt(image: Path, label: Path) -> str:
    image.write_bytes(image.read_bytes()[:200])
    return str(image)


def _break_2d(image: Path, label: Path) -> str:
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), image)
    return str(image)


def _break_shape(image: Path, label: Path) -> str:
    nib.save(nib.Nifti1Image(np.zeros((64, 60, 24), np.uint8), nib.load(image).affine), label)
    return str(label)


def _break_nan(image: Path, label: Path) -> str:
    source = nib.load(image)
    data = source.get_fdata().astype(np.float32)
    data[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(data, source.affine), image)
    return str(image)


@pytest.mark.parametrize("breaker", [_break_missing, _break_corrupt, _break_2d, _break_shape, _break_nan])
def test_bad_input_fails_before_training_naming_the_file(tmp_path, make_liver_workflow, shrink_overrides, breaker):
    from data_manifests.msd import build_msd_datalist
    from pipelines.phantoms.liver_ct import write_liver_phantom_task

    task = tmp_path / "task"
    write_liver_phantom_task(task, num_cases=3, seed=5, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0))
    datalist = tmp_path / "datalist.json"
    build_msd_datalist(task, val_fraction=0.34, test_fraction=0.0, seed=0, output_path=datalist, relative_to=task)
    entry = json.loads(datalist.read_text())["training"][0]
    expected = breaker(task / entry["image"], task / entry["label"])
    workflow = make_liver_workflow("train", shrink_overrides(task, datalist, tmp_path / "out"))
    with pytest.raises(RuntimeError) as err:  # ConfigParser wraps the error of a failing expression
        workflow.initialize()
    cause = find_data_error(err.value)
    assert cause is not None and expected in str(cause), str(err.value)
    assert not (tmp_path / "out" / "models").exists()


def test_verify_net_in_out_and_ckpt_export(trained, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    files = str(get_workflow("liver").config_files("train")[:1])
    net_overrides = ["--channels", "[4,8,16]", "--strides", "[2,2]", "--num_res_units", "1"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_net_in_out",
            "network_def",
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            files,
            "--device",
            "cpu",
            "--_meta_#network_data_format#inputs#image#spatial_shape",
            "[32,32,16]",
            *net_overrides,
        ],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
    )
    exported = tmp_path / "model.ts"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "ckpt_export",
            "network_def",
            "--filepath",
            str(exported),
            "--ckpt_file",
            str(Path(trained["ckpt_dir"]) / "model.pt"),
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            files,
            *net_overrides,
        ],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
    )
    assert exported.stat().st_size > 0


@pytest.mark.slow
def test_monai_bundle_run_command_trains_one_epoch(tiny_liver_task, tmp_path, shrink_overrides):
    task, datalist = tiny_liver_task
    files = get_workflow("liver").config_files("train")
    args = []
    for key, value in shrink_overrides(task, datalist, tmp_path).items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "mlflow.db").is_file()
