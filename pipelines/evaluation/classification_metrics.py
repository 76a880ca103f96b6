"""Slice-classification metrics in numpy, a confusion-matrix PNG, per-slice CSVs, and ignite metrics for MONAI.

The 2D slice classifier of the cascade is scored with :func:`binary_metrics` (accuracy, precision, recall =
sensitivity, specificity, F1, ROC AUC and the four counts). During training the same numbers come from ignite
metrics attached to a MONAI ``SupervisedEvaluator``::

    handlers = metric_handlers(prefix="val_")  # reads engine.state.output through from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(..., key_val_metric={"val_f1": handlers.pop("val_f1")},
                                    additional_metrics=handlers)

No scikit-learn: everything is numpy, and a zero denominator gives 0.0 rather than a warning. The numpy scores are
in :mod:`pipelines.evaluation.classification_scores`, the PNG and CSV files in
:mod:`pipelines.evaluation.classification_outputs`; this module holds the ignite metrics and re-exports the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric, MetricsLambda

from pipelines.evaluation.classification_scores import (
    SCALAR_METRICS,
    binary_metrics,
)

# the scores and output files are re-exported: callers and bundle configs import them from here
__all__ = [
    "SliceClassificationMetrics",
    "metric_handlers",
]


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
