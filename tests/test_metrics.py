"""Tests of pipelines.evaluation.metrics: per-class Dice handlers and the spacing-aware HD95."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.handlers import MeanDice

from pipelines.evaluation.metrics import (
    SpacingAwareHausdorffDistanceMetric,
    class_dice_handlers,
    class_output_transform,
    mask_dice,
    region_dice_handlers,
    region_output_transform,
)


def test_class_dice_handlers_names_one_handler_per_foreground_class():
    handlers = class_dice_handlers("val_", ["background", "liver", "Tumour core", "non-enhancing"])
    assert list(handlers) == ["val_liver_dice", "val_tumour_core_dice", "val_non_enhancing_dice"]
    assert all(isinstance(h, MeanDice) for h in handlers.values())


def test_class_dice_handlers_rejects_background_only():
    with pytest.raises(ValueError, match="at least one class"):
        class_dice_handlers("val_", ["background"])


def test_class_output_transform_picks_one_channel():
    pred = torch.zeros(3, 4, 4, 4)
    pred[2] = 1
    label = torch.zeros(3, 4, 4, 4)
    output = [{"pred": pred, "label": label}]
    preds, labels = class_output_transform(2)(output)
    assert preds[0].shape == (1, 4, 4, 4) and preds[0].sum() == 64
    assert labels[0].sum() == 0


def test_hausdorff_distance_is_in_millimetres_of_the_label_spacing():
    # a one-voxel shift along x at 3 mm spacing is 3 mm, not 1 voxel
    pred = torch.zeros(1, 2, 8, 8, 8)
    label = torch.zeros(1, 2, 8, 8, 8)
    pred[0, 1, 2:5, 2:5, 2:5] = 1
    label[0, 1, 3:6, 2:5, 2:5] = 1
    pred[0, 0] = 1 - pred[0, 1]
    label[0, 0] = 1 - label[0, 1]
    affine = torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0]))
    label = MetaTensor(label, affine=affine)
    metric = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=100)
    distance = metric(pred, label)
    assert float(distance) == pytest.approx(3.0)


def test_region_output_transform_merges_classes_into_one_binary_channel():
    pred = torch.zeros(4, 2, 2, 2)
    pred[1, 0] = 1  # necrosis
    pred[3, 1] = 1  # enhancing
    pred[0] = 1 - pred[1:].sum(0)
    output = [{"pred": pred, "label": pred.clone()}]
    preds, labels = region_output_transform([1, 2, 3])(output)
    assert preds[0].shape == (1, 2, 2, 2)
    assert preds[0].sum() == 8 and preds[0].max() == 1
    core, _ = region_output_transform([1, 3])(output)
    assert core[0].sum() == 8


def test_region_dice_handlers_names_and_rejects_background():
    handlers = region_dice_handlers("test_", {"whole tumour": [1, 2, 3], "enhancing": [3]})
    assert list(handlers) == ["test_whole_tumour_dice", "test_enhancing_dice"]
    with pytest.raises(ValueError, match="foreground"):
        region_dice_handlers("test_", {"all": [0, 1]})


def test_quiet_metrics_saver_writes_nan_summaries_without_numpy_warnings(tmp_path):
    """A class without a value in any case (no tumour anywhere) summarises to nan, with no RuntimeWarning."""
    import warnings

    import numpy as np
    from ignite.engine import Engine, Events

    from pipelines.evaluation.metrics import QuietMetricsSaver

    engine = Engine(lambda e, b: None)

    @engine.on(Events.ITERATION_COMPLETED)
    def _details(e):
        e.state.metrics = {"test_hd95_mm": 12.5}
        e.state.metric_details = {"test_hd95_mm": torch.tensor([[12.0, float("nan")], [13.0, float("nan")]])}

    names = [{"filename_or_obj": "case_a.nii.gz"}, {"filename_or_obj": "case_b.nii.gz"}]
    saver = QuietMetricsSaver(
        save_dir=str(tmp_path), metrics="*", metric_details="*", summary_ops="*", batch_transform=lambda b: b
    )
    saver.attach(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        engine.run([names], max_epochs=1)
    rows = (tmp_path / "test_hd95_mm_summary.csv").read_text().splitlines()
    assert rows[0].startswith("class,mean") and rows[1].startswith("class0,12.5")
    assert np.isnan(float(rows[2].split(",")[1]))  # class1 mean


def test_mask_dice_of_two_masks_and_of_two_empty_ones():
    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    a[:2], b[1:3] = True, True  # 10 and 10 pixels, 5 shared
    assert mask_dice(a, b) == 0.5
    assert mask_dice(a, a) == 1.0 and mask_dice(a, ~a) == 0.0
    assert np.isnan(mask_dice(np.zeros(3, bool), np.zeros(3, bool)))  # absent and not predicted
