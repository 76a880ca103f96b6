"""Segmentation metrics that need more than MONAI's defaults: Hausdorff distance in millimetres, a metrics saver
that keeps numpy's warnings about classes without any value out of the console, and the Dice of two masks for
the benchmarks."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler, MetricsSaver
from monai.metrics import HausdorffDistanceMetric
from monai.utils import MetricReduction

__all__ = [
    "QuietMetricsSaver",
    "SpacingAwareHausdorffDistanceMetric",
    "HausdorffDistance95mm",
    "class_output_transform",
    "class_dice_handlers",
    "region_output_transform",
    "region_dice_handlers",
    "mask_dice",
]


class SpacingAwareHausdorffDistanceMetric(HausdorffDistanceMetric):
    """``HausdorffDistanceMetric`` that reads the voxel spacing of each case from the label's metadata.

    MONAI measures distances in voxels unless ``spacing`` is passed per call, which an ignite handler cannot do
    case by case. Here the spacing comes from ``y.pixdim`` when ``y`` is a ``MetaTensor``, so distances are in
    millimetres on whatever grid the label lives on (the original one, after ``Invertd``).

    A class absent from a case's label or prediction has no surface: its distance is not a number (nan or inf),
    which the summaries skip. That is the metric's definition, not a problem with the case, so MONAI's
    warning about it is not repeated for every such case.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if "spacing" not in kwargs and isinstance(y, MetaTensor):
            spatial_dims = y.ndim - 2
            kwargs["spacing"] = [float(s) for s in y.pixdim[:spatial_dims]]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"the (ground truth|prediction) of class .* is all 0")
            # MONAI 1.6.1 passes get_mask_edges' deprecated argument itself, once per case
            warnings.filterwarnings("ignore", r".*get_mask_edges:always_return_as_numpy", FutureWarning)
            return super()._compute_tensor(y_pred, y, **kwargs)


# numpy's warnings when a summary (mean, median, std...) runs over a class without a single value
_EMPTY_SUMMARY_WARNINGS = (r"Mean of empty slice", r"All-NaN slice encountered", r"Degrees of freedom <= 0")


class QuietMetricsSaver(MetricsSaver):
    """MONAI's ``MetricsSaver``, without numpy's warnings about a class that no case has a value for.

    A class that no case labels or predicts (no tumour anywhere in the test set, or none found) has no Hausdorff
    distance in any case; its summary row then reads nan, which is the right answer, and numpy warns "Mean of
    empty slice" for every statistic. The files written are MONAI's, unchanged.
    """

    def __call__(self, engine) -> None:
        with warnings.catch_warnings():
            for message in _EMPTY_SUMMARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=RuntimeWarning)
            super().__call__(engine)


class HausdorffDistance95mm(IgniteMetricHandler):
    """Ignite handler of the 95th-percentile Hausdorff distance in mm, per class (``save_details`` for CSVs).

    Args:
        include_background: whether to score channel 0.
        percentile: the percentile of the surface distances (95 for HD95).
        reduction: how to reduce over batch and classes for the engine's summary metric.
        output_transform: picks ``(y_pred, y)`` from the engine output.
        save_details: keep per-case, per-class values in ``engine.state.metric_details`` (for ``MetricsSaver``).
    """

    def __init__(
        self,
        include_background: bool = False,
        percentile: float = 95.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Any = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = SpacingAwareHausdorffDistanceMetric(
            include_background=include_background, percentile=percentile, reduction=reduction
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


def class_output_transform(class_index: int, keys: tuple[str, str] = ("pred", "label")):
    """Output transform giving ``(y_pred, y)`` lists restricted to one one-hot channel, for per-class metrics.

    Use it with a metric that has ``include_background=True``, e.g. ``MeanDice`` for the tumour channel only.
    """
    from monai.handlers import from_engine

    pick = from_engine(list(keys))

    def transform(output):
        preds, labels = pick(output)
        channel = slice(class_index, class_index + 1)
        return [p[channel] for p in preds], [y[channel] for y in labels]

    return transform


def class_dice_handlers(
    prefix: str, class_names: Sequence[str], keys: tuple[str, str] = ("pred", "label")
) -> dict[str, IgniteMetricHandler]:
    """One ``MeanDice`` handler per foreground class, named ``<prefix><class>_dice`` (``val_tumour_dice``).

    Bundles pass their ``class_names`` (background first) so that the per-class metrics follow the labels of the
    bundle instead of being listed by hand. Spaces and dashes in class names become underscores.

    Raises:
        ValueError: with fewer than two class names (background and at least one class).
    """
    from monai.handlers import MeanDice

    names = list(class_names)
    if len(names) < 2:
        raise ValueError(f"class_names must list the background and at least one class, got {names}")
    handlers = {}
    for index, name in enumerate(names[1:], start=1):
        metric_name = f"{prefix}{_metric_name(name)}_dice"
        handlers[metric_name] = MeanDice(include_background=True, output_transform=class_output_transform(index, keys))
    return handlers


def _metric_name(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def region_output_transform(class_indices: Sequence[int], keys: tuple[str, str] = ("pred", "label")):
    """Output transform giving ``(y_pred, y)`` lists of one binary channel: the union of ``class_indices``.

    For nested regions scored as one, e.g. the BraTS whole tumour (necrosis + oedema + enhancing).
    """
    from monai.handlers import from_engine

    pick = from_engine(list(keys))
    indices = [int(i) for i in class_indices]

    def transform(output):
        preds, labels = pick(output)
        return [p[indices].sum(0, keepdim=True).clamp_(max=1) for p in preds], [
            y[indices].sum(0, keepdim=True).clamp_(max=1) for y in labels
        ]

    return transform


def region_dice_handlers(
    prefix: str, regions: Mapping[str, Sequence[int]], keys: tuple[str, str] = ("pred", "label")
) -> dict[str, IgniteMetricHandler]:
    """One ``MeanDice`` handler per region (a union of class indices), named ``<prefix><region>_dice``.

    Raises:
        ValueError: for a region without classes or with the background (index 0).
    """
    from monai.handlers import MeanDice

    handlers = {}
    for name, indices in regions.items():
        indices = [int(i) for i in indices]
        if not indices or 0 in indices:
            raise ValueError(f"region {name!r} must list foreground class indices (> 0), got {indices}")
        handlers[f"{prefix}{_metric_name(name)}_dice"] = MeanDice(
            include_background=True, output_transform=region_output_transform(indices, keys)
        )
    return handlers


def mask_dice(pred, truth) -> float:
    """Dice of two boolean masks of one shape (numpy arrays); NaN when both are empty: nothing to find and nothing
    found, which the means skip."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    total = int(pred.sum()) + int(truth.sum())
    return float("nan") if total == 0 else 2.0 * int((pred & truth).sum()) / total
