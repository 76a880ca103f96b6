"""Slice-classification scores in numpy: confusion matrix, ROC AUC, binary and multi-class metrics.

No scikit-learn: everything is numpy, and a zero denominator gives 0.0 rather than a warning.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "confusion_matrix",
    "binary_metrics",
    "binary_metrics_from_counts",
    "multiclass_metrics",
    "roc_auc",
    "thresholds_for_recall",
    "SCALAR_METRICS",
]

logger = logging.getLogger(__name__)

SCALAR_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")


# --------------------------------------------------------------------------------------------------------- input checks


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
