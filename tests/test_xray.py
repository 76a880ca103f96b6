"""Tests of pipelines.xray.radiographs (reading, datalist checks, class batches, results saver) and
pipelines.evaluation.multiclass_metrics."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from PIL import Image

from pipelines.evaluation.classification_scores import roc_auc
from pipelines.evaluation.multiclass_metrics import (
    MulticlassClassificationMetrics,
    metric_key,
    multiclass_metric_handlers,
    multiclass_report,
    one_vs_rest_roc_auc,
)
from pipelines.models.classifiers import build_slice_classifier
from pipelines.validation.errors import DataError
from pipelines.xray.classifier_results import ClassificationResultsSaver
from pipelines.xray.radiographs import (
    PrepareClassBatch,
    check_radiograph,
    class_weights,
    list_xray_inputs,
    read_datalist_classes,
    to_grayscale,
    validate_xray_datalist,
)

CLASSES = ["COVID", "Normal", "Viral Pneumonia"]


def _png(path: Path, size=(24, 20), mode="L", value=100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full(size[::-1], value, np.uint8)
    pixels[2:6, 3:9] = 200
    image = Image.fromarray(pixels, mode="L")
    if mode != "L":
        image = image.convert(mode)
    image.save(path)
    return path


def _dataset(root: Path, per_class=(2, 2, 2), mask_size=(16, 16)) -> Path:
    """Images and masks in the Radiography Database layout and a datalist over them (all in "training")."""
    entries = []
    for k, (name, count) in enumerate(zip(CLASSES, per_class, strict=True)):
        for i in range(count):
            image = _png(root / name / "images" / f"{i}.png")
            _png(root / name / "masks" / f"{i}.png", size=mask_size, value=0)
            entries.append(
                {
                    "image": str(image.relative_to(root)),
                    "label": f"{name}/masks/{i}.png",
                    "class": k,
                    "class_name": name,
                }
            )
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"classes": CLASSES, "training": entries, "validation": [], "test": []}))
    return datalist


# ------------------------------------------------------------------------------------------------ reading


def test_to_grayscale_folds_colour_and_keeps_grey_depth(tmp_path):
    rgb = Image.fromarray(np.full((4, 5, 3), 77, np.uint8), mode="RGB")
    assert to_grayscale(rgb).mode == "L" and np.all(np.asarray(to_grayscale(rgb)) == 77)
    assert to_grayscale(rgb.convert("RGBA")).mode == "L"
    grey16 = Image.fromarray(np.full((4, 5), 40000, np.uint16))
    assert to_grayscale(grey16) is grey16
    grey = Image.fromarray(np.zeros((4, 5), np.uint8))
    assert to_grayscale(grey) is grey


def test_load_with_converter_gives_one_channel_for_rgb_png(tmp_path):
    grey = _png(tmp_path / "grey.png")
    rgb = _png(tmp_path / "rgb.png", mode="RGB")
    load = LoadImaged("image", reader="PILReader", converter=to_grayscale, image_only=True, ensure_channel_first=True)
    a, b = load({"image": str(grey)})["image"], load({"image": str(rgb)})["image"]
    assert a.shape == b.shape == (1, 24, 20)  # channel, width, height
    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------------ datalist


def test_read_datalist_classes(tmp_path):
    datalist = _dataset(tmp_path)
    assert read_datalist_classes(datalist) == CLASSES
    with pytest.raises(DataError, match="datalist file not found"):
        read_datalist_classes(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    for content, message in (
        ("{", "not valid JSON"),
        ('{"training": []}', "needs a 'classes' list"),
        ('{"classes": ["a"]}', "at least two"),
        ('{"classes": ["a", ""]}', "non-empty strings"),
        ('{"classes": ["a", "a"]}', "twice"),
    ):
        bad.write_text(content)
        with pytest.raises(DataError, match=message):
            read_datalist_classes(bad)


def test_class_weights_inverse_frequency(tmp_path):
    balanced = _dataset(tmp_path / "balanced")
    torch.testing.assert_close(class_weights(balanced, 3), torch.ones(3))
    skewed = _dataset(tmp_path / "skewed", per_class=(1, 3, 2))
    weights = class_weights(skewed, 3)
    torch.testing.assert_close(weights, torch.tensor([6 / 3, 6 / 9, 6 / 6]))
    assert weights.dtype == torch.float32
    with pytest.raises(DataError, match=r"no entry of class\(es\) \[3\]"):
        class_weights(skewed, 4)
    with pytest.raises(DataError, match="no non-empty 'test' section"):
        class_weights(skewed, 3, section="test")


def test_check_radiograph_finds_unusable_files(tmp_path):
    good = _png(tmp_path / "good.png", mode="RGB")
    assert check_radiograph(good) == []
    assert check_radiograph(tmp_path / "missing.png") == [f"{tmp_path / 'missing.png'}: file not found"]
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "file is empty" in check_radiograph(empty)[0]
    text = tmp_path / "text.png"
    text.write_text("not an image")
    assert "cannot be read as an image" in check_radiograph(text)[0]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_png(tmp_path / "big.png", size=(200, 200)).read_bytes()[:120])
    (problem,) = check_radiograph(truncated)
    assert problem.startswith(str(truncated)) and "cannot be read" in problem
    assert check_radiograph(truncated, check_intensity=False) == []  # the header alone looks fine


def test_validate_xray_datalist_accepts_masks_of_another_size(tmp_path):
    datalist = _dataset(tmp_path, mask_size=(16, 16))  # 24 x 20 images, 16 x 16 masks
    assert validate_xray_datalist(datalist, base_dir=tmp_path, keys=("training",)) == {"training": 6}


def test_validate_xray_datalist_reports_every_problem(tmp_path):
    datalist = _dataset(tmp_path)
    data = json.loads(datalist.read_text())
    entries = data["training"]
    (tmp_path / entries[0]["image"]).unlink()
    entries[1]["class"] = 7
    entries[2]["class"] = 0  # a Normal image given the COVID index: its class_name disagrees
    del entries[3]["label"]
    entries[4]["image"] = entries[5]["image"]
    datalist.write_text(json.dumps(data))
    with pytest.raises(DataError) as error:
        validate_xray_datalist(datalist, base_dir=tmp_path, keys=("training", "validation"))
    text = str(error.value)
    assert f"{tmp_path / entries[0]['image']}: file not found" in text
    assert "training[1]" in text and "outside [0, 3)" in text
    assert "training[2]" in text and "class 0 = 'COVID' but class_name 'Normal'" in text
    assert "training[3]" in text and "has no 'label'" in text
    assert "listed more than once" in text
    assert len(error.value.problems) == 5
    # a classification-only check does not need masks; a segmentation-only one ignores classes
    with pytest.raises(DataError) as error:
        validate_xray_datalist(datalist, base_dir=tmp_path, keys=("training",), require=("class",))
    assert "has no 'label'" not in str(error.value)
    with pytest.raises(DataError) as error:
        validate_xray_datalist(datalist, base_dir=tmp_path, keys=("training", "nope"), require=("label",))
    assert "section 'nope' is missing" in str(error.value)


def test_validate_xray_datalist_needs_classes_for_classification(tmp_path):
    datalist = _dataset(tmp_path)
    data = json.loads(datalist.read_text())
    del data["classes"]
    datalist.write_text(json.dumps(data))
    assert validate_xray_datalist(datalist, keys=("training",), require=("label",)) == {"training": 6}
    with pytest.raises(DataError, match="needs a 'classes' list"):
        validate_xray_datalist(datalist, keys=("training",), require=("class",))


def test_list_xray_inputs(tmp_path):
    datalist = _dataset(tmp_path / "db")
    data = json.loads(datalist.read_text())
    data["test"] = data["training"][:2]
    datalist.write_text(json.dumps(data))
    items = list_xray_inputs(datalist, base_dir=tmp_path / "db")
    assert items == [{"image": str(tmp_path / "db" / e["image"])} for e in data["test"]]
    folder = tmp_path / "folder"
    b, a = _png(folder / "b.PNG"), _png(folder / "a.jpg", mode="RGB")
    (folder / "notes.txt").write_text("x")
    _png(folder / ".hidden.png")
    assert list_xray_inputs(folder) == [{"image": str(a)}, {"image": str(b)}]
    assert list_xray_inputs(a) == [{"image": str(a)}]
    with pytest.raises(ValueError, match="does not exist"):
        list_xray_inputs(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a radiograph file"):
        list_xray_inputs(folder / "notes.txt")
    with pytest.raises(ValueError, match="holds no"):
        list_xray_inputs(tmp_path / "db" / "COVID")
    with pytest.raises(ValueError, match="no 'extra' section"):
        list_xray_inputs(datalist, section="extra")


def test_prepare_class_batch_reads_the_class_not_the_mask():
    batch = {"image": torch.zeros(2, 1, 8, 8), "label": ["m0.png", "m1.png"], "class": torch.tensor([2, 0])}
    image, target = PrepareClassBatch()(batch, torch.device("cpu"))
    assert image.shape == (2, 1, 8, 8)
    assert target.dtype == torch.long and target.tolist() == [2, 0]
    assert PrepareClassBatch()({"image": torch.zeros(1, 1, 4, 4)})[1] is None


# --------------------------------------------------------------------------------------------- metrics


def fixed_example():
    """9 samples of 3 classes with known confusion matrix [[2, 1, 0], [0, 3, 0], [1, 0, 2]]."""
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_prob = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.3, 0.5, 0.2],
            [0.5, 0.1, 0.4],
            [0.1, 0.1, 0.8],
            [0.2, 0.1, 0.7],
        ]
    )
    return y_true, y_prob


def test_multiclass_report_matches_hand_computed_values():
    y_true, y_prob = fixed_example()
    report = multiclass_report(y_true, y_prob, CLASSES)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 3, 0], [1, 0, 2]]
    assert report["num_samples"] == 9 and report["accuracy"] == pytest.approx(7 / 9)
    covid, normal, viral = (report["per_class"][c] for c in CLASSES)
    assert covid["precision"] == pytest.approx(2 / 3) and covid["recall"] == pytest.approx(2 / 3)
    assert normal["precision"] == pytest.approx(3 / 4) and normal["recall"] == 1.0
    assert viral["precision"] == 1.0 and viral["recall"] == pytest.approx(2 / 3)
    assert normal["f1"] == pytest.approx(2 * 0.75 / 1.75) and covid["support"] == 3
    f1s = [covid["f1"], normal["f1"], viral["f1"]]
    assert report["macro_f1"] == pytest.approx(np.mean(f1s))
    aucs = [roc_auc(y_true == k, y_prob[:, k]) for k in range(3)]
    assert [covid["roc_auc"], normal["roc_auc"], viral["roc_auc"]] == pytest.approx(aucs)
    assert report["roc_auc"] == pytest.approx(np.mean(aucs))
    json.dumps(report)  # plain Python values only


def test_one_vs_rest_auc_skips_classes_without_both_outcomes():
    macro, per_class = one_vs_rest_roc_auc(
        [0, 0, 1, 1], np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0]])
    )
    assert per_class[:2].tolist() == [1.0, 1.0] and math.isnan(per_class[2]) and macro == 1.0
    macro, _ = one_vs_rest_roc_auc([1, 1], np.array([[0.5, 0.5], [0.2, 0.8]]))
    assert math.isnan(macro)
    report = multiclass_report([1, 1], np.array([[0.5, 0.5], [0.2, 0.8]]), ["a", "b"])
    assert report["roc_auc"] is None and report["per_class"]["a"]["roc_auc"] is None
    with pytest.raises(ValueError, match="class indices in"):
        one_vs_rest_roc_auc([0, 3], np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="one per class"):
        multiclass_report([0], np.ones((1, 2)), CLASSES)
    with pytest.raises(ValueError, match="at least one sample"):
        multiclass_report([], np.zeros((0, 3)), CLASSES)


def test_metric_key():
    assert [metric_key(c) for c in ("Viral Pneumonia", "Lung_Opacity", "COVID-19 ")] == [
        "viral_pneumonia",
        "lung_opacity",
        "covid_19",
    ]


def _engine_with(metrics: dict, batches: list) -> Engine:
    engine = Engine(lambda engine, batch: batch)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(batches, max_epochs=1)
    return engine


def test_ignite_handlers_equal_the_report_on_decollated_output():
    y_true, y_prob = fixed_example()
    logits = torch.log(torch.as_tensor(y_prob, dtype=torch.float32))  # softmax(log p) = p
    # decollated MONAI output: one {"pred": (K,), "label": ()} per sample, in batches of 4, 4 and 1
    batches = [
        [{"pred": logits[i], "label": torch.tensor(y_true[i])} for i in range(start, min(start + 4, 9))]
        for start in (0, 4, 8)
    ]
    handlers = multiclass_metric_handlers("val_", CLASSES)
    assert list(handlers)[:5] == [
        "val_accuracy",
        "val_macro_precision",
        "val_macro_recall",
        "val_macro_f1",
        "val_roc_auc",
    ]
    assert "val_viral_pneumonia_recall" in handlers and "val_covid_precision" in handlers
    metrics = _engine_with(handlers, batches).state.metrics
    # the same probabilities as the metric's softmax, to the last bit (float32 rounding may break ties of y_prob)
    report = multiclass_report(y_true, torch.softmax(logits, dim=1).numpy(), CLASSES)
    assert report["accuracy"] == pytest.approx(7 / 9)
    assert metrics["val_accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["val_macro_f1"] == pytest.approx(report["macro_f1"])
    assert metrics["val_roc_auc"] == pytest.approx(report["roc_auc"])
    assert metrics["val_normal_precision"] == pytest.approx(report["per_class"]["Normal"]["precision"])
    with pytest.raises(ValueError, match="unknown per-class metric"):
        multiclass_metric_handlers("val_", CLASSES, per_class=("dice",))


def test_ignite_metric_accepts_one_hot_labels_and_rejects_bad_shapes():
    metric = MulticlassClassificationMetrics(["a", "b"], apply_softmax=False)
    with pytest.raises(NotComputableError):
        metric.compute()
    metric.update((torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1, 0], [0, 1]])))
    assert metric.compute()["accuracy"] == 1.0 and metric.compute()["b_recall"] == 1.0
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        metric.update((torch.zeros(2, 3), torch.zeros(2)))
    with pytest.raises(ValueError, match="different batch sizes"):
        metric.update((torch.zeros(2, 2), torch.zeros(3)))
    with pytest.raises(ValueError, match="at least two classes"):
        MulticlassClassificationMetrics(["a"])


# ----------------------------------------------------------------------------------------- results saver


def _run_saver(saver: ClassificationResultsSaver, network, samples: list[tuple[str, int | None]], logits) -> None:
    """Run an ignite engine whose single iteration gives ``samples`` as decollated MONAI batch and output."""
    batch, output = [], []
    for (name, label), pred in zip(samples, logits, strict=True):
        image = MetaTensor(torch.randn(1, 32, 32), meta={"filename_or_obj": name})
        batch.append({"image": image})
        output.append({"image": image, "pred": pred, "label": None if label is None else torch.tensor(label)})

    def step(engine, _):
        engine.state.batch = batch
        return output

    engine = Engine(step)
    engine.network = network
    saver.attach(engine)
    engine.run([0], max_epochs=1)


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    return build_slice_classifier("resnet18", in_channels=1, num_classes=3).eval()


def test_results_saver_writes_csv_metrics_confusion_matrix_and_gradcam(tmp_path, tiny_classifier):
    samples = [("/d/a.png", 0), ("/d/b.png", 0), ("/d/c.png", 1), ("/d/d.png", 2), ("/d/e.png", 2)]
    logits = torch.tensor([[3.0, 0, 0], [1.0, 2, 0], [0, 2.0, 0], [0, 0, 4.0], [0, 0, 1.0]])
    saver = ClassificationResultsSaver(tmp_path, CLASSES, gradcam_per_class=1, gradcam_layer="layer4")
    _run_saver(saver, tiny_classifier, samples, logits)
    with open(tmp_path / "classification.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "file",
        "true_class",
        "predicted_class",
        "prob_covid",
        "prob_normal",
        "prob_viral_pneumonia",
    ]
    assert [r["predicted_class"] for r in rows] == ["COVID", "Normal", "Normal", "Viral Pneumonia", "Viral Pneumonia"]
    assert rows[1]["true_class"] == "COVID" and rows[0]["file"] == "/d/a.png"
    assert sum(float(rows[0][f"prob_{metric_key(c)}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
    metrics = json.loads((tmp_path / "classification_metrics.json").read_text())
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 2]] and metrics["accuracy"] == 0.8
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # one overlay per true class: the most confident image of each (a, c, d)
    names = sorted(p.name for p in (tmp_path / "gradcam").glob("*.png"))
    assert names == ["a_covid_p0.91.png", "c_normal_p0.79.png", "d_viral_pneumonia_p0.96.png"]


def test_results_saver_without_labels_writes_predictions_only(tmp_path, tiny_classifier):
    saver = ClassificationResultsSaver(tmp_path, CLASSES, gradcam_per_class=None, gradcam_layer="layer4")
    _run_saver(saver, tiny_classifier, [("x.png", None), ("y.png", None)], torch.tensor([[0, 0, 1.0], [2.0, 0, 0]]))
    with open(tmp_path / "classification.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "true_class" not in rows[0] and [r["predicted_class"] for r in rows] == ["Viral Pneumonia", "COVID"]
    assert not (tmp_path / "classification_metrics.json").exists()
    assert len(list((tmp_path / "gradcam").glob("*.png"))) == 2  # every image when gradcam_per_class is None
    assert tiny_classifier.training is False


def test_results_saver_rejects_a_classifier_of_another_class_count(tmp_path, tiny_classifier):
    saver = ClassificationResultsSaver(tmp_path, ["a", "b"])
    with pytest.raises(ValueError, match="3 scores for 2 classes"):
        _run_saver(saver, tiny_classifier, [("x.png", None)], torch.zeros(1, 3))


def test_saver_resets_between_runs(tmp_path, tiny_classifier):
    saver = ClassificationResultsSaver(tmp_path, CLASSES)
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    saver.rows.append({"file": "stale"})
    engine.fire_event(Events.STARTED)
    assert saver.rows == []
