"""The users' own commands, exactly as the README writes them: ``python -m monai.bundle run --config_file
bundles/liver/<stage>.yaml`` for train, train_classifier, evaluate and inference, each in a fresh process from the
repo root, on a tiny phantom task (the ids a user would override to shrink a run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch

from pipelines.workflows import REPO_ROOT

pytestmark = pytest.mark.slow


def _arguments(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def _bundle_run(stage: str, overrides: dict, check: bool = True, bundle: str = "liver") -> subprocess.CompletedProcess:
    """Run a stage; one set of overrides serves every stage (an id only another stage defines is accepted)."""
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"bundles/{bundle}/{stage}.yaml"]
    result = subprocess.run(
        command + _arguments(overrides),
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    if check:
        assert result.returncode == 0, f"{stage} failed:\n{result.stderr[-4000:]}"
    return result


def test_train_evaluate_and_inference_run_from_the_literal_commands(tiny_liver_task, shrink_overrides, tmp_path):
    task, datalist = tiny_liver_task
    out = tmp_path / "runs"
    overrides = shrink_overrides(task, datalist, out)
    classifier = {"classifier_image_size": [32, 32], "slices_per_volume": 4}

    _bundle_run("train", overrides)
    _bundle_run("train_classifier", {**overrides, **classifier, "batch_size": 1})
    _bundle_run("evaluate", overrides)
    test_case = json.loads(datalist.read_text())["test"][0]["image"]
    scan = task / test_case
    _bundle_run("inference", {**overrides, **classifier, "input_path": str(scan)})

    models = out / "models"
    assert (models / "model.pt").is_file() and (models / "classifier.pt").is_file()
    metrics = (out / "eval" / "metrics.csv").read_text()
    assert "test_mean_dice" in metrics
    assert (out / "eval" / "report.html").is_file()
    # the mask has the scan's own grid, and the cascade reported its slabs
    name = scan.name.removesuffix(".nii.gz")
    mask, image = nib.load(out / "predictions" / f"{name}_seg.nii.gz"), nib.load(scan)
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    assert (out / "reports" / f"{name}_cascade.json").is_file()

    # every stage logged an MLflow run that ended FINISHED
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")  # not set_tracking_uri: it sets the env
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert sorted(run.info.run_name.rsplit("_", 2)[0] for run in runs) == [
        "evaluate",
        "inference",
        "train",
        "train_classifier",
    ]
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_the_gpu_preset_trains_from_a_lits_folder_as_downloaded_and_its_model_serves_evaluate(
    tiny_liver_task, shrink_overrides, tmp_path
):
    """bundles/liver/train_gpu.yaml on the CPU (--require_gpu false --amp false): the LiTS folder's datalist is
    written by the preset, every volume cached, and the model it writes is read by evaluate.yaml as it is."""
    task, _ = tiny_liver_task
    lits = tmp_path / "LiTS" / "Training Batch 1"
    lits.mkdir(parents=True)
    for n, image in enumerate(sorted((task / "imagesTr").glob("*.nii.gz"))):
        shutil.copyfile(image, lits / f"volume-{n}.nii.gz")
        shutil.copyfile(task / "labelsTr" / image.name, lits / f"segmentation-{n}.nii.gz")
    out = tmp_path / "runs"
    overrides = shrink_overrides(lits.parent, out / "datalist.json", out)
    del overrides["data_list_file_path"]  # the preset writes it
    overrides.update(dataset_dir=str(lits.parent), cache_rate=1.0)

    refused = _bundle_run("train_gpu", overrides, check=False)  # this machine has no GPU (CI's neither)
    assert refused.returncode != 0
    assert "train_gpu.yaml trains on a CUDA GPU" in refused.stderr and "--require_gpu false" in refused.stderr
    assert not (out / "datalist.json").exists()  # it stopped before reading anything

    result = _bundle_run("train_gpu", {**overrides, "require_gpu": False, "amp": False})
    assert "LiTS layout" in result.stderr + result.stdout
    datalist = json.loads((out / "datalist.json").read_text())
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [3, 1, 1]
    assert (out / "models" / "model.pt").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert float(run.data.params["learning_rate"]) == 0.0001 and run.data.params["cache_rate"] == "1.0"

    _bundle_run("evaluate", {**overrides, "data_list_file_path": str(out / "datalist.json")})
    assert "test_mean_dice" in (out / "eval" / "metrics.csv").read_text()


@pytest.mark.parametrize("bundle", ["lung", "brain"])
def test_the_lung_and_brain_gpu_presets_train_from_their_datasets_native_layouts(bundle, tmp_path):
    """lung: a COVID-19-20 folder (``Train/<case>_ct.nii.gz``, ``_seg``); brain: BraTS patient folders; each
    through its bundle's train_gpu.yaml on the CPU, tiny."""
    from pipelines.phantoms.brain_mr import write_brain_phantom_task
    from pipelines.phantoms.lung_ct import write_lung_ct_phantom_task

    data = tmp_path / "download"
    if bundle == "lung":
        write_lung_ct_phantom_task(data, num_cases=5, seed=3, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0))
        layout, pixdim = "COVID-19-20 layout", [4.0, 4.0, 6.0]
    else:
        write_brain_phantom_task(data, num_cases=5, seed=3, spacing=4.0)
        layout, pixdim = "BraTS layout", [4.0, 4.0, 4.0]
    out = tmp_path / "run"
    overrides = {
        "dataset_dir": str(data), "output_dir": str(out), "ckpt_dir": str(out / "models"), "pixdim": pixdim,
        "roi_size": [32, 32, 16], "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "max_epochs": 1,
        "val_interval": 1, "batch_size": 1, "num_samples": 1, "num_workers": 0, "sw_batch_size": 2,
        "cache_rate": 1.0, "require_gpu": False, "amp": False,
    }  # fmt: skip
    result = _bundle_run("train_gpu", overrides, bundle=bundle)
    assert layout in result.stderr + result.stdout
    datalist = json.loads((out / "datalist.json").read_text())
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [3, 1, 1]
    assert torch.load(out / "models" / "model.pt", map_location="cpu")
