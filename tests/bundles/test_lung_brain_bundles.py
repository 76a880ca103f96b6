"""Smoke tests of the lung CT and brain MRI bundles: every stage, cascade included, on tiny default-data phantoms.

The data are the bundles' own default generators at a coarse grid, laid out in the public datasets' native
layouts (COVID-19-20, BraTS) and listed by the project's datalist builders, as a user's data would be.
"""

import csv
import json
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
from monai.bundle import verify_net_in_out

from data_manifests.brats import build_brats_datalist
from data_manifests.covid19_20 import build_covid19_20_datalist
from pipelines.phantoms.brain_mr import write_brain_phantom_task
from pipelines.phantoms.lung_ct import write_lung_ct_phantom_task
from pipelines.workflows import get_workflow
from tests.benchmark_modules import load_benchmark

from .conftest import SHRINK_NETWORK, run_bundle_stage


def _lung_data(root: Path) -> tuple[Path, dict]:
    write_lung_ct_phantom_task(root, num_cases=5, seed=3, shape=(64, 64, 24), spacing=(5.4, 5.4, 8.0))
    return root, {"pixdim": [5.4, 5.4, 8.0], "lesion_min_volume_mm3": 0}


def _brain_data(root: Path) -> tuple[Path, dict]:
    write_brain_phantom_task(root, num_cases=5, seed=1, spacing=4.0)
    return root, {"pixdim": [4.0, 4.0, 4.0], "tumour_min_volume_mm3": 0}


DATA = {
    "lung": (_lung_data, build_covid19_20_datalist),
    "brain": (_brain_data, build_brats_datalist),
}
# label values a prediction may hold (as written to disk)
LABEL_VALUES = {"lung": {0, 1}, "brain": {0, 1, 2, 4}}
SHRINK = {**SHRINK_NETWORK, "classifier_image_size": [32, 32], "slices_per_volume": 4}


@pytest.fixture(scope="module", params=["lung", "brain"])
def trained(request, tmp_path_factory):
    """Workflow name and overrides of a tiny segmenter and slice classifier trained once on tiny phantoms."""
    name = request.param
    write_data, build_datalist = DATA[name]
    root, grid = write_data(tmp_path_factory.mktemp(f"{name}_data"))
    datalist = root / "datalist.json"
    build_datalist(root, output_path=datalist, val_fraction=0.2, test_fraction=0.2, seed=0, relative_to=root)
    out = tmp_path_factory.mktemp(f"{name}_run")
    overrides = {
        **SHRINK,
        **grid,
        "dataset_dir": str(root),
        "data_list_file_path": str(datalist),
        "output_dir": str(out),
        "ckpt_dir": str(out / "models"),
        "experiment_name": f"test_{name}",  # the classifier stages log to it too (an override beats their own)
    }
    run_bundle_stage(name, "train", overrides, check=True)
    run_bundle_stage(name, "train_classifier", overrides, check=True)
    return name, overrides


