"""Slice-classification metrics in numpy, a confusion-matrix PNG, per-slice CSVs, and ignite metrics for MONAI.

The 2D slice classifier of the cascade is scored with :func:`binary_metrics` (accuracy, precision, recall =
sensitivity, specificity, F1, ROC AUC and the four counts). During training the same numbers come from ignite
metrics attached to a MONAI ``SupervisedEvaluator``::

    handlers = metric_handlers(prefix="val_")  # reads engine.state.output through from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(..., key_val_metric={"val_f1": handlers.pop("val_f1")},
                                    additional_metrics=handlers)

No scikit-learn: everything is numpy, and a zero denominator gives 0.0 rather than a warning.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric, MetricsLambda

from pipelines.io.atomic import atomic_write

__all__ = [
    "confusion_matrix",
    "binary_metrics",
    "binary_metrics_from_counts",
    "multiclass_metrics",
    "roc_auc",
    "thresholds_for_recall",
    "save_confusion_matrix_png",
    "write_slice_results_csv",
    "read_slice_results_csv",
    "SliceClassificationMetrics",
    "metric_handlers",
    "SCALAR_METRICS",
    "SLICE_RESULT_COLUMNS",
]

logger = logging.getLogger(__name__)

SCALAR_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
SLICE_RESULT_COLUMNS = ("volume_id", "slice_index", "label", "probability", "prediction")
_INT_COLUMNS = ("slice_index", "label", "prediction")


# ----------------------------------------------------------------------------------------------- input checks


def _as_1d(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 1-D array of numbers, could not convert it: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def _as_labels(values: Any, name: str, num_classes: int) -> np.ndarray:
    """Integer class indices in ``[0, num_classes)``; integral floats such as 1.0 are accepted."""
    array = _as_1d(values, name)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    array = array.astype(np.int64)
    outside = (array < 0) | (array >= num_classes)
    if outside.any():
        raise ValueError(
            f"{name} must hold class indices in [0, {num_classes}), got {sorted(set(array[outside].tolist()))[:5]}"
        )
    return array


def _as_scores(values: Any, name: str) -> np.ndarray:
    array = _as_1d(values, name).astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/inf value(s)")
    return array


def _check_same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names} must have the same length, got {a.shape[0]} and {b.shape[0]}")


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0.0 when the denominator is 0 (no warning, no exception)."""
    return float(numerator) / float(denominator) if denominator else 0.0


