"""The cascade's steps and SliceGatedInferer on a small phantom whose lesion sits in a known slab."""

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from pipelines.inference.cascade import (
    SliceGatedInferer,
    background_logits,
    crop_slab,
    paste_slab,
    score_slices,
    windows_along_slices,
)
from pipelines.inference.slabs import Slab

LESION = slice(12, 20)  # slices holding the bright lesion


class BrightnessClassifier(torch.nn.Module):
    """A 2-class slice classifier that calls a slice positive when its centre channel holds bright voxels."""

    def forward(self, x):
        centre = x[:, x.shape[1] // 2]
        score = (centre > 0.5).float().flatten(1).mean(1) * 200.0 - 1.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


class ThresholdSegmenter(torch.nn.Module):
    """A 2-class segmenter: foreground where the image is bright. Counts the voxels it is run on."""

    def __init__(self):
        super().__init__()
        self.voxels_seen = 0

    def forward(self, x):
        self.voxels_seen += x[:, 0].numel()
        fg = (x[:, :1] > 0.5).float() * 20.0 - 10.0
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


def _phantom(depth=40, spacing_z=2.5):
    volume = torch.zeros(1, 24, 20, depth)
    volume[0, 8:14, 6:12, LESION] = 1.0
    affine = torch.diag(torch.tensor([1.5, 1.5, spacing_z, 1.0]))
    return MetaTensor(volume, affine=affine, meta={"filename_or_obj": "/data/case_7.nii.gz"})


def _inferer(tmp_path=None, **kwargs):
    settings = {"threshold": 0.5, "margin_slices": 2, "context": 1, "image_size": (24, 20), "num_classes": 2}
    settings.update(kwargs)
    sw = SlidingWindowInferer(roi_size=(16, 16, 8), sw_batch_size=2, overlap=0.25)
    return SliceGatedInferer(BrightnessClassifier(), sw, report_dir=tmp_path, **settings)


def test_score_slices_finds_the_lesion_slices():
    probs = score_slices(BrightnessClassifier(), _phantom(), context=1, image_size=(24, 20), batch_size=7)
    assert probs.shape == (40,)
    positive = np.flatnonzero(probs >= 0.5)
    assert positive.min() == LESION.start and positive.max() == LESION.stop - 1


def test_score_slices_in_bf16_agrees_with_fp32():
    torch.manual_seed(0)
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )  # fmt: skip
    volume = _phantom() + 0.1 * torch.rand(1, 24, 20, 40)
    fp32 = score_slices(classifier, volume, image_size=(24, 20), precision="fp32")
    bf16 = score_slices(classifier, volume, image_size=(24, 20), precision="bf16")
    assert bf16.dtype == np.float64 and np.abs(bf16 - fp32).max() < 0.01
    with pytest.raises(ValueError, match="precision must be one of"):
        SliceGatedInferer(BrightnessClassifier(), None, num_classes=2, precision="int8")


def test_crop_and_paste_round_trip():
    volume = torch.arange(2 * 3 * 4 * 10, dtype=torch.float32).reshape(2, 3, 4, 10)
    slab = Slab(3, 7)
    part = crop_slab(volume, slab)
    assert part.shape == (2, 3, 4, 4)
    full = torch.zeros_like(volume)
    paste_slab(full, part, slab)
    assert torch.equal(full[..., 3:7], volume[..., 3:7]) and full[..., :3].abs().sum() == 0
    with pytest.raises(ValueError, match="cannot paste"):
        paste_slab(full, part, Slab(8, 12))


def test_cascade_segments_only_the_slab_and_keeps_geometry(tmp_path):
    image = _phantom()[None]
    segmenter = ThresholdSegmenter()
    inferer = _inferer(tmp_path, min_slab_slices=8)
    out = inferer(image, segmenter)
    assert out.shape == (1, 2, 24, 20, 40)
    assert isinstance(out, MetaTensor) and torch.allclose(out.affine, image.affine)
    mask = out.argmax(1)[0]
    assert torch.equal(mask.bool(), image[0, 0] > 0.5)  # the lesion and nothing else
    report = json.loads((tmp_path / "case_7_cascade.json").read_text())
    assert report["slabs"] == [{"start": LESION.start - 2, "stop": LESION.stop + 2}]
    assert report["slices_segmented"] == 12 and report["voxels_total"] == 24 * 20 * 40
    assert len(report["slice_probabilities"]) == 40
    assert set(report["seconds"]) == {"classify", "segment", "total"}
    # sliding windows ran over the 12-slice slab only (windows overlap, so count positions, not the volume)
    full = ThresholdSegmenter()
    _inferer(enabled=False)(image, full)
    assert 0 < segmenter.voxels_seen < full.voxels_seen


