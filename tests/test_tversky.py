"""Tests of pipelines.models.tversky: focal Tversky loss, Tversky index metric and its ignite handler."""

import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MeanDice
from monai.losses import DiceLoss, TverskyLoss
from monai.metrics import DiceMetric
from monai.networks import one_hot

from pipelines.models.tversky import FocalTverskyLoss, TverskyIndex, TverskyMetric, compute_tversky


def random_logits_and_labels(seed: int = 0, shape=(2, 3, 6, 5, 4)):
    """Logits (B, C, ...) and a label map (B, 1, ...) with every class present."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g)
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    return logits, labels


def binarised_pair(seed: int = 0, n_classes: int = 3):
    """One-hot binarised prediction and ground truth (B, C, H, W) that agree in part; class 2 absent from item 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (2, 1, 8, 8), generator=g)
    y[1][y[1] == 2] = 1  # an empty ground-truth class
    noise = torch.randint(0, n_classes, y.shape, generator=g)
    y_pred = torch.where(torch.rand(y.shape, generator=g) < 0.7, y, noise)
    return one_hot(y_pred, n_classes), one_hot(y, n_classes)


# ---------------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("include_background", [True, False])
def test_loss_with_half_weights_and_gamma_one_is_the_dice_loss(include_background):
    logits, labels = random_logits_and_labels()
    # Tversky(0.5, 0.5) = 1 - (TP + s) / (TP + FP/2 + FN/2 + s) = Dice loss with twice the smoothing terms
    focal = FocalTverskyLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, alpha=0.5, beta=0.5, gamma=1.0
    )
    dice = DiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, smooth_nr=2e-5, smooth_dr=2e-5
    )
    torch.testing.assert_close(focal(logits, labels), dice(logits, labels))


def test_focal_loss_is_the_dice_loss_to_the_power_one_over_gamma():
    logits, labels = random_logits_and_labels(1)
    focal = FocalTverskyLoss(to_onehot_y=True, softmax=True, alpha=0.5, beta=0.5, gamma=4 / 3, reduction="none")
    dice = DiceLoss(to_onehot_y=True, softmax=True, smooth_nr=2e-5, smooth_dr=2e-5, reduction="none")
    expected = dice(logits, labels).reshape(2, 3) ** 0.75
    torch.testing.assert_close(focal(logits, labels), expected)


def test_gamma_one_matches_monai_tversky_loss_for_other_weights():
    logits, labels = random_logits_and_labels(2)
    kwargs = {"to_onehot_y": True, "softmax": True, "alpha": 0.3, "beta": 0.7, "include_background": False}
    torch.testing.assert_close(
        FocalTverskyLoss(gamma=1.0, **kwargs)(logits, labels), TverskyLoss(**kwargs)(logits, labels)
    )


def test_perfect_prediction_has_zero_loss_and_finite_gradient():
    _, labels = random_logits_and_labels(3)
    target = one_hot(labels, 3)
    probabilities = target.clone().requires_grad_(True)
    loss = FocalTverskyLoss()(probabilities, target)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(probabilities.grad).all()


def test_hand_computed_binary_example():
    # one sample, one class, 8 voxels: TP = 1, FP = 2, FN = 3
    pred = torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0]).reshape(1, 1, 8)
    target = torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0]).reshape(1, 1, 8)
    alpha, beta = 0.3, 0.7
    ti = 1.0 / (1.0 + alpha * 2 + beta * 3)  # = 1 / 3.7
    loss = FocalTverskyLoss(alpha=alpha, beta=beta, gamma=4 / 3, smooth_nr=0.0, smooth_dr=0.0)(pred, target)
    assert loss.item() == pytest.approx((1.0 - ti) ** 0.75, rel=1e-6)
    assert loss.item() == pytest.approx((2.7 / 3.7) ** 0.75, rel=1e-6)
    loss_g2 = FocalTverskyLoss(alpha=alpha, beta=beta, gamma=2.0, smooth_nr=0.0, smooth_dr=0.0)(pred, target)
    assert loss_g2.item() == pytest.approx(math.sqrt(2.7 / 3.7), rel=1e-6)


def test_hand_computed_soft_example_and_weights_asymmetry():
    # soft probabilities: TP = 0.8 + 0.6 = 1.4, FP = 0.1 + 0.3 = 0.4, FN = 0.2 + 0.4 = 0.6
    pred = torch.tensor([0.8, 0.6, 0.1, 0.3]).reshape(1, 1, 4)
    target = torch.tensor([1.0, 1, 0, 0]).reshape(1, 1, 4)
    for alpha, beta in ((0.2, 0.8), (0.8, 0.2)):
        ti = 1.4 / (1.4 + alpha * 0.4 + beta * 0.6)
        loss = FocalTverskyLoss(alpha=alpha, beta=beta, gamma=1.0, smooth_nr=0.0, smooth_dr=0.0)(pred, target)
        assert loss.item() == pytest.approx(1.0 - ti, rel=1e-6)
    # here FN (0.6) > FP (0.4): weighting false negatives more gives the larger loss
    heavy_fn = FocalTverskyLoss(alpha=0.2, beta=0.8, gamma=1.0)(pred, target)
    heavy_fp = FocalTverskyLoss(alpha=0.8, beta=0.2, gamma=1.0)(pred, target)
    assert heavy_fn > heavy_fp


