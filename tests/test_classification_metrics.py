"""Tests of pipelines.evaluation.classification_metrics: numpy metrics, PNG and CSV outputs, ignite metrics in MONAI."""

import itertools
import math
import warnings

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator

from pipelines.evaluation.classification_metrics import SliceClassificationMetrics, metric_handlers
from pipelines.evaluation.classification_outputs import (
    read_slice_results_csv,
    save_confusion_matrix_png,
    write_slice_results_csv,
)
from pipelines.evaluation.classification_scores import (
    SCALAR_METRICS,
    binary_metrics,
    binary_metrics_from_counts,
    confusion_matrix,
    multiclass_metrics,
    roc_auc,
)


def fixed_example() -> tuple[np.ndarray, np.ndarray]:
    """100 samples with tp=40 (score 0.9), fn=5 (0.2), fp=10 (0.7), tn=45 (0.1) at threshold 0.5."""
    y_true = np.array([1] * 40 + [1] * 5 + [0] * 10 + [0] * 45)
    y_score = np.array([0.9] * 40 + [0.2] * 5 + [0.7] * 10 + [0.1] * 45)
    return y_true, y_score


def brute_force_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    positives = y_score[y_true == 1]
    negatives = y_score[y_true == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(cm, [[1, 1], [1, 2]])
    cm3 = confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), num_classes=3)
    np.testing.assert_array_equal(cm3, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(confusion_matrix([True, False], [1.0, 0.0]), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(confusion_matrix([], []), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1])
    with pytest.raises(ValueError, match="integer class indices"):
        confusion_matrix([0, 0.5], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0], [0], num_classes=1)


def test_binary_metrics_on_a_fixed_confusion_matrix():
    y_true, y_score = fixed_example()
    metrics = binary_metrics(y_true, y_score, threshold=0.5)
    tp, fp, tn, fn = 40, 10, 45, 5
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (tp, fp, tn, fn)
    assert all(isinstance(metrics[key], int) for key in ("tp", "fp", "tn", "fn"))
    assert metrics["accuracy"] == pytest.approx((40 + 45) / 100)  # 0.85
    assert metrics["precision"] == pytest.approx(40 / (40 + 10))  # 0.8
    assert metrics["recall"] == pytest.approx(40 / (40 + 5))  # 0.8889 (sensitivity)
    assert metrics["specificity"] == pytest.approx(45 / (45 + 10))  # 0.8182
    precision, recall = 0.8, 40 / 45
    assert metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))  # = 80 / 95
    assert metrics["f1"] == pytest.approx(80 / 95)
    # AUC by pairs (45 positives x 55 negatives = 2475): the 40 positives at 0.9 beat all 55 negatives (2200),
    # the 5 positives at 0.2 beat the 45 negatives at 0.1 (225) and lose to the 10 at 0.7: 2425 / 2475.
    assert metrics["roc_auc"] == pytest.approx(2425 / 2475)
    assert set(metrics) == set(SCALAR_METRICS) | {"tp", "fp", "tn", "fn"}


def test_threshold_is_inclusive_and_moves_predictions():
    metrics = binary_metrics([0, 1, 1], [0.3, 0.5, 0.6], threshold=0.5)
    assert (metrics["tp"], metrics["fn"]) == (2, 0)
    metrics = binary_metrics([0, 1, 1], [0.3, 0.5, 0.6], threshold=0.55)
    assert (metrics["tp"], metrics["fn"]) == (1, 1)


def test_zero_denominators_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
        counts = binary_metrics_from_counts(0, 0, 0, 0)
    assert metrics["precision"] == 0.0  # nothing predicted positive
    assert metrics["recall"] == 0.0  # no positive sample
    assert metrics["f1"] == 0.0
    assert metrics["specificity"] == 1.0
    assert metrics["accuracy"] == 1.0
    assert counts == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "specificity": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="non-negative integer"):
        binary_metrics_from_counts(-1, 0, 0, 0)


