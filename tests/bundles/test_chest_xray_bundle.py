"""Smoke tests of the chest X-ray workflow of the lung bundle (``*_xray.yaml``): every stage runs through MONAI's
ConfigWorkflow on tiny phantom radiographs, with one RGB image and one mask of another size than its image;
inference also reads DICOM (MONOCHROME1, no suffix) and 16-bit PNG radiographs of another aspect ratio."""

import csv
import json
from collections import Counter
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from data_manifests.chest_xray import build_chest_xray_datalist
from pipelines.api import RadiographSegmenter
from pipelines.phantoms.chest_xray import write_chest_xray_phantom_dataset
from pipelines.validation.errors import find_data_error
from pipelines.workflows import STAGE_TYPES, get_workflow
from tests.benchmark_modules import load_benchmark
from tests.radiograph_files import write_radiograph_dicom

WORKFLOW = get_workflow("chest_xray")
CLASSES = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]


def xray_workflow(stage: str, overrides: dict) -> ConfigWorkflow:
    """A ``ConfigWorkflow`` of one stage of the chest X-ray workflow, not yet initialised."""
    return ConfigWorkflow(
        config_file=WORKFLOW.config_files(stage),
        meta_file=str(WORKFLOW.bundle_dir / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=STAGE_TYPES[stage],
        **overrides,
    )


def run_xray_stage(stage: str, overrides: dict) -> ConfigWorkflow:
    """Run one stage (initialize, run, finalize); the standard ids are checked for train and inference stages."""
    workflow = xray_workflow(stage, overrides)
    workflow.initialize()
    if stage in ("train", "train_classifier", "inference"):
        assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return workflow


def write_tiny_dataset(root: Path, num_per_class: int = 4, seed: int = 1) -> Path:
    """64 px phantoms of the four classes and their datalist; the first training image is made RGB and its mask
    48 px, as the real database mixes them. Returns the datalist."""
    write_chest_xray_phantom_dataset(root, num_per_class=num_per_class, seed=seed, size=64)
    datalist = root / "datalist.json"
    build_chest_xray_datalist(root, output_path=datalist, val_fraction=0.2, test_fraction=0.2, seed=0, relative_to=root)
    first = json.loads(datalist.read_text())["training"][0]
    Image.open(root / first["image"]).convert("RGB").save(root / first["image"])
    Image.open(root / first["label"]).resize((48, 48), Image.NEAREST).save(root / first["label"])
    return datalist


def shrink_overrides(root: Path, datalist: Path, out: Path) -> dict:
    """Ids that make every stage run in seconds on the CPU."""
    return {
        "dataset_dir": str(root),
        "data_list_file_path": str(datalist),
        "output_dir": str(out),
        "ckpt_dir": str(out / "models"),
        "image_size": [32, 32],
        "channels": [4, 8, 16],
        "strides": [2, 2],
        "num_res_units": 1,
        "classifier_image_size": [32, 32],
        "max_epochs": 1,
        "val_interval": 1,
        "batch_size": 4,
        "cache_rate": 0.0,
        "num_workers": 0,
    }


@pytest.fixture(scope="module")
def tiny_xray(tmp_path_factory) -> dict:
    """Overrides locating a tiny dataset and an output folder shared by the module's runs (one MLflow store)."""
    root = tmp_path_factory.mktemp("COVID-19_Radiography_tiny")
    datalist = write_tiny_dataset(root)
    return shrink_overrides(root, datalist, tmp_path_factory.mktemp("xray_run"))


@pytest.fixture(scope="module")
def trained_segmenter(tiny_xray) -> dict:
    run_xray_stage("train", tiny_xray)
    return tiny_xray


@pytest.fixture(scope="module")
def trained_classifier(tiny_xray) -> dict:
    run_xray_stage("train_classifier", tiny_xray)
    return tiny_xray


def _runs(overrides: dict, experiment: str, prefix: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(overrides['output_dir']) / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return [r for r in client.search_runs([experiment_id]) if r.info.run_name.startswith(prefix)]


def _test_entries(overrides: dict) -> list[dict]:
    return json.loads(Path(overrides["data_list_file_path"]).read_text())["test"]


def test_train_writes_checkpoint_and_finished_mlflow_run(trained_segmenter):
    assert (Path(trained_segmenter["ckpt_dir"]) / "model_xray.pt").is_file()
    (run,) = _runs(trained_segmenter, "chest_xray_segmentation", "train_")
    assert run.info.status == "FINISHED"
    assert run.data.params["image_size"] == "[32, 32]" and run.data.params["rotate_degrees"] == "10"
    assert {"train_loss", "val_mean_dice", "val_lung_dice"} <= set(run.data.metrics)
    assert 0.0 <= run.data.metrics["val_lung_dice"] <= 1.0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(trained_segmenter['output_dir']) / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_xray.pt", "common_xray.yaml", "train_xray.yaml"} <= artifacts


def test_evaluate_writes_per_image_dice_and_the_report(trained_segmenter):
    run_xray_stage("evaluate", trained_segmenter)
    eval_dir = Path(trained_segmenter["output_dir"]) / "eval"
    with open(eval_dir / "test_lung_dice_raw.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "filename" and len(rows) == 1 + len(_test_entries(trained_segmenter))
    assert rows[1][0].endswith(".png")
    summary = (eval_dir / "metrics.csv").read_text()
    assert "test_mean_dice" in summary and "test_lung_dice" in summary
    (run,) = _runs(trained_segmenter, "chest_xray_segmentation", "evaluate_")
    assert run.info.status == "FINISHED" and 0.0 <= run.data.metrics["test_lung_dice"] <= 1.0
    # the report: a row per radiograph (and the mean), Dice and areas, one upright overlay each, logged
    entries = _test_entries(trained_segmenter)
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == len(entries) + 1 and "Area predicted (% of image)" in page
    overlays = sorted(p.name for p in (eval_dir / "overlays").iterdir())
    assert len(overlays) == len(entries) and all(f'src="overlays/{name}"' in page for name in overlays)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(trained_segmenter['output_dir']) / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/report.html", "eval/overlays"} <= logged


def test_train_classifier_writes_checkpoint_and_multiclass_metrics(trained_classifier):
    assert (Path(trained_classifier["ckpt_dir"]) / "classifier_xray.pt").is_file()
    (run,) = _runs(trained_classifier, "chest_xray_classification", "train_classifier_")
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "resnet18" and run.data.params["class_weighted_loss"] == "True"
    for name in ("val_accuracy", "val_macro_f1", "val_roc_auc", "val_covid_recall", "val_viral_pneumonia_precision"):
        assert name in run.data.metrics, name


def test_evaluate_classifier_writes_metrics_confusion_matrix_and_gradcam(trained_classifier):
    run_xray_stage("evaluate_classifier", trained_classifier)
    eval_dir = Path(trained_classifier["output_dir"]) / "eval_classifier"
    tests = _test_entries(trained_classifier)
    metrics = json.loads((eval_dir / "classification_metrics.json").read_text())
    assert metrics["class_names"] == CLASSES and metrics["num_samples"] == len(tests)
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(tests)
    assert {"accuracy", "macro_f1", "roc_auc", "per_class"} <= set(metrics)
    assert (eval_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(eval_dir / "classification.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["true_class"] for r in rows] == [e["class_name"] for e in tests]
    per_class = Counter(e["class_name"] for e in tests)
    assert len(list((eval_dir / "gradcam").glob("*.png"))) == sum(min(2, n) for n in per_class.values())
    (run,) = _runs(trained_classifier, "chest_xray_classification", "evaluate_classifier_")
    assert run.info.status == "FINISHED" and "test_macro_f1" in run.data.metrics


def test_inference_writes_masks_of_the_input_size_and_classification_csv(
    trained_segmenter, trained_classifier, tmp_path
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    grey = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)  # 70 wide, 50 high
    Image.fromarray(grey).convert("RGB").save(inputs / "wide_rgb.png")  # a grey radiograph saved as RGB
    source = Path(trained_segmenter["dataset_dir"]) / _test_entries(trained_segmenter)[0]["image"]
    Image.open(source).save(inputs / "grey.png")
    out = tmp_path / "infer"
    run_xray_stage(
        "inference", {**trained_segmenter, "input_path": str(inputs), "output_dir": str(out), "gradcam": True}
    )
    predictions = out / "predictions"
    for name, size in (("wide_rgb", (70, 50)), ("grey", (64, 64))):
        mask = Image.open(predictions / f"{name}_mask.png")
        assert mask.size == size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    with open(predictions / "classification.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["file"]).name for r in rows] == ["grey.png", "wide_rgb.png"]
    assert all(r["predicted_class"] in CLASSES for r in rows)
    probabilities = [[float(r[f"prob_{c.lower().replace(' ', '_')}"]) for c in CLASSES] for r in rows]
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-4)
    assert len(list((predictions / "gradcam").glob("*.png"))) == 2


def test_inference_reads_dicom_and_16_bit_png_as_the_same_radiograph(trained_segmenter, trained_classifier, tmp_path):
    """One phantom radiograph, cropped to 64 x 48 (the network pads it to a square), written as an 8-bit PNG, a
    16-bit PNG and a 12-bit MONOCHROME1 DICOM without suffix: the reader gives the same image up to grey-level
    scaling, so the three masks agree, each at 64 x 48 and not transposed. A colour photograph is refused."""
    source = Path(trained_segmenter["dataset_dir"]) / _test_entries(trained_segmenter)[0]["image"]
    grey = np.asarray(Image.open(source).convert("L"))[8:56]  # 48 rows, 64 columns
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(grey).save(inputs / "a8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(inputs / "b16.png")
    stored = (4095 - grey.astype(np.uint16) * 16).astype(np.uint16)  # MONOCHROME1: bright is low
    write_radiograph_dicom(
        inputs / "IM0001",
        stored,
        modality="DX",
        photometric="MONOCHROME1",
        PixelSpacing=[0.2, 0.15],
        WindowCenter=2048,
        WindowWidth=4096,
        ViewPosition="PA",
    )
    photo = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo, mode="RGB").save(inputs / "photo.png")
    out = tmp_path / "infer"
    run_xray_stage("inference", {**trained_segmenter, "input_path": str(inputs), "output_dir": str(out)})
    predictions = out / "predictions"
    masks = {}
    for name in ("a8", "b16", "IM0001"):
        mask = Image.open(predictions / f"{name}_mask.png")
        assert mask.size == (64, 48), name  # width, height of the input
        masks[name] = np.asarray(mask)
    assert 0 < (masks["a8"] > 0).mean() < 1  # neither empty nor full: the comparison means something
    assert (masks["a8"] == masks["b16"]).mean() > 0.999 and (masks["a8"] == masks["IM0001"]).mean() > 0.999
    report = json.loads((predictions / "failures.json").read_text())
    assert [(f["case"], f["stage"]) for f in report["failures"]] == [("photo", "input check")]
    assert "a colour image" in report["failures"][0]["error"]
    with open(predictions / "classification.csv") as handle:
        assert sorted(Path(r["file"]).name for r in csv.DictReader(handle)) == ["IM0001", "a8.png", "b16.png"]
    # the DICOM's pixel spacing reaches a NIfTI mask
    nifti = tmp_path / "nifti"
    run_xray_stage(
        "inference",
        {**trained_segmenter, "input_path": str(inputs / "IM0001"), "output_dir": str(nifti), "mask_ext": ".nii.gz"},
    )
    mask = nib.load(nifti / "predictions" / "IM0001_mask.nii.gz")
    assert mask.shape == (64, 48)
    np.testing.assert_allclose(mask.header.get_zooms()[:2], (0.15, 0.2))
    np.testing.assert_array_equal(np.asarray(mask.dataobj).T * 255, masks["IM0001"])


def test_radiograph_segmenter_gives_the_stage_mask_and_classification(trained_segmenter, trained_classifier, tmp_path):
    """The Python API (``pipelines.api.RadiographSegmenter``, which MONAI Label serves) runs the stage's own config
    ids: on a 70 x 50 radiograph its mask is the inference stage's PNG mask, value for value, and its classification
    the stage's classification.csv row."""
    source = Path(trained_segmenter["dataset_dir"]) / _test_entries(trained_segmenter)[0]["image"]
    image = tmp_path / "wide.png"
    Image.open(source).convert("L").resize((70, 50)).save(image)
    out = tmp_path / "infer"
    run_xray_stage("inference", {**trained_segmenter, "input_path": str(image), "output_dir": str(out)})
    stage_mask = np.asarray(Image.open(out / "predictions" / "wide_mask.png"))
    with open(out / "predictions" / "classification.csv") as handle:
        (row,) = list(csv.DictReader(handle))

    ids = {k: v for k, v in trained_segmenter.items() if k not in ("max_epochs", "batch_size", "cache_rate")}
    segment = RadiographSegmenter(**ids)
    mask = segment(image)
    assert mask.shape == (1, 70, 50) and mask.dtype == torch.uint8  # (1, width, height), the input's size
    np.testing.assert_array_equal(mask[0].numpy().T * 255, stage_mask)
    answer = segment.last_classification
    assert answer["predicted_class"] == row["predicted_class"]
    for name, p in answer["probabilities"].items():
        assert p == pytest.approx(float(row[f"prob_{name.lower().replace(' ', '_')}"]), abs=1e-5)
    with pytest.raises(ValueError, match="not a radiograph workflow"):
        RadiographSegmenter("liver")


def test_inference_writes_nifti_masks_on_request(trained_segmenter, trained_classifier, tmp_path):
    source = Path(trained_segmenter["dataset_dir"]) / _test_entries(trained_segmenter)[0]["image"]
    out = tmp_path / "infer"
    run_xray_stage(
        "inference", {**trained_segmenter, "input_path": str(source), "output_dir": str(out), "mask_ext": ".nii.gz"}
    )
    mask = nib.load(out / "predictions" / f"{source.stem}_mask.nii.gz")
    assert mask.shape == (64, 64) and set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1}


def test_inference_skips_and_reports_bad_radiographs(trained_segmenter, trained_classifier, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    source = Path(trained_segmenter["dataset_dir"]) / _test_entries(trained_segmenter)[0]["image"]
    Image.open(source).save(inputs / "good.png")
    data = source.read_bytes()
    (inputs / "cut.png").write_bytes(data[: len(data) // 2])  # truncated mid-stream
    (inputs / "empty.png").write_bytes(b"")
    out = tmp_path / "infer"
    run_xray_stage("inference", {**trained_segmenter, "input_path": str(inputs), "output_dir": str(out)})
    predictions = out / "predictions"
    report = json.loads((predictions / "failures.json").read_text())
    assert (report["total"], report["segmented"], report["failed"]) == (3, 1, 2)
    assert sorted((f["case"], f["stage"]) for f in report["failures"]) == [
        ("cut", "input check"),
        ("empty", "input check"),
    ]
    assert all(f["error"].startswith(f["file"]) for f in report["failures"])
    assert [p.name for p in predictions.glob("*_mask.png")] == ["good_mask.png"]
    with open(predictions / "classification.csv") as handle:
        assert [Path(r["file"]).name for r in csv.DictReader(handle)] == ["good.png"]


def _truncate_image(root: Path, entry: dict) -> tuple[str, str]:
    path = root / entry["image"]
    path.write_bytes(path.read_bytes()[:100])
    return "train", str(path)


def _delete_mask(root: Path, entry: dict) -> tuple[str, str]:
    (root / entry["label"]).unlink()
    return "train", f"{root / entry['label']}: file not found"


def _class_out_of_range(root: Path, entry: dict) -> tuple[str, str]:
    datalist = root / "datalist.json"
    data = json.loads(datalist.read_text())
    data["training"][0]["class"] = 9
    datalist.write_text(json.dumps(data))
    return "train_classifier", "has class 9, outside [0, 4)"


@pytest.mark.parametrize("breaker", [_truncate_image, _delete_mask, _class_out_of_range])
def test_bad_input_fails_before_training_naming_the_problem(tmp_path, breaker):
    root = tmp_path / "data"
    datalist = write_tiny_dataset(root, num_per_class=2, seed=5)
    stage, expected = breaker(root, json.loads(datalist.read_text())["training"][0])
    workflow = xray_workflow(stage, shrink_overrides(root, datalist, tmp_path / "out"))
    with pytest.raises(RuntimeError) as error:  # ConfigParser wraps the error of a failing expression
        workflow.initialize()
    cause = find_data_error(error.value)
    assert cause is not None and expected in str(cause), str(error.value)
    assert not (tmp_path / "out" / "models").exists()


def test_segmenter_network_def_maps_a_radiograph_to_two_class_logits():
    parser = ConfigParser()
    parser.read_config(WORKFLOW.config_files("train")[:1])
    parser.update({"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "device": "cpu"})
    with torch.no_grad():
        out = parser.get_parsed_content("network_def")(torch.zeros(2, 1, 64, 48))
    assert out.shape == (2, 2, 64, 48)


def test_real_scans_benchmark_scores_radiographs_and_summarises_them_per_source(
    trained_segmenter, trained_classifier, tmp_path, capsys
):
    """``benchmarks/real_scans.py chest_xray`` on radiographs with masks named as the real collection's cases: Dice
    per radiograph at the input's size, the summary per source, only the lowest cases when there are many; and on
    radiographs with a finding and no mask (the ``findings`` section): the classifier against the findings."""
    bench = load_benchmark("real_scans")
    root = Path(trained_segmenter["dataset_dir"])
    sections = json.loads(Path(trained_segmenter["data_list_file_path"]).read_text())
    entries = (sections["test"] + sections["validation"] + sections["training"])[:5]
    items = [
        {"id": f"cxr_{source}_{i:04d}_0", "image": str(root / e["image"]), "label": str(root / e["label"])}
        for i, (source, e) in enumerate(zip(["mcucxr", "chncxr", "chncxr"], entries[:3], strict=True))
    ]
    findings = [
        {"id": "cxr_figure1_covid-00001", "image": str(root / entries[3]["image"]), "finding": "COVID-19",
         "class_name": "COVID"},
        {"id": "cxr_figure1_covid-00002", "image": str(root / entries[4]["image"]), "finding": "No finding",
         "class_name": "Normal"},
    ]  # fmt: skip
    datalist = tmp_path / "chest_xray_real.json"
    datalist.write_text(json.dumps({"training": [], "test": items, "findings": findings, "unlabelled": []}))
    sets = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in trained_segmenter.items()]
    bench.PER_CASE_LIMIT, bench.WORST_SHOWN = 2, 1  # as with the 704: the lowest cases only
    args = ["chest_xray", "--datalist", str(datalist), "--json", str(tmp_path / "rows.json")]
    assert bench.main([*args, *sum((["--set", s] for s in sets), [])]) == 0
    figures = json.loads((tmp_path / "rows.json").read_text())
    rows = figures["rows"]
    assert [r["case"] for r in rows] == [item["id"] for item in items + findings]
    scored = [r for r in rows if "lung_dice" in r]
    assert len(scored) == 3 and all(0.0 <= r["lung_dice"] <= 1.0 for r in scored)
    assert all(r["size_kept"] and r["class"] in CLASSES for r in rows)
    out = capsys.readouterr().out
    assert "chest_xray: 5 real radiograph(s)" in out and "0 failed" in out
    assert "the failures and the 1 lowest Dice of 5 (every case in --json)" in out
    lowest = min(scored, key=lambda r: r["lung_dice"])
    assert sum(f"  {r['case']}: lung Dice" in out for r in rows) == 1 and f"  {lowest['case']}: lung Dice" in out
    dice = np.array([r["lung_dice"] for r in scored])
    assert f"lung Dice, all (3 radiographs): mean {dice.mean():.3f}, median {np.median(dice):.3f}" in out
    assert "lung Dice, mcucxr (1 radiographs)" in out and "lung Dice, chncxr (2 radiographs)" in out

    # the classifier against the two findings: counts, accuracy and the AUCs from the written probabilities
    covid, normal = rows[3], rows[4]
    assert (covid["finding"], covid["true_class"], normal["true_class"]) == ("COVID-19", "COVID", "Normal")
    summary = figures["classification"]
    assert summary["called"] == {"COVID-19": {covid["class"]: 1}, "No finding": {normal["class"]: 1}}
    assert summary["accuracy"] == ((covid["class"] == "COVID") + (normal["class"] == "Normal")) / 2
    p_covid = [r["class_probabilities"]["covid"] for r in (covid, normal)]
    assert summary["covid_auc"] == (1.0 if p_covid[0] > p_covid[1] else 0.5 if p_covid[0] == p_covid[1] else 0.0)
    assert "classifier on 2 real radiographs with a finding (evaluation only):" in out
    assert f"  COVID-19 (1): called {covid['class']} 1" in out and "ROC AUC of p(COVID), COVID-19 vs the rest" in out


def test_rank_auc_counts_ties_half_and_needs_both_groups():
    bench = load_benchmark("real_scans")
    assert bench.rank_auc([0.9, 0.8], [0.1, 0.8]) == (2 + 1 + 0.5) / 4
    assert bench.rank_auc([0.5], []) is None