def test_gradient_flows_to_logits():
    logits, labels = random_logits_and_labels(4)
    logits.requires_grad_(True)
    FocalTverskyLoss(to_onehot_y=True, softmax=True)(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    binary = torch.randn(2, 1, 5, 5, requires_grad=True)
    FocalTverskyLoss(sigmoid=True)(binary, (torch.rand(2, 1, 5, 5) > 0.5).float()).backward()
    assert torch.isfinite(binary.grad).all() and binary.grad.abs().sum() > 0


def test_gamma_above_one_weighs_easy_examples_up():
    # easy: TI = 0.9, hard: TI = 0.3 (binary, no smoothing)
    target = torch.tensor([1.0] * 10 + [0.0] * 10).reshape(1, 1, 20)
    easy = torch.tensor([1.0] * 9 + [0.0] + [0.0] * 10).reshape(1, 1, 20)  # TP 9, FN 1: TI = 9 / 9.5 with beta 0.5
    hard = torch.tensor([1.0] * 3 + [0.0] * 7 + [1.0] * 7 + [0.0] * 3).reshape(1, 1, 20)  # TP 3, FN 7, FP 7
    kwargs = {"alpha": 0.5, "beta": 0.5, "smooth_nr": 0.0, "smooth_dr": 0.0}
    tversky = {k: FocalTverskyLoss(gamma=1.0, **kwargs)(p, target).item() for k, p in (("easy", easy), ("hard", hard))}
    focal = {k: FocalTverskyLoss(gamma=4 / 3, **kwargs)(p, target).item() for k, p in (("easy", easy), ("hard", hard))}
    inverse = {k: FocalTverskyLoss(gamma=0.75, **kwargs)(p, target).item() for k, p in (("easy", easy), ("hard", hard))}
    assert tversky["easy"] == pytest.approx(1 - 9 / 9.5) and tversky["hard"] == pytest.approx(1 - 3 / 10)
    # gamma > 1: larger loss than Tversky, relatively most for the easy example
    assert focal["easy"] > tversky["easy"] and focal["hard"] > tversky["hard"]
    assert focal["easy"] / tversky["easy"] > focal["hard"] / tversky["hard"]
    # gamma < 1 (the "(1 - TI) ** 0.75"-style value passed as gamma = 0.75 means exponent 4/3 here): smaller loss
    assert inverse["easy"] < tversky["easy"] and inverse["hard"] < tversky["hard"]
    assert inverse["easy"] == pytest.approx(tversky["easy"] ** (4 / 3))


def test_reductions_and_output_shapes():
    logits, labels = random_logits_and_labels(5)
    kwargs = {"to_onehot_y": True, "softmax": True}
    none = FocalTverskyLoss(reduction="none", **kwargs)(logits, labels)
    assert none.shape == (2, 3)
    torch.testing.assert_close(FocalTverskyLoss(reduction="mean", **kwargs)(logits, labels), none.mean())
    torch.testing.assert_close(FocalTverskyLoss(reduction="sum", **kwargs)(logits, labels), none.sum())
    no_bg = FocalTverskyLoss(reduction="none", include_background=False, **kwargs)(logits, labels)
    torch.testing.assert_close(no_bg, none[:, 1:])
    assert FocalTverskyLoss(reduction="none", batch=True, **kwargs)(logits, labels).shape == (3,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -0.1}, "alpha=-0.1"),
        ({"beta": -1.0}, "beta=-1.0"),
        ({"alpha": 0.0, "beta": 0.0}, "both 0"),
        ({"gamma": 0.0}, "gamma must be > 0"),
        ({"gamma": -1.0}, "gamma must be > 0"),
        ({"reduction": "median"}, "median"),
        ({"smooth_dr": -1.0}, "smoothing"),
    ],
)
def test_invalid_arguments_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FocalTverskyLoss(**kwargs)


