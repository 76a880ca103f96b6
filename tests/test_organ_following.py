"""follow_edges: the cascade's kept runs grow while the segmenter finds the organ going on past the gate's edge."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from pipelines.inference.cascade import SliceGatedInferer
from pipelines.inference.organ_following import follow_edges, foreground_voxels
from pipelines.inference.slabs import Slab, slab_mask

N = 40


def _organ(slices, area=16):
    """A (X, Y, Z) mask with a square of ``area`` voxels on each of ``slices``."""
    mask = torch.zeros(8, 8, N, dtype=torch.bool)
    side = int(area**0.5)
    for k in slices:
        mask[:side, :side, k] = True
    return mask


class Segmenter:
    """Logits of a known mask, slab by slab; records the slabs it is asked for."""

    def __init__(self, mask):
        self.mask, self.calls = mask, []

    def logits(self, start, stop):
        fg = self.mask[..., start:stop].float() * 20.0 - 10.0
        return torch.stack([torch.zeros_like(fg), fg])

    def __call__(self, slab):
        self.calls.append(slab)
        return self.logits(slab.start, slab.stop)


def _run(mask, kept_slabs, segmented_slabs=None, min_voxels=4, depth=8):
    segmenter = Segmenter(mask)
    out = torch.full((2, 8, 8, N), -1e4)
    out[0] = 0
    segmented = slab_mask(segmented_slabs or kept_slabs, N)
    for s in segmented_slabs or kept_slabs:
        out[..., s.start : s.stop] = segmenter.logits(s.start, s.stop)
    kept = slab_mask(kept_slabs, N)
    followed = follow_edges(out, kept, segmented, segmenter, min_voxels, depth)
    return followed, kept, out, segmenter


def test_a_run_cut_short_grows_to_the_organ_and_one_slice_past_it():
    followed, kept, out, segmenter = _run(_organ(range(10, 30)), [Slab(15, 22)])
    assert followed == [Slab(9, 15), Slab(22, 31)]
    assert np.array_equal(np.flatnonzero(kept), np.arange(9, 31))
    assert torch.equal(out.argmax(0).bool()[..., 9:31], _organ(range(10, 30))[..., 9:31])
    # a window-deep slab ahead each time (a quarter window of context behind): 6 new slices per call
    assert segmenter.calls == [Slab(9, 17), Slab(20, 28), Slab(26, 34)]


def test_foreground_beyond_an_empty_slice_is_never_reached():
    mask = _organ([*range(10, 20), *range(22, 40)])  # the organ ends at 19; a false positive from 22 on
    followed, kept, _, _ = _run(mask, [Slab(12, 18)])
    assert followed == [Slab(9, 12), Slab(18, 21)] and not kept[21:].any()


def test_a_slice_wider_than_the_last_stops_the_growth():
    """An organ narrows to its tip; a slice that widens again is the segmenter labelling something else."""
    mask = _organ(range(15, 23)) | _organ(range(23, 26), area=9) | _organ(range(26, 31), area=25)
    followed, kept, _, _ = _run(mask, [Slab(15, 23)])
    assert followed == [Slab(14, 15), Slab(23, 26)] and not kept[26:].any()


def test_a_thin_edge_stops_the_growth_and_min_voxels_zero_turns_it_off():
    mask = _organ(range(10, 30), area=1)  # fewer voxels than min_voxels on every slice
    assert _run(mask, [Slab(15, 22)])[0] == []
    assert _run(_organ(range(10, 30)), [Slab(15, 22)], min_voxels=0)[0] == []


def test_growth_stops_at_another_run_and_at_the_volume_end():
    followed, kept, _, _ = _run(_organ(range(0, N)), [Slab(2, 6), Slab(20, 25)])
    assert kept.all() and followed == [Slab(0, 2), Slab(6, 20), Slab(25, N)]


def test_slices_segmented_for_context_are_used_not_segmented_again():
    mask = _organ(range(10, 30))
    followed, _, out, segmenter = _run(mask, [Slab(15, 22)], segmented_slabs=[Slab(8, 32)])
    assert followed == [Slab(9, 15), Slab(22, 31)] and segmenter.calls == []


def test_logits_of_slices_segmented_before_are_kept():
    mask = _organ(range(10, 30))
    segmenter = Segmenter(mask)
    out = torch.full((2, 8, 8, N), -1e4)
    out[0] = 0
    out[..., 15:22] = segmenter.logits(15, 22) * 2  # the slab's own logits: a growth slab must not overwrite them
    before = out[..., 15:22].clone()
    follow_edges(out, slab_mask([Slab(15, 22)], N), slab_mask([Slab(15, 22)], N), segmenter, 4, 8)
    assert torch.equal(out[..., 15:22], before)
    assert foreground_voxels(out[..., 25]) == 16 and foreground_voxels(out[..., 31]) == 0


class MiddleOnlyClassifier(torch.nn.Module):
    """Positive only on slices whose centre channel is very bright (the middle of the lesion)."""

    def forward(self, x):
        score = (x[:, x.shape[1] // 2].flatten(1).amax(1) > 1.5).float() * 20.0 - 10.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


class ThresholdSegmenter(torch.nn.Module):
    def forward(self, x):
        fg = (x[:, :1] > 0.5).float() * 20.0 - 10.0
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


@pytest.mark.parametrize("follow", [0, 4])
def test_the_cascade_follows_a_lesion_its_gate_cut_short(follow):
    volume = torch.zeros(1, 24, 20, N)
    volume[0, 8:14, 6:12, 10:30] = 1.0
    volume[0, 8:14, 6:12, 18:22] = 2.0  # the gate sees only these four slices
    sw = SlidingWindowInferer(roi_size=(16, 16, 8), sw_batch_size=2, overlap=0.25)
    inferer = SliceGatedInferer(
        MiddleOnlyClassifier(), sw, num_classes=2, image_size=(24, 20), min_slab_slices=8, follow_min_voxels=follow,
        smoothing_window=1,
    )  # fmt: skip
    mask = inferer(MetaTensor(volume[None]), ThresholdSegmenter()).argmax(1)[0]
    report = inferer.reports[-1]
    assert report["kept"] == [{"start": 18, "stop": 22}]
    if follow:
        assert report["followed"] == [{"start": 9, "stop": 18}, {"start": 22, "stop": 31}]
        assert torch.equal(mask.bool(), volume[0] > 0.5)
    else:
        assert report["followed"] == [] and mask.sum() == 36 * 4