# ---------------------------------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int = 2) -> np.ndarray:
    """Confusion matrix of class indices: ``cm[i, j]`` counts samples of true class ``i`` predicted as ``j``.

    Args:
        y_true: 1-D true class indices in ``[0, num_classes)`` (ints, bools or integral floats).
        y_pred: 1-D predicted class indices, same length.
        num_classes: number of classes, ``>= 2``.

    Returns:
        ``(num_classes, num_classes)`` int64 array, rows true, columns predicted. For two classes
        ``[[tn, fp], [fn, tp]]``.

    Raises:
        ValueError: for inputs that are not 1-D, differ in length, or hold values that are not class indices.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    true = _as_labels(y_true, "y_true", num_classes)
    pred = _as_labels(y_pred, "y_pred", num_classes)
    _check_same_length(true, pred, "y_true and y_pred")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve from ranks (Mann–Whitney U); tied scores count one half.

    ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` where ``R_pos`` is the sum of the average ranks of
    the positive samples. It equals the probability that a random positive scores above a random negative, ties
    counting 1/2.

    Args:
        y_true: 1-D binary labels (0/1, bools or 0.0/1.0).
        y_score: 1-D finite scores, higher meaning more likely positive (probabilities or logits).

    Returns:
        The AUC in [0, 1]; NaN, without a warning, when only one class is present.

    Raises:
        ValueError: for empty or mismatched inputs, labels other than 0/1, or non-finite scores.
    """
    true = _as_labels(y_true, "y_true", 2)
    score = _as_scores(y_score, "y_score")
    _check_same_length(true, score, "y_true and y_score")
    if true.size == 0:
        raise ValueError("roc_auc needs at least one sample, got empty inputs")
    n_pos = int(true.sum())
    n_neg = true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        logger.debug("roc_auc is undefined with a single class (%d positive, %d negative): NaN", n_pos, n_neg)
        return math.nan
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last sample of each group of tied scores
    average_ranks = ends - (counts - 1) / 2.0
    rank_sum = float(average_ranks[inverse.reshape(-1)][true == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def binary_metrics_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Accuracy, precision, recall, specificity and F1 from the four counts of a binary confusion matrix.

    A ratio whose denominator is zero is 0.0 (e.g. precision when nothing is predicted positive, recall when
    there is no positive sample), never an exception or a warning.

    Returns:
        ``{"accuracy", "precision", "recall", "specificity", "f1"}`` as floats.

    Raises:
        ValueError: when a count is negative or not an integer.
    """
    for name, value in (("tp", tp), ("fp", fp), ("tn", tn), ("fn", fn)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),  # = 2PR / (P + R), and 0.0 when tp = 0
    }


def binary_metrics(y_true: Any, y_score: Any, threshold: float = 0.5) -> dict[str, float]:
    """Binary classification metrics of positive-class scores against 0/1 labels.

    A sample is predicted positive when ``y_score >= threshold``. Zero denominators give 0.0 for precision,
    recall, specificity and F1 (see :func:`binary_metrics_from_counts`).

    Args:
        y_true: 1-D binary labels (0/1, bools or 0.0/1.0).
        y_score: 1-D finite scores of the positive class (usually probabilities), same length.
        threshold: decision threshold on ``y_score``.

    Returns:
        ``accuracy``, ``precision``, ``recall`` (= sensitivity), ``specificity``, ``f1`` and ``roc_auc`` as
        floats (``roc_auc`` is NaN when only one class is present), and ``tp``, ``fp``, ``tn``, ``fn`` as ints.

    Raises:
        ValueError: for empty or mismatched inputs, labels other than 0/1, non-finite scores or threshold.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    true = _as_labels(y_true, "y_true", 2)
    score = _as_scores(y_score, "y_score")
    _check_same_length(true, score, "y_true and y_score")
    if true.size == 0:
        raise ValueError("binary_metrics needs at least one sample, got empty inputs")
    (tn, fp), (fn, tp) = confusion_matrix(true, (score >= threshold).astype(np.int64), num_classes=2).tolist()
    result: dict[str, Any] = binary_metrics_from_counts(tp, fp, tn, fn)
    result["roc_auc"] = roc_auc(true, score)
    result.update(tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn))
    return result


def thresholds_for_recall(y_true: Any, y_score: Any, recalls: Sequence[float] = (0.9, 0.95, 0.99)) -> dict[str, float]:
    """The highest threshold whose recall (sensitivity) is at least each target, for a recall-first gate.

    A cascade gate should rarely miss a positive slice (a missed slab loses pathology; an extra one only costs
    time), so its threshold is best read off the validation scores at a target recall rather than left at 0.5.

    Args:
        y_true: 0/1 labels.
        y_score: positive-class probabilities.
        recalls: target recalls in (0, 1].

    Returns:
        ``{"0.95": threshold, ...}``; a target is absent when there is no positive label.

    Raises:
        ValueError: for a target outside (0, 1] or inputs of different lengths.
    """
    labels = _as_labels(y_true, "y_true", 2)
    scores = _as_scores(y_score, "y_score")
    _check_same_length(labels, scores, "y_true and y_score")
    positives = np.sort(scores[labels == 1])[::-1]  # descending
    result: dict[str, float] = {}
    for target in recalls:
        if not 0.0 < float(target) <= 1.0:
            raise ValueError(f"target recall must be in (0, 1], got {target}")
        if positives.size == 0:
            continue
        needed = math.ceil(float(target) * positives.size - 1e-9)  # positives that must score >= threshold
        result[f"{float(target):.2f}"] = float(positives[max(needed, 1) - 1])
    return result


def multiclass_metrics(y_true: Any, y_pred: Any, num_classes: int) -> dict[str, Any]:
    """Accuracy and per-class / macro-averaged precision, recall and F1 of predicted class indices.

    Zero denominators give 0.0, as in :func:`binary_metrics_from_counts`.

    Returns:
        ``accuracy`` and ``macro_precision``, ``macro_recall``, ``macro_f1`` (floats), ``precision``, ``recall``,
        ``f1`` (float64 arrays of length ``num_classes``) and ``confusion_matrix``.

    Raises:
        ValueError: as :func:`confusion_matrix`, or for empty inputs.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes=num_classes)
    total = int(cm.sum())
    if total == 0:
        raise ValueError("multiclass_metrics needs at least one sample, got empty inputs")
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1_denominator = predicted + actual  # 2tp + fp + fn
    f1 = np.divide(2 * tp, f1_denominator, out=np.zeros_like(tp), where=f1_denominator > 0)
    return {
        "accuracy": float(tp.sum() / total),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": cm,
    }


# ---------------------------------------------------------------------------------------------------- outputs


def save_confusion_matrix_png(
    cm: Any, class_names: Sequence[str], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) with its counts in the cells, as a PNG.

    Uses matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), so pyplot and the global backend
    are left alone. The file is written to a temporary file in the same folder and moved into place, so a
    reader never sees half a PNG; missing parent folders are created.

    Args:
        cm: square ``(K, K)`` array of non-negative counts (floats are printed with two decimals).
        class_names: the ``K`` class names, in index order.
        path: where to write the PNG.
        title: optional figure title.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: when ``cm`` is not square, has negative or non-finite values, or ``class_names`` does not
            have one name per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"cm must be a square 2-D array, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("cm must hold finite, non-negative counts")
    k = matrix.shape[0]
    names = [str(name) for name in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must have {k} names (one per row of cm), got {len(names)}")

    side = 3.0 + 0.6 * k
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(matrix.max()), 1e-12))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(k), yticks=range(k), xlabel="Predicted", ylabel="True")
    ax.set_xticklabels(names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticklabels(names)
    if title:
        ax.set_title(title)
    integral = bool(np.all(matrix == np.round(matrix)))
    middle = float(matrix.max()) / 2.0
    for i in range(k):
        for j in range(k):
            value = matrix[i, j]
            text = f"{int(value)}" if integral else f"{float(value):.2f}"
            colour = "white" if value > middle else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour)
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    logger.debug("wrote confusion matrix %s", out)
    return out


def write_slice_results_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write per-slice classification results as CSV, atomically (temporary file, then ``os.replace``).

    Columns are :data:`SLICE_RESULT_COLUMNS` (``volume_id, slice_index, label, probability, prediction``), then
    any extra keys of the rows in the order they first appear. ``None`` is written as an empty cell (e.g. no
    label at inference). Probabilities are written with ``repr`` so they read back exactly.

    Args:
        rows: one mapping per slice, each with at least the keys of :data:`SLICE_RESULT_COLUMNS`.
        path: where to write the CSV; missing parent folders are created.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: when a row is not a mapping or lacks one of the required keys.
    """
    rows = list(rows)
    columns = list(SLICE_RESULT_COLUMNS)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {index} must be a dict, got {type(row).__name__}")
        missing = [key for key in SLICE_RESULT_COLUMNS if key not in row]
        if missing:
            raise ValueError(f"row {index} lacks the key(s) {missing}; required: {list(SLICE_RESULT_COLUMNS)}")
        columns.extend(key for key in row if key not in columns)

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (np.generic, torch.Tensor)):
            return value.item()
        return value

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: cell(row.get(key)) for key in columns})

    out = atomic_write(path, write)
    logger.debug("wrote %d slice result(s) to %s", len(rows), out)
    return out