def _finished_runs(out: Path, experiment: str, stage: str) -> list:
    """Finished runs of ``stage`` (their names are ``<stage>_<time>``)."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r for r in runs if r.info.status == "FINISHED" and r.info.run_name.rsplit("_", 2)[0] == stage]


def test_training_writes_both_checkpoints_and_mlflow_runs_with_per_class_dice(trained):
    name, overrides = trained
    out = Path(overrides["output_dir"])
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "classifier.pt").is_file()
    (run,) = _finished_runs(out, f"test_{name}", "train")
    classes = get_workflow(name).classes[1:]
    for cls in classes:
        assert f"val_{cls.replace(' ', '_')}_dice" in run.data.metrics
    (classifier_run,) = _finished_runs(out, f"test_{name}", "train_classifier")
    assert "val_f1" in classifier_run.data.metrics
    assert (out / "training_curves.png").is_file()
    thresholds = out / "models" / "classifier_thresholds.json"
    assert thresholds.is_file() == (name == "brain")  # the brain calibrates its gate per subset of sequences
    if name == "brain":
        record = json.loads(thresholds.read_text())
        assert len(record["thresholds"]) == 15 and "FLAIR" in record["thresholds"]  # every non-empty subset
        assert all(0.0 <= t <= 0.5 for t in record["thresholds"].values()) and record["recall"] == 0.95


def test_evaluate_scores_every_class_on_the_original_geometry(trained):
    name, overrides = trained
    run_bundle_stage(name, "evaluate", overrides)
    eval_dir = Path(overrides["output_dir"]) / "eval"
    with open(eval_dir / "test_mean_dice_raw.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "filename" and len(rows) == 2  # header + one test case
    summary = (eval_dir / "metrics.csv").read_text()
    for cls in get_workflow(name).classes[1:]:
        assert f"test_{cls.replace(' ', '_')}_dice" in summary
    if name == "brain":
        for region in ("whole_tumour", "tumour_core", "enhancing_tumour"):
            assert f"test_{region}_dice" in summary
        assert "test_tversky" in summary
    # the report: one overlay of the test case (brain: one of its four sequences, inverted onto the label's grid)
    (overlay,) = (eval_dir / "overlays").glob("*.png")
    report = (eval_dir / "report.html").read_text(encoding="utf-8")
    assert f'src="overlays/{overlay.name}"' in report
    for cls in get_workflow(name).classes[1:]:
        assert f"<th>{cls}</th>" in report
    if name == "brain":  # the BraTS regions and the Tversky index have columns of their own
        for title in ("Whole tumour Dice", "Tumour core Dice", "Enhancing tumour Dice", "Tversky index"):
            assert title in report


def test_evaluate_classifier_writes_slice_results(trained):
    name, overrides = trained
    run_bundle_stage(name, "evaluate_classifier", overrides)
    eval_dir = Path(overrides["output_dir"]) / "eval_classifier"
    metrics = json.loads((eval_dir / "classification_metrics.json").read_text())
    with open(eval_dir / "slice_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == len(rows) > 0


def test_cascade_inference_keeps_geometry_and_label_values(trained, tmp_path):
    name, overrides = trained
    out = tmp_path / "infer"
    run_bundle_stage(name, "inference", {**overrides, "output_dir": str(out)})
    datalist = json.loads(Path(overrides["data_list_file_path"]).read_text())
    (case,) = datalist["test"]
    image = case["image"][0] if isinstance(case["image"], list) else case["image"]
    source = nib.load(Path(overrides["dataset_dir"]) / image)
    (pred_path,) = sorted((out / "predictions").glob("*_seg.nii.gz"))
    pred = nib.load(pred_path)
    assert pred.shape == source.shape
    np.testing.assert_allclose(pred.affine, source.affine, atol=1e-4)
    assert set(np.unique(np.asanyarray(pred.dataobj)).tolist()) <= LABEL_VALUES[name]
    (report,) = sorted((out / "reports").glob("*_cascade.json"))
    report = json.loads(report.read_text())
    assert len(report["slice_probabilities"]) == report["num_slices"]


@pytest.mark.parametrize("name", ["lung", "brain"])
def test_verify_net_in_out(name):
    workflow = get_workflow(name)
    files = workflow.config_files("train")[:1]
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(workflow.bundle_dir / "configs" / "metadata.json"),
        config_file=files,
        device="cpu",
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [32, 32, 16]},
        channels=[4, 8, 16],
        strides=[2, 2],
        num_res_units=1,
    )


def test_brain_inference_reads_a_brats_patient_folder(trained, tmp_path):
    name, overrides = trained
    if name != "brain":
        pytest.skip("multi-sequence patient folders are the brain bundle's input")
    datalist = json.loads(Path(overrides["data_list_file_path"]).read_text())
    patient = (Path(overrides["dataset_dir"]) / datalist["test"][0]["image"][0]).parent
    out = tmp_path / "infer_folder"
    run_bundle_stage(name, "inference", {**overrides, "input_path": str(patient), "output_dir": str(out)})
    (pred_path,) = sorted((out / "predictions").glob("*_seg.nii.gz"))
    assert pred_path.name == f"{patient.name}_flair_seg.nii.gz"
    assert nib.load(pred_path).shape == nib.load(next(patient.glob("*_flair.nii.gz"))).shape


def test_brain_inference_strips_a_head_with_flair_and_t1ce_only(trained, tmp_path):
    """A clinical-style study: skull, scalp, noise, and two of the four sequences. The skull is found and removed,
    the brain mask is written beside the prediction on the input's grid, and the report names what was used."""
    from pipelines.phantoms.brain_mr import make_brain_mri_phantom
    from pipelines.phantoms.brain_mr_head import add_head

    name, overrides = trained
    if name != "brain":
        pytest.skip("skull stripping and sequence subsets are the brain bundle's")
    channels, label, affine = make_brain_mri_phantom(7, 4.0, tumour=True)
    head = add_head({k: channels[k] for k in ("flair", "t1ce")}, label, affine, seed=7)
    patient = tmp_path / "clinic_0001"
    patient.mkdir()
    for seq, volume in head.channels.items():
        nib.save(nib.Nifti1Image(volume, head.affine), patient / f"clinic_0001_{seq}.nii.gz")
    out = tmp_path / "infer_head"
    run_bundle_stage(name, "inference", {**overrides, "input_path": str(patient), "output_dir": str(out)})
    shape = head.channels["flair"].shape
    (pred_path,) = sorted((out / "predictions").glob("*_seg.nii.gz"))
    (mask_path,) = sorted((out / "predictions").glob("*_brain_mask.nii.gz"))
    assert nib.load(pred_path).shape == shape
    mask = nib.load(mask_path)
    assert mask.shape == shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, head.affine, atol=1e-4)
    brain = np.asarray(mask.dataobj) > 0
    dice = 2 * (brain & head.brain).sum() / (brain.sum() + head.brain.sum())
    assert dice > 0.8, dice  # BET at 4 mm: coarse, but the brain and not the head
    (report,) = [json.loads(p.read_text()) for p in (out / "reports").glob("*_cascade.json")]
    assert report["input"] == {"sequences_used": "FLAIR+T1ce", "brain_extraction": "extracted"}


