"""Focal Tversky loss, Tversky index metric and its ignite handler, in MONAI's conventions.

The Tversky index of one class is ``TI = TP / (TP + alpha FP + beta FN)``: ``alpha`` weighs false positives,
``beta`` false negatives (MONAI's letters; Abraham & Khan write the same index with ``alpha`` on FN and ``beta``
on FP). ``alpha = beta = 0.5`` gives the Dice coefficient, ``alpha = beta = 1`` the Jaccard index (IoU).

MONAI 1.6 has :class:`monai.losses.TverskyLoss` (``1 - TI``) and, for the foreground-weighted "unified focal"
family only, ``monai.losses.unified_focal_loss.AsymmetricFocalTverskyLoss``; it has no plain focal Tversky
loss and no Tversky metric, so :class:`FocalTverskyLoss` builds on ``TverskyLoss(reduction="none")`` and
:class:`TverskyMetric` mirrors :class:`monai.metrics.MeanIoU` / :class:`monai.metrics.DiceMetric`.

Bundle config example (YAML)::

    loss:
      _target_: pipelines.models.tversky.FocalTverskyLoss
      to_onehot_y: true
      softmax: true
      include_background: false
    val_tversky:
      _target_: pipelines.models.tversky.TverskyIndex
      include_background: false
      output_transform: "$monai.handlers.from_engine(['pred', 'label'])"
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.losses import TverskyLoss
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, ignore_background
from monai.utils import LossReduction, MetricReduction
from torch.nn.modules.loss import _Loss

__all__ = ["FocalTverskyLoss", "FocalTverskyCELoss", "TverskyMetric", "TverskyIndex", "compute_tversky"]

PAPER_ALPHA = 0.3  # weight of false positives in Abraham & Khan (2019), their beta
PAPER_BETA = 0.7  # weight of false negatives, their alpha
PAPER_GAMMA = 4.0 / 3.0


def _check_weights(alpha: float, beta: float) -> tuple[float, float]:
    """``alpha`` and ``beta`` as floats, both >= 0 and not both 0, or a ValueError."""
    alpha, beta = float(alpha), float(beta)
    if not (alpha >= 0.0 and beta >= 0.0):  # also rejects NaN
        raise ValueError(
            f"Tversky weights must be >= 0, got alpha={alpha} (false positives), beta={beta} (false negatives)"
        )
    if alpha + beta == 0.0:
        raise ValueError("Tversky weights alpha and beta are both 0: the index would be 1 for any prediction")
    return alpha, beta


def _check_shapes(input: torch.Tensor, target: torch.Tensor, to_onehot_y: bool) -> None:
    """Raise a ValueError naming both shapes unless ``target`` fits ``input`` (BNH[WD], one channel if one-hot)."""
    if input.ndim < 3:
        raise ValueError(f"input should be BNH[WD] (at least 3 dimensions), got shape {tuple(input.shape)}")
    one_channel = to_onehot_y and input.shape[1] > 1
    expected = (input.shape[0], 1, *input.shape[2:]) if one_channel else tuple(input.shape)
    if tuple(target.shape) != tuple(expected):
        what = "a one-channel label map (to_onehot_y=True)" if one_channel else "the input's shape"
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)}: "
            f"expected {what} {tuple(expected)}"
        )


class FocalTverskyLoss(_Loss):
    """Focal Tversky loss (Abraham & Khan 2019): ``(1 - TI) ** (1 / gamma)`` per sample and class, then reduced.

    Exponent convention: this follows the paper, where ``gamma`` > 1 (they use 4/3) makes the exponent
    ``1 / gamma`` < 1. Because ``x ** (1 / gamma) > x`` for ``x = 1 - TI`` in (0, 1), the loss is larger than
    the Tversky loss everywhere, relatively more so for easy, almost correct examples (``TI`` near 1), whose
    gradient grows as ``x ** (1 / gamma - 1)``: training keeps pushing on them instead of saturating.
    ``gamma = 1`` is :class:`monai.losses.TverskyLoss`. Code bases that write ``(1 - TI) ** gamma'`` with
    ``gamma' = 0.75`` mean the same loss as ``gamma = 4/3`` here: pass ``gamma = 1 / gamma'``. Values below 1
    give exponents above 1 (a loss smaller than the Tversky loss, focused on hard examples).

    Per-class indices come from :class:`monai.losses.TverskyLoss` with ``reduction="none"``, so inputs,
    activations, one-hot conversion, ``batch``, ``soft_label`` and ``ignore_index`` behave exactly as there.
    The paper sums the focal terms over classes; ``reduction="mean"`` (default) averages over batch and classes
    as MONAI's losses do, ``"sum"`` sums them, ``"none"`` returns them, shape ``(B, C)`` (``(C,)`` with
    ``batch=True``).

    Args:
        include_background: if False, channel 0 (background) is left out.
        to_onehot_y: convert a one-channel label map ``target`` to one-hot with ``input.shape[1]`` classes.
        sigmoid: apply a sigmoid to ``input``.
        softmax: apply a softmax over the channels of ``input``.
        other_act: another activation (callable) instead of sigmoid / softmax.
        alpha: weight of false positives, >= 0 (default 0.3, the paper's value).
        beta: weight of false negatives, >= 0 (default 0.7, the paper's value).
        gamma: focal parameter, > 0; the exponent is ``1 / gamma`` (default 4/3, the paper's value).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        smooth_nr: added to the numerator of the index (avoids a zero gradient for empty classes).
        smooth_dr: added to the denominator of the index (avoids NaN for empty classes).
        batch: sum TP, FP and FN over the batch before computing the index.
        soft_label: targets hold soft (non-binary) values.
        ignore_index: class index or sentinel label value whose voxels are left out.

    Raises:
        ValueError: ``alpha`` or ``beta`` negative, both 0, ``gamma`` <= 0, negative smoothing, an unknown
            reduction, or (in ``forward``) input and target shapes that do not fit, naming both.
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        alpha: float = PAPER_ALPHA,
        beta: float = PAPER_BETA,
        gamma: float = PAPER_GAMMA,
        reduction: LossReduction | str = LossReduction.MEAN,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        soft_label: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        try:
            reduction = LossReduction(reduction).value
        except ValueError:
            raise ValueError(f"unsupported reduction {reduction!r}: use 'mean', 'sum' or 'none'") from None
        super().__init__(reduction=reduction)
        alpha, beta = _check_weights(alpha, beta)
        gamma = float(gamma)
        if not gamma > 0.0:
            raise ValueError(f"focal Tversky gamma must be > 0 (the exponent is 1 / gamma), got {gamma}")
        if not (smooth_nr >= 0.0 and smooth_dr >= 0.0):
            raise ValueError(f"smoothing terms must be >= 0, got smooth_nr={smooth_nr}, smooth_dr={smooth_dr}")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.to_onehot_y = to_onehot_y
        self.tversky = TverskyLoss(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            sigmoid=sigmoid,
            softmax=softmax,
            other_act=other_act,
            alpha=alpha,
            beta=beta,
            reduction=LossReduction.NONE,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            soft_label=soft_label,
            ignore_index=ignore_index,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` (BNH[WD] logits or probabilities) against ``target`` (BNH[WD], or B1H[WD] label map).

        Raises:
            ValueError: if the shapes do not fit, naming both.
        """
        _check_shapes(input, target, self.to_onehot_y)
        distance = self.tversky(input, target).clamp_min(0.0)  # 1 - TI; smoothing could make it a hair negative
        # x ** (1 / gamma) has an infinite slope at 0 when gamma > 1: give exact zeros a zero loss and gradient
        positive = distance > 0
        focal = torch.where(positive, distance.clamp_min(torch.finfo(distance.dtype).tiny) ** (1.0 / self.gamma), 0.0)
        if self.reduction == LossReduction.MEAN.value:
            return focal.mean()
        if self.reduction == LossReduction.SUM.value:
            return focal.sum()
        return focal


class FocalTverskyCELoss(_Loss):
    """Focal Tversky loss plus cross-entropy, weighted: ``lambda_tversky * FTL + lambda_ce * CE``.

    The region term alone, without the background class, barely penalises a foreground class predicted over the
    whole background (its false positives weigh only ``alpha``); the voxel-wise cross-entropy anchors every voxel,
    as the CE half of MONAI's ``DiceCELoss`` does. Expects logits and a label map (``B1H[WD]``) or one-hot target.

    Args:
        lambda_tversky: weight of the focal Tversky term.
        lambda_ce: weight of the cross-entropy term.
        ce_weight: optional per-class weights of the cross-entropy.
        **tversky_kwargs: arguments of :class:`FocalTverskyLoss` (``softmax=True`` is the usual choice).

    Raises:
        ValueError: for negative weights or both weights 0.
    """

    def __init__(
        self,
        lambda_tversky: float = 1.0,
        lambda_ce: float = 1.0,
        ce_weight: torch.Tensor | None = None,
        **tversky_kwargs,
    ) -> None:
        super().__init__()
        if lambda_tversky < 0 or lambda_ce < 0 or lambda_tversky + lambda_ce == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got {lambda_tversky} and {lambda_ce}")
        self.focal_tversky = FocalTverskyLoss(**tversky_kwargs)
        self.cross_entropy = torch.nn.CrossEntropyLoss(weight=ce_weight)
        self.lambda_tversky, self.lambda_ce = float(lambda_tversky), float(lambda_ce)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` (BNH[WD] logits) against ``target`` (B1H[WD] label map or BNH[WD] one-hot)."""
        _check_shapes(input, target, self.focal_tversky.to_onehot_y)
        labels = target[:, 0] if target.shape[1] == 1 else target.argmax(dim=1)
        ce = self.cross_entropy(input, labels.long())
        return self.lambda_tversky * self.focal_tversky(input, target) + self.lambda_ce * ce


def compute_tversky(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 0.5,
    beta: float = 0.5,
    include_background: bool = True,
    ignore_empty: bool = True,
) -> torch.Tensor:
    """Tversky index ``TP / (TP + alpha FP + beta FN)`` per sample and class of binarised one-hot tensors.

    Args:
        y_pred: binarised one-hot prediction, BCH[WD] (e.g. after ``AsDiscrete(argmax=True, to_onehot=C)``).
        y: one-hot ground truth of the same shape.
        alpha: weight of false positives, >= 0.
        beta: weight of false negatives, >= 0.
        include_background: if False, channel 0 is left out.
        ignore_empty: ground truth without the class gives NaN (left out of the reductions); if False it gives 1
            when the prediction is empty too and 0 otherwise, as :class:`monai.metrics.DiceMetric` does.

    Returns:
        Tensor of shape ``(B, C)`` (``C - 1`` classes without the background).

    Raises:
        ValueError: invalid weights, fewer than 3 dimensions, or shapes that differ (naming both).
    """
    alpha, beta = _check_weights(alpha, beta)
    if y_pred.ndim < 3:
        raise ValueError(f"y_pred should have at least 3 dimensions (batch, channel, spatial), got {y_pred.ndim}")
    if y.shape != y_pred.shape:
        raise ValueError(f"y_pred and y should have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    y_pred, y = y_pred.float(), y.float()
    axes = list(range(2, y_pred.ndim))
    tp = torch.sum(y * y_pred, dim=axes)
    fp = torch.sum((1.0 - y) * y_pred, dim=axes)
    fn = torch.sum(y * (1.0 - y_pred), dim=axes)
    denominator = tp + alpha * fp + beta * fn
    index = torch.where(denominator > 0, tp / denominator.clamp_min(1e-12), torch.zeros_like(tp))
    y_o = tp + fn
    if ignore_empty:
        return torch.where(y_o > 0, index, torch.full_like(index, float("nan")))
    empty_pred = (tp + fp) == 0
    return torch.where(y_o > 0, index, empty_pred.to(index.dtype))


class TverskyMetric(CumulativeIterationMetric):
    """Tversky index per class of binarised one-hot predictions, accumulated over iterations.

    Same conventions as :class:`monai.metrics.DiceMetric` and :class:`monai.metrics.MeanIoU`: ``y_pred`` and
    ``y`` are batch-first one-hot tensors (or lists of channel-first ones) with binarised values; reductions
    skip NaN (empty ground truth with ``ignore_empty``). ``alpha = beta = 0.5`` gives ``DiceMetric``'s values.

    Args:
        include_background: whether channel 0 (background) is scored.
        reduction: ``"none"``, ``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``,
            ``"sum_channel"`` (see :class:`monai.utils.MetricReduction`).
        get_not_nans: ``aggregate()`` returns ``(metric, not_nans)``.
        ignore_empty: see :func:`compute_tversky`.
        alpha: weight of false positives, >= 0.
        beta: weight of false negatives, >= 0.

    Raises:
        ValueError: invalid weights.
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        ignore_empty: bool = True,
        alpha: float = 0.5,
        beta: float = 0.5,
    ) -> None:
        super().__init__()
        self.alpha, self.beta = _check_weights(alpha, beta)
        self.include_background = include_background
        self.reduction = reduction
        self.get_not_nans = get_not_nans
        self.ignore_empty = ignore_empty

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The index of one batch, shape ``(B, C)``."""
        return compute_tversky(
            y_pred, y, self.alpha, self.beta, include_background=self.include_background, ignore_empty=self.ignore_empty
        )

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the accumulated ``(N, C)`` values with ``reduction`` (default: the constructor's).

        Raises:
            ValueError: if nothing tensor-like has been accumulated.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data).__name__}")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class TverskyIndex(IgniteMetricHandler):
    """Ignite handler of :class:`TverskyMetric`, used in bundle configs like :class:`monai.handlers.MeanDice`.

    Args:
        include_background: whether channel 0 (background) is scored.
        reduction: see :class:`TverskyMetric`.
        alpha: weight of false positives, >= 0.
        beta: weight of false negatives, >= 0.
        ignore_empty: see :func:`compute_tversky`.
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: keep the per-image values in ``engine.state.metric_details`` under the metric's name.
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        alpha: float = 0.5,
        beta: float = 0.5,
        ignore_empty: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = TverskyMetric(
            include_background=include_background,
            reduction=reduction,
            ignore_empty=ignore_empty,
            alpha=alpha,
            beta=beta,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