def read_slice_results_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_slice_results_csv`.

    ``slice_index``, ``label`` and ``prediction`` come back as ints, ``probability`` as float, empty cells of
    these columns as ``None``; ``volume_id`` and extra columns stay strings.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in _INT_COLUMNS:
            row[key] = int(row[key]) if row.get(key) else None
        row["probability"] = float(row["probability"]) if row.get("probability") else None
    return rows


# ------------------------------------------------------------------------------------------------------ ignite


def _default_output_transform() -> Callable[[Any], Any]:
    from monai.handlers import from_engine

    return from_engine(["pred", "label"])


def _as_batch(values: Any, name: str) -> torch.Tensor:
    """A tensor from a tensor or a list of per-sample tensors/numbers (what decollated MONAI output gives)."""
    if isinstance(values, torch.Tensor):
        return values.detach()
    if isinstance(values, (list, tuple)) and values:
        return torch.stack([torch.as_tensor(v).detach() for v in values])
    raise ValueError(f"{name} must be a tensor or a non-empty list of tensors, got {type(values).__name__}")


class SliceClassificationMetrics(Metric):
    """Ignite metric collecting positive-class scores and labels over an epoch; ``compute()`` is
    :func:`binary_metrics`.

    ``output_transform(engine.state.output)`` must give ``(y_pred, y)``, each a tensor or a list of per-sample
    tensors. Accepted shapes, for a batch of ``B``:

    - ``y_pred``: ``(B, 2)`` two-class logits (softmax applied when ``apply_softmax``) or probabilities
      (set ``apply_softmax=False``; column 1 is the positive class), or ``(B,)`` / ``(B, 1)`` positive-class
      probabilities (or logits with ``apply_sigmoid=True``).
    - ``y``: ``(B,)`` / ``(B, 1)`` class indices 0/1, or ``(B, 2)`` one-hot labels.

    With ``apply_softmax=True`` on 2-column probabilities (softmax applied twice) the metrics are unchanged, as
    ``softmax`` of a probability pair is monotonic in ``p1`` and maps 0.5 to 0.5, but the scores are distorted.

    Args:
        output_transform: picks ``(y_pred, y)`` from the engine output; default
            ``monai.handlers.from_engine(["pred", "label"])``, which suits ``SupervisedEvaluator``.
        apply_softmax: softmax ``(B, 2)`` predictions over the class axis before taking column 1.
        apply_sigmoid: sigmoid ``(B,)`` / ``(B, 1)`` predictions (single positive-class logits).
        threshold: decision threshold on the positive-class probability.
        device: where the accumulated tensors are kept.
        skip_unrolling: passed to ignite (``False`` lets ignite feed lists of per-sample tensors one by one).

    Raises:
        ignite.exceptions.NotComputableError: from ``compute()`` when no sample was seen.
        ValueError: from ``update()`` for predictions or labels of an unsupported shape.
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] | None = None,
        apply_softmax: bool = True,
        apply_sigmoid: bool = False,
        threshold: float = 0.5,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        self.apply_softmax = apply_softmax
        self.apply_sigmoid = apply_sigmoid
        self.threshold = threshold
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._result: dict[str, float] | None = None
        if output_transform is None:
            output_transform = _default_output_transform()
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    def reset(self) -> None:
        """Forget the samples seen so far (called by ignite at the start of each epoch)."""
        self._scores = []
        self._labels = []
        self._result = None

    def _positive_scores(self, y_pred: torch.Tensor) -> torch.Tensor:
        y_pred = y_pred.float()
        if y_pred.ndim == 2 and y_pred.shape[1] == 2:
            return torch.softmax(y_pred, dim=1)[:, 1] if self.apply_softmax else y_pred[:, 1]
        if y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
            scores = y_pred.reshape(-1)
            return torch.sigmoid(scores) if self.apply_sigmoid else scores
        raise ValueError(f"y_pred must have shape (B, 2), (B, 1) or (B,), got {tuple(y_pred.shape)}")

    @staticmethod
    def _class_labels(y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2 and y.shape[1] == 2:
            return y.argmax(dim=1)
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
            return y.reshape(-1).round().long()
        raise ValueError(f"y must have shape (B,), (B, 1) or one-hot (B, 2), got {tuple(y.shape)}")

    def update(self, output: Sequence[Any]) -> None:
        """Add a batch ``(y_pred, y)`` (see the class docstring for the shapes)."""
        if not isinstance(output, Sequence) or len(output) != 2:
            raise ValueError("output_transform must give a pair (y_pred, y)")
        scores = self._positive_scores(_as_batch(output[0], "y_pred"))
        labels = self._class_labels(_as_batch(output[1], "y"))
        if scores.shape[0] != labels.shape[0]:
            raise ValueError(f"y_pred and y have different batch sizes: {scores.shape[0]} and {labels.shape[0]}")
        self._scores.append(scores.to(self._device))
        self._labels.append(labels.to(self._device))
        self._result = None

    def compute(self) -> dict[str, float]:
        """:func:`binary_metrics` of all samples seen since the last reset (gathered across processes)."""
        if not self._scores:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        if self._result is None:
            import ignite.distributed as idist

            scores = torch.cat(self._scores)
            labels = torch.cat(self._labels)
            if idist.get_world_size() > 1:
                scores = idist.all_gather(scores)
                labels = idist.all_gather(labels)
            self._result = binary_metrics(labels.cpu().numpy(), scores.cpu().numpy(), threshold=self.threshold)
        return self._result


def _pick(result: Mapping[str, Any], name: str) -> float:
    return float(result[name])


def metric_handlers(
    prefix: str = "val_",
    output_transform: Callable[[Any], Any] | None = None,
    apply_softmax: bool = True,
    apply_sigmoid: bool = False,
    threshold: float = 0.5,
) -> dict[str, Metric]:
    """One ignite metric per scalar of :func:`binary_metrics`, for MONAI's ``key_val_metric`` /
    ``additional_metrics``.

    The returned metrics are ``MetricsLambda`` views of a single shared :class:`SliceClassificationMetrics`,
    which ignite attaches once however many of them are attached, so the epoch's samples are collected once.
    Each ``compute()`` returns a float, so any of them can be MONAI's key metric. MONAI attaches
    ``additional_metrics`` only when ``key_val_metric`` is given: pop one of these into it.

    Args:
        prefix: prepended to the names :data:`SCALAR_METRICS` to form the keys (and ``engine.state.metrics``
            names), e.g. ``"val_accuracy"``.
        output_transform, apply_softmax, apply_sigmoid, threshold: as :class:`SliceClassificationMetrics`.

    Returns:
        ``{prefix + name: metric}`` for ``accuracy``, ``precision``, ``recall``, ``specificity``, ``f1`` and
        ``roc_auc``, in that order.
    """
    base = SliceClassificationMetrics(
        output_transform=output_transform, apply_softmax=apply_softmax, apply_sigmoid=apply_sigmoid, threshold=threshold
    )
    return {f"{prefix}{name}": MetricsLambda(functools.partial(_pick, name=name), base) for name in SCALAR_METRICS}