def test_brain_benchmarks_score_studies_with_some_sequences(trained, tmp_path, capsys):
    """benchmarks/sequence_subsets.py and benchmarks/real_scans.py run on the tiny model (figures not asserted:
    a one-epoch model), a datalist entry naming two sequences included."""
    name, overrides = trained
    if name != "brain":
        pytest.skip("sequence subsets are the brain bundle's")
    settings = [f"{k}={json.dumps(v)}" for k, v in overrides.items() if not isinstance(v, dict)]
    sets = [arg for pair in settings for arg in ("--set", pair)]
    assert (
        load_benchmark("sequence_subsets").main(
            [*sets, "--subsets", "FLAIR", "T1ce+FLAIR", "--json", str(tmp_path / "s.json")]
        )
        == 0
    )
    figures = json.loads((tmp_path / "s.json").read_text())
    assert set(figures["summary"]["mean_dice"]) == {"FLAIR", "T1ce+FLAIR"}
    assert {row["subset"] for row in figures["cases"]} == {"FLAIR", "T1ce+FLAIR"}

    datalist = json.loads(Path(overrides["data_list_file_path"]).read_text())
    entry = datalist["test"][0]
    root = Path(overrides["dataset_dir"])
    study = {
        "id": "two_sequences",
        "image": [str(root / entry["image"][i]) for i in (0, 2)],
        "sequences": ["FLAIR", "T1ce"],
    }
    real = tmp_path / "brain_real.json"
    real.write_text(json.dumps({"test": [{**study, "label": str(root / entry["label"])}], "unlabelled": []}))
    assert (
        load_benchmark("real_scans").main(["brain", "--datalist", str(real), *sets, "--json", str(tmp_path / "r.json")])
        == 0
    )
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert row["case"] == "two_sequences" and row["input"]["sequences_used"] == "FLAIR+T1ce"
    assert "full_whole_tumour_dice" in row and "cascade_whole_tumour_dice" in row
    out = capsys.readouterr().out
    assert "two_sequences: sequences used FLAIR+T1ce" in out
    # foreground on slices the label leaves empty: counted per mode, never more than those slices hold
    label = nib.load(root / entry["label"])
    empty_slices = int((~(np.asarray(label.dataobj) > 0).any(axis=(0, 1))).sum())
    for mode in ("cascade", "full"):
        assert 0 <= row[f"{mode}_voxels_beyond"] <= empty_slices * label.shape[0] * label.shape[1]
    assert f"voxels predicted on slices the label leaves empty: cascade {row['cascade_voxels_beyond']}, " in out