def test_roc_auc_hand_checked_with_ties():
    y_true = [0, 0, 1, 1, 0, 1]
    y_score = [0.1, 0.4, 0.4, 0.8, 0.8, 0.9]
    # positive 0.4: beats 0.1, ties 0.4 -> 1.5; positive 0.8: beats 0.1 and 0.4, ties 0.8 -> 2.5; 0.9: 3 -> 7 / 9
    assert roc_auc(y_true, y_score) == pytest.approx(7 / 9)
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([0, 1], [0.8, 0.2]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # logits work too: only the order matters
    assert roc_auc(y_true, np.log(np.array(y_score))) == pytest.approx(7 / 9)


def test_roc_auc_matches_brute_force_pair_count_on_random_data():
    rng = np.random.default_rng(42)
    for size in (7, 50, 200):
        y_true = rng.integers(0, 2, size)
        y_true[:2] = [0, 1]
        y_score = np.round(rng.random(size), 1)  # rounding makes many ties
        assert roc_auc(y_true, y_score) == pytest.approx(brute_force_auc(y_true, y_score), abs=1e-12)
        y_score = rng.random(size)
        assert roc_auc(y_true, y_score) == pytest.approx(brute_force_auc(y_true, y_score), abs=1e-12)


def test_single_class_gives_nan_auc_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.6, 0.9]))
        assert math.isnan(roc_auc(np.zeros(4), [0.2, 0.6, 0.9, 0.1]))
        metrics = binary_metrics([1, 1, 1, 1], [0.2, 0.6, 0.9, 0.7])
    assert math.isnan(metrics["roc_auc"])
    assert metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == 0.0


@pytest.mark.parametrize(
    ("y_true", "y_score", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], r"class indices in \[0, 2\)"),
        ([0, 1], [0.1, np.nan], "finite"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([], [], "at least one sample"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 1], ["a", "b"], "numbers"),
    ],
)
def test_invalid_inputs_raise(y_true, y_score, message):
    with pytest.raises(ValueError, match=message):
        binary_metrics(y_true, y_score)
    with pytest.raises(ValueError, match=message):
        roc_auc(y_true, y_score)


def test_invalid_threshold_raises():
    with pytest.raises(ValueError, match="threshold"):
        binary_metrics([0, 1], [0.1, 0.9], threshold=float("nan"))


