"""Tests of RandShortScan(d): a training patch made to look like a short scan in the sliding window."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from transforms import RandShortScan, RandShortScand


def _ramp(size: int = 12) -> torch.Tensor:
    """A (1, 3, 2, size) image whose slice k holds the value k."""
    return torch.arange(size, dtype=torch.float32).expand(1, 3, 2, size).clone()


def test_keeps_a_run_of_slices_centred_with_its_edge_slices_repeated():
    out = RandShortScan(prob=1.0, min_slices=3).set_random_state(0)(_ramp())
    values = out[0, 0, 0].tolist()
    assert out.shape == (1, 3, 2, 12)
    kept = sorted(set(values))
    n, start = len(kept), kept[0]
    assert 3 <= n <= 11 and kept == list(range(int(start), int(start) + n))  # one run of consecutive slices
    before = (12 - n) // 2
    assert values[:before] == [start] * before  # the first slice repeated before it
    assert values[before : before + n] == kept  # the run itself, in order
    assert values[before + n :] == [kept[-1]] * (12 - n - before)  # the last one after it


def test_matches_the_sliding_window_padding_of_a_scan_that_short():
    """The window the network sees when a scan of n slices is inferred with replicate padding is what the
    transform makes of a patch holding those n slices."""
    seen = {}

    def network(window):
        seen["window"] = window.clone()
        return window

    scan = torch.rand(1, 1, 4, 4, 5)
    SlidingWindowInferer(roi_size=(4, 4, 12), sw_batch_size=1, overlap=0, padding_mode="replicate")(scan, network)
    patch = torch.cat([scan, torch.rand(1, 1, 4, 4, 7)], dim=-1)[0]  # the scan's 5 slices, then others
    shortener = RandShortScan(prob=1.0, min_slices=5)
    shortener.set_random_state(0)
    shortener._do_transform, shortener._run = True, (0, 5)  # the run those 5 slices make
    torch.testing.assert_close(shortener(patch, randomize=False), seen["window"][0])


def test_prob_zero_and_too_short_images_are_unchanged():
    img = _ramp()
    assert RandShortScan(prob=0.0)(img) is img
    tiny = _ramp(4)
    assert RandShortScan(prob=1.0, min_slices=4)(tiny) is tiny


def test_keeps_the_type_and_metadata():
    meta = MetaTensor(_ramp(), affine=torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0])))
    out = RandShortScan(prob=1.0).set_random_state(1)(meta)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, meta.affine)
    array = RandShortScan(prob=1.0).set_random_state(1)(_ramp().numpy())
    assert isinstance(array, np.ndarray) and array.shape == (1, 3, 2, 12)
    np.testing.assert_array_equal(array, out.numpy())


def test_dictionary_twin_cuts_image_and_label_alike_and_allows_missing_keys():
    data = {"image": _ramp(), "label": _ramp() * 10}
    out = RandShortScand(["image", "label", "mask"], prob=1.0, allow_missing_keys=True).set_random_state(3)(data)
    torch.testing.assert_close(out["label"], out["image"] * 10)
    assert not torch.equal(out["image"], data["image"])
    assert "mask" not in out


def test_different_lengths_along_the_axis_name_the_keys():
    data = {"image": _ramp(12), "label": _ramp(10)}
    with pytest.raises(ValueError, match="differ in length"):
        RandShortScand(["image", "label"], prob=1.0)(data)


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_slices"):
        RandShortScan(min_slices=0)
    with pytest.raises(ValueError, match="channel-first"):
        RandShortScan(prob=1.0, axis=2)(torch.zeros(4, 4))