def _break_sequence_grid(files: list[Path], label: Path) -> str:
    """T1ce on another grid than the other sequences (not co-registered)."""
    source = nib.load(files[2])
    nib.save(nib.Nifti1Image(np.zeros((30, 40, 30), np.float32), source.affine), files[2])
    return str(files[2])


def _break_missing_sequence(files: list[Path], label: Path) -> str:
    files[3].unlink()
    return f"{files[3]}: file not found"


def _break_nan_sequence(files: list[Path], label: Path) -> str:
    source = nib.load(files[0])
    data = source.get_fdata().astype(np.float32)
    data[10, 10, 10] = np.nan
    nib.save(nib.Nifti1Image(data, source.affine), files[0])
    return str(files[0])


@pytest.mark.parametrize("breaker", [_break_sequence_grid, _break_missing_sequence, _break_nan_sequence])
def test_brain_bad_sequence_fails_before_training_naming_the_file(tmp_path, breaker):
    from pipelines.validation.errors import find_data_error

    from .conftest import bundle_workflow

    root, grid = _brain_data(tmp_path / "data")
    datalist = tmp_path / "datalist.json"
    build_brats_datalist(root, output_path=datalist, val_fraction=0.2, test_fraction=0.2, seed=0, relative_to=root)
    entry = json.loads(datalist.read_text())["training"][0]
    expected = breaker([root / f for f in entry["image"]], root / entry["label"])
    overrides = {**SHRINK, **grid, "dataset_dir": str(root), "data_list_file_path": str(datalist)}
    overrides |= {"output_dir": str(tmp_path / "out"), "ckpt_dir": str(tmp_path / "out" / "models")}
    workflow = bundle_workflow("brain", "train", overrides)
    with pytest.raises(RuntimeError) as err:  # ConfigParser wraps the error of a failing expression
        workflow.initialize()
    cause = find_data_error(err.value)
    assert cause is not None and expected in str(cause), str(err.value)


def test_ckpt_export_writes_torchscript_that_runs(trained, tmp_path):
    import torch
    from monai.bundle import ckpt_export

    name, overrides = trained
    workflow = get_workflow(name)
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(Path(overrides["ckpt_dir"]) / "model.pt"),
        meta_file=str(workflow.bundle_dir / "configs" / "metadata.json"),
        config_file=workflow.config_files("train")[:1],
        channels=SHRINK["channels"],
        strides=SHRINK["strides"],
        num_res_units=SHRINK["num_res_units"],
    )
    model = torch.jit.load(str(exported))
    in_channels = 4 if name == "brain" else 1
    with torch.no_grad():
        out = model(torch.zeros(1, in_channels, 32, 32, 16))
    assert out.shape == (1, len(workflow.classes), 32, 32, 16)


@pytest.mark.slow
def test_monai_bundle_run_command_trains_the_brain_bundle(tmp_path):
    import subprocess
    import sys

    from pipelines.workflows import REPO_ROOT

    root, grid = _brain_data(tmp_path / "data")
    datalist = tmp_path / "datalist.json"
    build_brats_datalist(root, output_path=datalist, val_fraction=0.2, test_fraction=0.2, seed=0, relative_to=root)
    overrides = {**SHRINK, **grid, "dataset_dir": str(root), "data_list_file_path": str(datalist)}
    overrides |= {"output_dir": str(tmp_path / "out"), "ckpt_dir": str(tmp_path / "out" / "models")}
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    files = get_workflow("brain").config_files("train")
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "out" / "models" / "model.pt").is_file()
    assert (tmp_path / "out" / "mlflow.db").is_file()
