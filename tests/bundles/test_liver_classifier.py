"""The liver bundle's slice classifier (train, evaluate) and the cascade in inference.yaml, on tiny phantoms."""

import csv
import json
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

CLASSIFIER_OVERRIDES = {"classifier_image_size": [32, 32], "slices_per_volume": 4, "batch_size": 2}


@pytest.fixture(scope="module")
def trained_cascade(trained, liver_stage):
    """The tiny segmenter of ``trained`` plus a slice classifier trained for one epoch beside it."""
    overrides = {**trained, **CLASSIFIER_OVERRIDES}
    liver_stage("train_classifier", overrides, check=True)
    return overrides


def test_classifier_checkpoint_and_mlflow_run(trained_cascade):
    out = Path(trained_cascade["output_dir"])
    assert (out / "models" / "classifier.pt").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(trained_cascade["experiment_name"])
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name LIKE 'train_classifier_%'")
    assert run.info.status == "FINISHED"
    for name in ("val_accuracy", "val_precision", "val_recall", "val_specificity", "val_f1", "val_roc_auc"):
        assert name in run.data.metrics
    assert run.data.params["backbone"] == "resnet10-narrow" and run.data.params["pos_fraction"] == "0.5"


def test_evaluate_classifier_writes_slice_results_confusion_matrix_and_gradcam(trained_cascade, liver_stage):
    liver_stage("evaluate_classifier", trained_cascade)
    eval_dir = Path(trained_cascade["output_dir"]) / "eval_classifier"
    with open(eval_dir / "slice_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 0 and {"volume_id", "slice_index", "label", "probability", "prediction"} <= set(rows[0])
    metrics = json.loads((eval_dir / "classification_metrics.json").read_text())
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == len(rows)
    assert (eval_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gradcams = sorted((eval_dir / "gradcam").glob("*.png"))
    assert len(gradcams) == 2  # two slices of the single test volume


def test_cascade_inference_writes_report_and_keeps_geometry(trained_cascade, liver_stage, tmp_path):
    case = Path(trained_cascade["dataset_dir"]) / "imagesTr"
    source = sorted(case.glob("*.nii.gz"))[0]
    out = tmp_path / "infer"
    liver_stage("inference", {**trained_cascade, "input_path": str(source), "output_dir": str(out)})
    name = source.name[: -len(".nii.gz")]
    pred = nib.load(out / "predictions" / f"{name}_seg.nii.gz")
    image = nib.load(source)
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    report = json.loads((out / "reports" / f"{name}_cascade.json").read_text())
    assert len(report["slice_probabilities"]) == report["num_slices"]
    assert report["voxels_segmented"] <= report["voxels_total"]
    assert set(report["seconds"]) == {"classify", "segment", "total"}


def test_python_api_matches_the_bundle_on_paths_and_in_memory_images(trained_cascade, liver_stage, tmp_path):
    from pipelines.api import Segmenter

    source = sorted((Path(trained_cascade["dataset_dir"]) / "imagesTr").glob("*.nii.gz"))[-1]
    out = tmp_path / "infer"
    liver_stage("inference", {**trained_cascade, "input_path": str(source), "output_dir": str(out)})
    written = nib.load(out / "predictions" / f"{source.name[: -len('.nii.gz')]}_seg.nii.gz")

    overrides = {k: v for k, v in trained_cascade.items() if k not in ("max_epochs", "val_interval", "batch_size")}
    segment = Segmenter("liver", **overrides)
    from_path = segment(source)
    from_memory = segment(nib.load(source))
    np.testing.assert_array_equal(from_path[0].numpy(), np.asanyarray(written.dataobj))
    np.testing.assert_array_equal(from_memory.numpy(), from_path.numpy())
    np.testing.assert_allclose(from_memory.affine.numpy(), written.affine, atol=1e-4)
    assert segment.last_report is not None and segment.last_report["num_slices"] > 0
    with pytest.raises(ValueError, match="give a path, a nibabel image, or a MetaTensor"):
        segment(np.zeros((4, 4, 4)))


def test_the_gate_also_trains_on_the_datalists_negatives(tmp_path, shrink_overrides, liver_stage, make_liver_workflow):
    """A datalist ``negatives`` section (head CTs, empty labels) joins the classifier's training volumes, checked
    like the others; the segmenter's training does not read it."""
    from data_manifests.msd import build_msd_datalist
    from pipelines.phantoms.liver_ct import write_liver_phantom_task

    task = write_liver_phantom_task(
        tmp_path / "task", 4, seed=2, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0), negatives=1
    )
    datalist = task / "datalist.json"
    build_msd_datalist(task, val_fraction=0.25, test_fraction=0.25, seed=0, output_path=datalist, relative_to=task)
    overrides = {**shrink_overrides(task, datalist, tmp_path / "out"), **CLASSIFIER_OVERRIDES}
    workflow = liver_stage("train_classifier", overrides, check=True)
    volumes = [Path(item["image"]).name for item in workflow.parser.get_parsed_content("train_datalist")]
    assert len(volumes) == 3 and volumes[-1] == "head_ct_0.nii.gz"  # two training cases and the negative
    assert (tmp_path / "out" / "models" / "classifier.pt").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("test_liver").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["negatives_section"] == "negatives"
    segmenter = make_liver_workflow("train", overrides)
    assert len(segmenter.parser.get_parsed_content("train_datalist")) == 2  # the segmenter: training cases only


def test_off_target_benchmark_runs_a_head_ct_through_both_modes(trained_cascade, tmp_path, capsys):
    """``benchmarks/off_target.py liver`` on the tiny models (whether they leave the head empty is not asserted: a
    one-epoch gate): both head CTs written, each mode's foreground and the gate's slices reported."""
    from tests.benchmark_modules import load_benchmark

    sets = [a for k, v in trained_cascade.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    rc = load_benchmark("off_target").main(
        ["liver", *sets, "--scan-dir", str(tmp_path / "heads"), "--json", str(tmp_path / "o.json")]
    )
    figures = json.loads((tmp_path / "o.json").read_text())
    assert rc == (0 if figures["summary"]["empty"]["cascade"] and figures["summary"]["segmenter_skipped"] else 1)
    assert [row["scan"] for row in figures["scans"]] == ["head CT, 1 mm slices", "head CT, 5 mm slices"]
    for row in figures["scans"]:
        assert 0 <= row["kept"] <= row["segmented"] <= row["slices"] and row["full_voxels"] >= 0
    assert sorted(p.name for p in (tmp_path / "heads").iterdir()) == [
        "head_ct_seed0_1mm.nii.gz",
        "head_ct_seed0_5mm.nii.gz",
    ]
    assert "scans without the organ" in capsys.readouterr().out


def test_a_negatives_entry_outside_the_dataset_folder_is_refused_before_training(
    tmp_path, shrink_overrides, make_liver_workflow
):
    from data_manifests.msd import build_msd_datalist
    from pipelines.phantoms.liver_ct import write_liver_phantom_task
    from pipelines.validation.errors import find_data_error

    task = write_liver_phantom_task(tmp_path / "task", 3, seed=5, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0))
    datalist = task / "datalist.json"
    build_msd_datalist(task, val_fraction=0.34, test_fraction=0.0, seed=0, output_path=datalist, relative_to=task)
    sections = json.loads(datalist.read_text())
    sections["negatives"] = [{"image": "../outside.nii.gz", "label": "../outside_seg.nii.gz"}]
    datalist.write_text(json.dumps(sections))
    overrides = {**shrink_overrides(task, datalist, tmp_path / "out"), "validate_data": False}
    workflow = make_liver_workflow("train_classifier", overrides)
    with pytest.raises(RuntimeError) as err:  # ConfigParser wraps the error of a failing expression
        workflow.initialize()
    cause = find_data_error(err.value)
    assert cause is not None and "negatives[0] image" in str(cause) and "outside the dataset root" in str(cause)
    assert not (tmp_path / "out" / "models").exists()