def test_multiclass_metrics():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    metrics = multiclass_metrics(y_true, y_pred, num_classes=3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # class 0: tp 1, predicted 2, actual 2; class 1: tp 2, predicted 3, actual 2; class 2: tp 1, predicted 1, actual 2
    np.testing.assert_allclose(metrics["precision"], [1 / 2, 2 / 3, 1 / 1])
    np.testing.assert_allclose(metrics["recall"], [1 / 2, 2 / 2, 1 / 2])
    np.testing.assert_allclose(metrics["f1"], [2 / 4, 4 / 5, 2 / 3])
    assert metrics["macro_f1"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        never_predicted = multiclass_metrics([0, 1, 2], [0, 0, 0], num_classes=3)
    np.testing.assert_allclose(never_predicted["precision"], [1 / 3, 0.0, 0.0])


def test_confusion_matrix_png(tmp_path):
    backend = matplotlib.get_backend()
    cm = confusion_matrix(*(lambda t, s: (t, (s >= 0.5).astype(int)))(*fixed_example()))
    path = save_confusion_matrix_png(cm, ["no liver", "liver"], tmp_path / "figures" / "cm.png", title="epoch 3")
    assert path == tmp_path / "figures" / "cm.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert 300 <= height <= 800 and 300 <= width <= 900
    assert image.std() > 0.01  # something was drawn
    assert sorted(p.name for p in path.parent.iterdir()) == ["cm.png"]  # no temporary file left behind
    assert matplotlib.get_backend() == backend
    # overwriting works, and a bigger matrix gives a bigger picture
    three = save_confusion_matrix_png(np.eye(3) * 7, ["a", "b", "c"], path)
    assert matplotlib.image.imread(three).shape[0] > height


def test_confusion_matrix_png_validation(tmp_path):
    with pytest.raises(ValueError, match="square"):
        save_confusion_matrix_png(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="class_names"):
        save_confusion_matrix_png(np.zeros((2, 2)), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-negative"):
        save_confusion_matrix_png(np.array([[1, -1], [0, 2]]), ["a", "b"], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_slice_results_csv_round_trip(tmp_path):
    rows = [
        {"volume_id": "liver_003", "slice_index": i, "label": i % 2, "probability": p, "prediction": int(p >= 0.5)}
        for i, p in enumerate([0.1, 0.73, 1 / 3, 0.5])
    ]
    rows[0]["fold"] = 2  # an extra column is kept
    rows[1]["label"] = None  # an unknown label is an empty cell
    rows[2]["probability"] = np.float32(0.25)
    path = write_slice_results_csv(rows, tmp_path / "out" / "slices.csv")
    assert path.read_text().splitlines()[0] == "volume_id,slice_index,label,probability,prediction,fold"
    back = read_slice_results_csv(path)
    assert [row["slice_index"] for row in back] == [0, 1, 2, 3]
    assert [row["label"] for row in back] == [0, None, 0, 1]
    assert [row["probability"] for row in back] == [0.1, 0.73, 0.25, 0.5]
    assert [row["prediction"] for row in back] == [0, 1, 0, 1]
    assert back[0]["volume_id"] == "liver_003" and back[0]["fold"] == "2" and back[1]["fold"] == ""
    assert sorted(p.name for p in path.parent.iterdir()) == ["slices.csv"]
    with pytest.raises(ValueError, match=r"row 1 lacks the key\(s\) \['probability'\]"):
        write_slice_results_csv([rows[0], {"volume_id": "a", "slice_index": 0, "label": 0, "prediction": 0}], path)
    assert len(read_slice_results_csv(path)) == 4  # the failed write left the old file alone


def test_slice_classification_metric_shapes():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.5], [0.3, 0.2], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    expected = binary_metrics(labels.numpy(), torch.softmax(logits, 1)[:, 1].numpy())
    probabilities = torch.softmax(logits, 1)
    cases = [
        ({}, (logits, labels)),
        ({}, (logits, labels[:, None])),
        ({}, (logits, torch.nn.functional.one_hot(labels, 2).float())),
        ({}, (list(logits), list(labels))),
        ({"apply_softmax": False}, (probabilities, labels)),
        ({}, (probabilities[:, 1], labels)),
        ({}, (probabilities[:, 1:], labels.float())),
        ({"apply_sigmoid": True}, ((logits[:, 1] - logits[:, 0])[:, None], labels)),
    ]
    for kwargs, batch in cases:
        metric = SliceClassificationMetrics(output_transform=lambda x: x, **kwargs)
        metric.update(batch)
        result = metric.compute()
        for key in SCALAR_METRICS:
            assert result[key] == pytest.approx(expected[key]), (kwargs, key)
    metric = SliceClassificationMetrics(output_transform=lambda x: x)
    with pytest.raises(NotComputableError):
        metric.compute()
    with pytest.raises(ValueError, match="y_pred must have shape"):
        metric.update((torch.zeros(4, 3), labels))
    with pytest.raises(ValueError, match="different batch sizes"):
        metric.update((logits, labels[:3]))


def make_batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch_size in (5, 3, 6):
        image = torch.randn(batch_size, 4, generator=generator)
        label = (image[:, 0] + 0.5 * torch.randn(batch_size, generator=generator) > 0).long()
        batches.append({"image": image, "label": label})
    return batches


def make_network() -> torch.nn.Linear:
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 2)
    with torch.no_grad():
        network.weight.copy_(torch.tensor([[-1.0, 0.2, 0.0, 0.1], [1.0, -0.3, 0.2, 0.0]]))
        network.bias.copy_(torch.tensor([0.1, -0.1]))
    return network


@pytest.mark.parametrize("decollate", [True, False])
def test_metrics_in_monai_supervised_evaluator(decollate):
    batches = make_batches()
    network = make_network()
    handlers = metric_handlers(prefix="val_")
    assert list(handlers) == [f"val_{name}" for name in SCALAR_METRICS]
    assert all(isinstance(metric, Metric) for metric in handlers.values())
    key = {"val_f1": handlers.pop("val_f1")}
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=batches,
        network=network,
        key_val_metric=key,
        additional_metrics=handlers,
        decollate=decollate,
    )
    evaluator.run()

    with torch.no_grad():
        logits = torch.cat([network(batch["image"]) for batch in batches])
    labels = torch.cat([batch["label"] for batch in batches]).numpy()
    assert 0 < labels.sum() < len(labels)  # both classes, so roc_auc is defined
    expected = binary_metrics(labels, torch.softmax(logits, dim=1)[:, 1].numpy())
    for name in SCALAR_METRICS:
        value = evaluator.state.metrics[f"val_{name}"]
        assert isinstance(value, float)
        assert value == pytest.approx(expected[name]), name
    assert evaluator.state.best_metric == pytest.approx(expected["f1"])

    # a second run starts from scratch (the shared metric is reset each epoch) and gives the same numbers
    evaluator.run()
    for name in SCALAR_METRICS:
        assert evaluator.state.metrics[f"val_{name}"] == pytest.approx(expected[name])


def test_thresholds_for_recall_by_hand():
    from pipelines.evaluation.classification_scores import thresholds_for_recall

    # positives scored 0.9, 0.8, 0.4, 0.2: recall 0.5 needs 2 of 4 (threshold 0.8), 0.75 needs 3 (0.4), 1.0 all (0.2)
    labels = [1, 0, 1, 1, 0, 1, 0]
    scores = [0.9, 0.85, 0.8, 0.4, 0.3, 0.2, 0.1]
    assert thresholds_for_recall(labels, scores, recalls=(0.5, 0.75, 1.0)) == {"0.50": 0.8, "0.75": 0.4, "1.00": 0.2}
    assert thresholds_for_recall([0, 0], [0.1, 0.2]) == {}  # no positive: no threshold
    with pytest.raises(ValueError, match="target recall"):
        thresholds_for_recall(labels, scores, recalls=(0.0,))