def test_no_positive_slice_skips_the_segmenter(tmp_path):
    image = MetaTensor(torch.zeros(1, 1, 24, 20, 30))
    segmenter = ThresholdSegmenter()
    out = _inferer(tmp_path)(image, segmenter)
    assert segmenter.voxels_seen == 0
    assert torch.equal(out.argmax(1), torch.zeros(1, 24, 20, 30, dtype=torch.long))
    assert json.loads((tmp_path / "case_0_cascade.json").read_text())["slabs"] == []


def test_margin_in_mm_uses_the_slice_spacing():
    image = _phantom(spacing_z=2.5)[None]
    inferer = _inferer(margin_slices=0, margin_mm=5.0)
    inferer(image, ThresholdSegmenter())
    assert inferer.reports[-1]["slabs"] == [{"start": LESION.start - 2, "stop": LESION.stop + 2}]


def test_short_slab_grows_to_the_window_depth():
    volume = torch.zeros(1, 1, 24, 20, 40)
    volume[0, 0, 8:14, 6:12, 30] = 1.0
    inferer = _inferer(margin_slices=0, min_slab_slices=8)
    inferer(MetaTensor(volume), ThresholdSegmenter())
    (slab,) = inferer.reports[-1]["slabs"]
    assert slab["stop"] - slab["start"] == 8 and slab["start"] <= 30 < slab["stop"]


def test_background_logits_softmax_to_background():
    probs = torch.softmax(background_logits(3, (2, 2, 2)), dim=0)
    assert torch.allclose(probs[0], torch.ones(2, 2, 2))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), ("False", False), ("false", False), ("0", False), ("no", False)],
)
def test_enabled_reads_command_line_strings(value, expected):
    assert _inferer(enabled=value).enabled is expected


def test_enabled_rejects_junk():
    with pytest.raises(ValueError, match=r"use_cascade\) must be true or false, got 'maybe'"):
        _inferer(enabled="maybe")


def test_context_slices_are_segmented_but_never_labelled():
    """A slab grown to the window's depth gives the segmenter context; the slices the gate rejected stay empty."""
    image = _phantom()
    image[0, 2:5, 2:5, 30:34] = 1.0  # bright outside the lesion's slab: the classifier will not keep these slices
    inferer = _inferer(min_slab_slices=30, threshold=0.9)
    inferer.classifier = LesionOnlyClassifier()
    mask = inferer(image[None], ThresholdSegmenter()).argmax(1)[0]
    report = inferer.reports[-1]
    assert report["kept"] == [{"start": LESION.start - 2, "stop": LESION.stop + 2}] and report["slices_kept"] == 12
    assert report["slabs"] == [{"start": 1, "stop": 31}]  # grown about its centre: it reaches bright slice 30
    assert mask[..., 30:34].sum() == 0  # bright, slice 30 inside the slab, but rejected by the gate
    assert torch.equal(mask[..., LESION].bool(), image[0, ..., LESION] > 0.5)