def test_shape_mismatches_name_both_shapes():
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 4\).*\(2, 3, 4, 4\)"):
        FocalTverskyLoss()(logits, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"one-channel label map.*\(2, 1, 4, 4\)"):
        FocalTverskyLoss(to_onehot_y=True)(logits, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        FocalTverskyLoss()(torch.zeros(2, 3), torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------------------------------
# metric and handler
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("ignore_empty", [True, False])
def test_metric_with_half_weights_is_the_dice_metric(include_background, ignore_empty):
    y_pred, y = binarised_pair()
    kwargs = {"include_background": include_background, "ignore_empty": ignore_empty, "reduction": "none"}
    tversky = TverskyMetric(alpha=0.5, beta=0.5, **kwargs)(y_pred, y)
    dice = DiceMetric(**kwargs)(y_pred, y)
    torch.testing.assert_close(tversky, dice, equal_nan=True)
    assert torch.isnan(tversky).any() == ignore_empty  # class 2 is empty in item 1


def test_metric_perfect_prediction_and_hand_computed_value():
    y_pred, y = binarised_pair(1)
    assert torch.all(compute_tversky(y, y, alpha=0.3, beta=0.7, ignore_empty=False) == 1.0)
    pred = torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0]).reshape(1, 1, 8)
    target = torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0]).reshape(1, 1, 8)  # TP 1, FP 2, FN 3
    value = compute_tversky(pred, target, alpha=0.2, beta=0.9)
    assert value.item() == pytest.approx(1.0 / (1.0 + 0.2 * 2 + 0.9 * 3))


def test_metric_empty_ground_truth_rules():
    empty = torch.zeros(1, 1, 4)
    some = torch.tensor([0.0, 1, 0, 0]).reshape(1, 1, 4)
    assert torch.isnan(compute_tversky(empty, empty)).all()
    assert compute_tversky(empty, empty, ignore_empty=False).item() == 1.0
    assert compute_tversky(some, empty, ignore_empty=False).item() == 0.0
    assert compute_tversky(empty, some).item() == 0.0


def test_metric_accumulates_and_reduces_like_dice_metric():
    tversky = TverskyMetric(include_background=False, reduction="mean_batch", get_not_nans=True)
    dice = DiceMetric(include_background=False, reduction="mean_batch", get_not_nans=True)
    for seed in range(3):
        y_pred, y = binarised_pair(seed)
        tversky(y_pred, y)
        dice(y_pred, y)
    (t_value, t_count), (d_value, d_count) = tversky.aggregate(), dice.aggregate()
    torch.testing.assert_close(t_value, d_value)
    torch.testing.assert_close(t_count, d_count)
    assert t_value.shape == (2,)
    assert tversky.aggregate("mean")[0].numel() == 1
    tversky.reset()
    with pytest.raises(ValueError, match="must be a PyTorch Tensor"):
        tversky.aggregate()


def test_metric_errors():
    with pytest.raises(ValueError, match=r"\(1, 2, 4\) and \(1, 3, 4\)"):
        TverskyMetric()(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="alpha=-1.0"):
        TverskyMetric(alpha=-1.0)


def test_ignite_handler_matches_mean_dice():
    batches = [binarised_pair(seed) for seed in range(3)]
    engine = Engine(lambda engine, batch: batch)
    TverskyIndex(include_background=False, alpha=0.5, beta=0.5).attach(engine, "tversky")
    MeanDice(include_background=False).attach(engine, "dice")
    TverskyIndex(include_background=False, alpha=0.2, beta=0.8).attach(engine, "recall_weighted")
    state = engine.run(batches, max_epochs=1)
    assert state.metrics["tversky"] == pytest.approx(state.metrics["dice"])
    assert 0.0 < state.metrics["recall_weighted"] < 1.0
    assert state.metric_details["tversky"].shape == (6, 2)


def test_focal_tversky_ce_is_the_weighted_sum_of_its_terms():
    from pipelines.models.tversky import FocalTverskyCELoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 6, 6, 4))
    combined = FocalTverskyCELoss(lambda_tversky=0.5, lambda_ce=2.0, to_onehot_y=True, softmax=True)
    ftl = FocalTverskyLoss(to_onehot_y=True, softmax=True)(logits, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels[:, 0])
    loss = combined(logits, labels)
    torch.testing.assert_close(loss, 0.5 * ftl + 2.0 * ce)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="not both 0"):
        FocalTverskyCELoss(lambda_tversky=0.0, lambda_ce=0.0)


def test_focal_tversky_ce_penalises_a_class_predicted_over_the_background():
    """Without the background class the Tversky term barely sees false positives; the CE term does."""
    from pipelines.models.tversky import FocalTverskyCELoss

    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    labels[..., 2:4, 2:4, 2:4] = 1
    right = torch.full((1, 2, 8, 8, 8), -5.0)
    right[:, 0] = 5.0
    right[:, 1][labels[:, 0] == 1], right[:, 0][labels[:, 0] == 1] = 5.0, -5.0
    everywhere = torch.full((1, 2, 8, 8, 8), -5.0)
    everywhere[:, 1] = 5.0  # the class predicted over the whole volume
    kwargs = {"to_onehot_y": True, "softmax": True, "include_background": False}
    combined = FocalTverskyCELoss(**kwargs)
    assert combined(everywhere, labels) - combined(right, labels) > 5.0
