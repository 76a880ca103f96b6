"""Multi-class classification metrics (K >= 2 classes): a numpy report and ignite metrics for MONAI engines.

:func:`multiclass_report` scores class probabilities against class indices: accuracy, per-class and macro
precision, recall and F1 (from :func:`pipelines.evaluation.classification_scores.multiclass_metrics`), per-class
one-vs-rest ROC AUC and their macro average, and the confusion matrix. During training the same numbers come
from ignite metrics attached to a ``SupervisedEvaluator``::

    handlers = multiclass_metric_handlers("val_", class_names)  # val_accuracy, val_macro_f1, val_covid_recall...
    evaluator = SupervisedEvaluator(..., key_val_metric={"val_macro_f1": handlers.pop("val_macro_f1")},
                                    additional_metrics=handlers)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric, MetricsLambda

from pipelines.evaluation.classification_scores import multiclass_metrics, roc_auc

__all__ = [
    "metric_key",
    "one_vs_rest_roc_auc",
    "multiclass_report",
    "MulticlassClassificationMetrics",
    "multiclass_metric_handlers",
    "SUMMARY_METRICS",
    "PER_CLASS_METRICS",
]

SUMMARY_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")
"""Scalar metrics of :func:`multiclass_report` (``roc_auc``: macro one-vs-rest)."""
PER_CLASS_METRICS = ("precision", "recall", "f1", "roc_auc")
"""Per-class metrics of :func:`multiclass_report`, named ``<class>_<metric>`` by the ignite handlers."""


def metric_key(name: str) -> str:
    """A class name as it appears in metric names: lower case, spaces and dashes as underscores
    (``"Viral Pneumonia"``: ``viral_pneumonia``), as :func:`pipelines.evaluation.metrics.class_dice_handlers` does."""
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _probabilities(y_prob: Any, num_classes: int | None = None) -> np.ndarray:
    if isinstance(y_prob, torch.Tensor):
        y_prob = y_prob.detach().cpu().numpy()
    prob = np.asarray(y_prob, dtype=np.float64)
    if prob.ndim != 2 or prob.shape[1] < 2:
        raise ValueError(f"y_prob must have shape (N, K) with K >= 2 classes, got {prob.shape}")
    if num_classes is not None and prob.shape[1] != num_classes:
        raise ValueError(f"y_prob has {prob.shape[1]} columns, expected one per class ({num_classes})")
    if not np.all(np.isfinite(prob)):
        raise ValueError("y_prob must be finite")
    return prob


def one_vs_rest_roc_auc(y_true: Any, y_prob: Any) -> tuple[float, np.ndarray]:
    """Per-class one-vs-rest ROC AUC of class probabilities, and their mean over the classes where it is defined.

    Args:
        y_true: ``(N,)`` class indices in ``[0, K)``.
        y_prob: ``(N, K)`` class scores (probabilities, or any score increasing with the class's likelihood).

    Returns:
        ``(macro_auc, per_class_auc)``: the AUC of class ``k`` is NaN when the samples hold only class ``k`` or
        none of it; the macro average skips those, and is NaN when no class has an AUC.

    Raises:
        ValueError: for mismatched lengths, labels outside ``[0, K)`` or non-finite scores.
    """
    prob = _probabilities(y_prob)
    true = np.asarray(y_true.detach().cpu().numpy() if isinstance(y_true, torch.Tensor) else y_true)
    if true.ndim != 1 or true.shape[0] != prob.shape[0]:
        raise ValueError(f"y_true must be 1-D with one label per row of y_prob, got {true.shape} and {prob.shape}")
    k = prob.shape[1]
    if true.size and (np.any(true < 0) or np.any(true >= k) or np.any(true != np.round(true))):
        raise ValueError(f"y_true must hold class indices in [0, {k})")
    true = true.astype(np.int64)
    per_class = np.array([roc_auc(true == c, prob[:, c]) for c in range(k)], dtype=np.float64)
    defined = per_class[np.isfinite(per_class)]
    return (float(defined.mean()) if defined.size else math.nan), per_class


def multiclass_report(y_true: Any, y_prob: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Every metric of a multi-class classifier, as plain Python values ready for JSON.

    The predicted class is the arg-max of ``y_prob``.

    Args:
        y_true: ``(N,)`` true class indices.
        y_prob: ``(N, K)`` class probabilities.
        class_names: the ``K`` class names, in index order.

    Returns:
        ``num_samples``, the :data:`SUMMARY_METRICS` (``roc_auc`` is the macro one-vs-rest AUC), ``per_class``
        (``{name: {"precision", "recall", "f1", "roc_auc", "support"}}``), ``class_names`` and
        ``confusion_matrix`` (rows true, columns predicted). Undefined AUCs are ``None``.

    Raises:
        ValueError: for empty inputs, a number of class names other than K, or invalid labels or scores.
    """
    names = [str(n) for n in class_names]
    prob = _probabilities(y_prob, len(names))
    if prob.shape[0] == 0:
        raise ValueError("multiclass_report needs at least one sample, got empty inputs")
    scores = multiclass_metrics(y_true, prob.argmax(axis=1), num_classes=len(names))
    macro_auc, class_auc = one_vs_rest_roc_auc(y_true, prob)
    cm = scores["confusion_matrix"]

    def finite_or_none(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    return {
        "num_samples": int(cm.sum()),
        "accuracy": scores["accuracy"],
        "macro_precision": scores["macro_precision"],
        "macro_recall": scores["macro_recall"],
        "macro_f1": scores["macro_f1"],
        "roc_auc": finite_or_none(macro_auc),
        "per_class": {
            name: {
                "precision": float(scores["precision"][k]),
                "recall": float(scores["recall"][k]),
                "f1": float(scores["f1"][k]),
                "roc_auc": finite_or_none(class_auc[k]),
                "support": int(cm[k].sum()),
            }
            for k, name in enumerate(names)
        },
        "class_names": names,
        "confusion_matrix": cm.tolist(),
    }


def _default_output_transform() -> Callable[[Any], Any]:
    from monai.handlers import from_engine

    return from_engine(["pred", "label"])


def _stack(values: Any, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    if isinstance(values, (list, tuple)) and values:
        return torch.stack([torch.as_tensor(v).detach() for v in values])
    raise ValueError(f"{name} must be a tensor or a non-empty list of tensors, got {type(values).__name__}")


class MulticlassClassificationMetrics(Metric):
    """Ignite metric collecting class probabilities and labels over an epoch; ``compute()`` gives a flat dict of
    the :data:`SUMMARY_METRICS` and ``<class>_<metric>`` for each :data:`PER_CLASS_METRICS` (NaN AUC when
    undefined), from :func:`multiclass_report`.

    ``output_transform(engine.state.output)`` must give ``(y_pred, y)``: ``y_pred`` of shape ``(B, K)`` logits
    (softmax applied when ``apply_softmax``) or probabilities, ``y`` of shape ``(B,)`` / ``(B, 1)`` class indices
    or ``(B, K)`` one-hot; each a tensor or a list of per-sample tensors (decollated MONAI output).

    Args:
        class_names: the K class names, in index order (they name the per-class metrics, see :func:`metric_key`).
        output_transform: default ``monai.handlers.from_engine(["pred", "label"])``.
        apply_softmax: softmax the predictions over the class axis.
        device: where the collected tensors are kept.

    Raises:
        ignite.exceptions.NotComputableError: from ``compute()`` when no sample was seen.
        ValueError: from ``update()`` for predictions or labels of an unsupported shape.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable[[Any], Any] | None = None,
        apply_softmax: bool = True,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        self.class_names = [str(n) for n in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"class_names must hold at least two classes, got {self.class_names}")
        self.apply_softmax = apply_softmax
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._result: dict[str, float] | None = None
        super().__init__(output_transform=output_transform or _default_output_transform(), device=device)

    def reset(self) -> None:
        """Forget the samples seen so far (called by ignite at the start of each epoch)."""
        self._probs = []
        self._labels = []
        self._result = None

    def update(self, output: Sequence[Any]) -> None:
        """Add a batch ``(y_pred, y)``."""
        if not isinstance(output, Sequence) or len(output) != 2:
            raise ValueError("output_transform must give a pair (y_pred, y)")
        k = len(self.class_names)
        y_pred = _stack(output[0], "y_pred").float()
        y = _stack(output[1], "y")
        if y_pred.ndim != 2 or y_pred.shape[1] != k:
            raise ValueError(f"y_pred must have shape (B, {k}), got {tuple(y_pred.shape)}")
        if y.ndim == 2 and y.shape[1] == k and k > 1:
            labels = y.argmax(dim=1)
        elif y.ndim <= 1 or (y.ndim == 2 and y.shape[1] == 1):
            labels = y.reshape(-1).round().long()
        else:
            raise ValueError(f"y must have shape (B,), (B, 1) or one-hot (B, {k}), got {tuple(y.shape)}")
        if labels.shape[0] != y_pred.shape[0]:
            raise ValueError(f"y_pred and y have different batch sizes: {y_pred.shape[0]} and {labels.shape[0]}")
        probs = torch.softmax(y_pred, dim=1) if self.apply_softmax else y_pred
        self._probs.append(probs.to(self._device))
        self._labels.append(labels.to(self._device))
        self._result = None

    def compute(self) -> dict[str, float]:
        """The flat metrics of every sample seen since the last reset (gathered across processes)."""
        if not self._probs:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        if self._result is None:
            import ignite.distributed as idist

            probs = torch.cat(self._probs)
            labels = torch.cat(self._labels)
            if idist.get_world_size() > 1:
                probs = idist.all_gather(probs)
                labels = idist.all_gather(labels)
            report = multiclass_report(labels.cpu().numpy(), probs.cpu().numpy(), self.class_names)
            result = {name: report[name] for name in SUMMARY_METRICS}
            for class_name, values in report["per_class"].items():
                for metric in PER_CLASS_METRICS:
                    result[f"{metric_key(class_name)}_{metric}"] = values[metric]
            self._result = {k: math.nan if v is None else float(v) for k, v in result.items()}
        return self._result


def _pick(result: dict[str, float], name: str) -> float:
    return result[name]


def multiclass_metric_handlers(
    prefix: str,
    class_names: Sequence[str],
    output_transform: Callable[[Any], Any] | None = None,
    apply_softmax: bool = True,
    per_class: Sequence[str] = ("precision", "recall"),
) -> dict[str, Metric]:
    """Ignite metrics for MONAI's ``key_val_metric`` / ``additional_metrics``, all views of one shared
    :class:`MulticlassClassificationMetrics` (the epoch's samples are collected once).

    Args:
        prefix: prepended to every name (``"val_"``).
        class_names: the K class names.
        output_transform, apply_softmax: as :class:`MulticlassClassificationMetrics`.
        per_class: which of :data:`PER_CLASS_METRICS` get one metric per class.

    Returns:
        ``{prefix + name: metric}`` for the :data:`SUMMARY_METRICS` (``val_accuracy``, ``val_macro_f1``,
        ``val_roc_auc``...), then ``prefix + <class>_<metric>`` (``val_covid_recall``).

    Raises:
        ValueError: for an unknown per-class metric.
    """
    unknown = [m for m in per_class if m not in PER_CLASS_METRICS]
    if unknown:
        raise ValueError(f"unknown per-class metric(s) {unknown}; choose from {list(PER_CLASS_METRICS)}")
    base = MulticlassClassificationMetrics(class_names, output_transform=output_transform, apply_softmax=apply_softmax)
    names = list(SUMMARY_METRICS) + [f"{metric_key(c)}_{m}" for c in base.class_names for m in per_class]
    return {f"{prefix}{name}": MetricsLambda(functools.partial(_pick, name=name), base) for name in names}