class LesionOnlyClassifier(torch.nn.Module):
    """Positive only on slices whose bright voxels fill the lesion's 6 x 6 square (not the 3 x 3 one elsewhere)."""

    def forward(self, x):
        centre = x[:, x.shape[1] // 2]
        score = ((centre > 0.5).float().flatten(1).sum(1) > 20).float() * 20.0 - 10.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


class CountingClassifier(BrightnessClassifier):
    """BrightnessClassifier that counts the slices it classifies."""

    def __init__(self):
        super().__init__()
        self.slices_seen = 0

    def forward(self, x):
        self.slices_seen += x.shape[0]
        return super().forward(x)


@pytest.mark.parametrize("stride", [2, 3, 5])
def test_coarse_to_fine_scoring_finds_each_edge_with_fewer_slices(stride):
    volume = _phantom(depth=60)
    every = score_slices(BrightnessClassifier(), volume, image_size=(24, 20))
    counting = CountingClassifier()
    coarse = score_slices(counting, volume, image_size=(24, 20), stride=stride)
    assert coarse.shape == (60,) and np.isfinite(coarse).all()
    np.testing.assert_array_equal(coarse >= 0.5, every >= 0.5)  # the same positive slices, edges to the slice
    assert counting.slices_seen < 60 * (1 / stride + 0.3)


def test_stride_is_reported_and_checked():
    inferer = _inferer(stride=2)
    inferer(_phantom()[None], ThresholdSegmenter())
    assert inferer.reports[-1]["classifier_stride"] == 2
    assert inferer.reports[-1]["kept"] == [{"start": LESION.start - 2, "stop": LESION.stop + 2}]
    with pytest.raises(ValueError, match="cascade_stride"):
        _inferer(stride=0)


def test_report_keeps_the_slice_spacing_without_a_margin_in_mm():
    inferer = _inferer(margin_slices=2)
    inferer(_phantom(spacing_z=2.5)[None], ThresholdSegmenter())
    assert inferer.reports[-1]["slice_spacing_mm"] == 2.5


class WindowCounter(torch.nn.Module):
    """Background everywhere; counts the sliding-window positions it is run on."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        return torch.cat([torch.ones_like(x[:, :1]), torch.zeros_like(x[:, :1])], dim=1)


@pytest.mark.parametrize("depth", [5, 8, 9, 14, 15, 40])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_windows_along_slices_counts_as_monai_places_them(depth, overlap):
    sw = SlidingWindowInferer(roi_size=(24, 20, 8), sw_batch_size=1, overlap=overlap)
    counter = WindowCounter()
    sw(torch.zeros(1, 1, 24, 20, depth), counter)
    assert windows_along_slices(sw, [Slab(0, depth)]) == counter.windows
    assert windows_along_slices(sw, [Slab(0, depth), Slab(50, 50 + depth)]) == 2 * counter.windows
    assert windows_along_slices(torch.nn.Identity(), [Slab(0, depth)]) is None


def test_a_gate_that_keeps_most_slices_runs_the_segmenter_once_on_the_whole_volume():
    """Slabs needing as many windows as the volume: one pass (no seams, no extra cost); rejected slices stay empty."""
    image = _phantom(depth=14)
    image[0, 8:14, 6:12, 1:3] = 1.0  # a second bright run near the top: two slabs, each a window deep
    image[0, 2:5, 2:5, 5] = 1.0  # bright, but too small for the gate: segmented in the one pass, never labelled
    inferer = _inferer(margin_slices=0, min_slab_slices=8)
    inferer.classifier = LesionOnlyClassifier()
    segmenter = ThresholdSegmenter()
    mask = inferer(image[None], segmenter).argmax(1)[0]
    report = inferer.reports[-1]
    assert report["one_pass"] is True and report["slabs"] == [{"start": 0, "stop": 14}]
    assert report["kept"] == [{"start": 1, "stop": 3}, {"start": 12, "stop": 14}]
    assert mask[..., 13].sum() == 36 and mask[..., 3:12].sum() == 0  # the lesion only, on kept slices only
    full = ThresholdSegmenter()
    _inferer(enabled=False)(image[None], full)
    assert segmenter.voxels_seen == full.voxels_seen


def test_margin_in_mm_reads_the_slice_spacing_of_a_volume_built_without_its_channel():
    """A MetaTensor made from an (X, Y, Z) array caches a spatial rank of 2 (``pixdim`` is then in-plane only)."""
    volume = _phantom(spacing_z=2.5)[0]
    image = MetaTensor(volume.as_tensor(), affine=volume.affine, meta={"filename_or_obj": "case_7.nii.gz"})[None]
    assert len(image.pixdim) == 2  # MONAI's cached rank: 1.5 mm would be taken for the slice spacing
    inferer = _inferer(margin_slices=0, margin_mm=5.0)
    inferer(image[None], ThresholdSegmenter())
    assert inferer.reports[-1]["slice_spacing_mm"] == 2.5
    assert inferer.reports[-1]["slabs"] == [{"start": LESION.start - 2, "stop": LESION.stop + 2}]
