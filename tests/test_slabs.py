"""Tests of pipelines.inference.slabs: smoothing, thresholding, margins, merging and validation of slab selection."""

import json

import numpy as np
import pytest

from pipelines.inference.slabs import Slab, covered_slices, select_slabs, slab_mask, slabs_of, smooth_probabilities


def probs_with_runs(n: int, runs: list[tuple[int, int]], high: float = 0.9, low: float = 0.1) -> np.ndarray:
    """``n`` slice probabilities, ``high`` on the half-open ranges ``runs`` and ``low`` elsewhere."""
    probs = np.full(n, low)
    for start, stop in runs:
        probs[start:stop] = high
    return probs


def test_slab_basics():
    slab = Slab(np.int64(3), 7)
    assert len(slab) == 4
    assert isinstance(slab.start, int) and not isinstance(slab.start, np.integer)
    assert slab.to_dict() == {"start": 3, "stop": 7}
    assert json.loads(json.dumps(slab.to_dict())) == {"start": 3, "stop": 7}
    assert np.arange(10)[slab.as_slice()].tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="greater than"):
        Slab(5, 5)
    with pytest.raises(ValueError, match=">= 0"):
        Slab(-1, 2)
    with pytest.raises(ValueError, match="integer"):
        Slab(1.5, 3)


def test_no_positive_slice_gives_empty_list():
    assert select_slabs(np.full(20, 0.2)) == []
    assert select_slabs(np.zeros(5), threshold=0.01, margin_slices=3, merge="all") == []


def test_all_positive_gives_one_slab_over_the_volume():
    assert select_slabs(np.full(12, 0.8)) == [Slab(0, 12)]
    assert select_slabs(np.full(12, 0.8), margin_slices=5, merge="none") == [Slab(0, 12)]


def test_threshold_is_inclusive():
    probs = np.array([0.1, 0.5, 0.5, 0.49])
    assert select_slabs(probs, threshold=0.5) == [Slab(1, 3)]


def test_several_runs_separate_with_merge_none():
    probs = probs_with_runs(30, [(2, 5), (10, 14), (20, 21)])
    assert select_slabs(probs, merge="none") == [Slab(2, 5), Slab(10, 14), Slab(20, 21)]
    # "gaps" with merge_gap=0 does not bridge runs with unselected slices between them either
    assert select_slabs(probs, merge="gaps", merge_gap=0) == [Slab(2, 5), Slab(10, 14), Slab(20, 21)]


def test_several_runs_merged_with_merge_all():
    probs = probs_with_runs(30, [(2, 5), (10, 14), (20, 21)])
    assert select_slabs(probs, merge="all") == [Slab(2, 21)]
    assert select_slabs(probs, merge="all", margin_slices=1) == [Slab(1, 22)]


def test_runs_merged_by_gap():
    probs = probs_with_runs(30, [(2, 5), (10, 14), (20, 21)])
    # gaps are 10 - 5 = 5 and 20 - 14 = 6 slices
    assert select_slabs(probs, merge_gap=4) == [Slab(2, 5), Slab(10, 14), Slab(20, 21)]
    assert select_slabs(probs, merge_gap=5) == [Slab(2, 14), Slab(20, 21)]
    assert select_slabs(probs, merge_gap=6) == [Slab(2, 21)]
    # margins shrink the gaps: with 1 slice on each side the gaps become 3 and 4
    assert select_slabs(probs, margin_slices=1, merge_gap=3) == [Slab(1, 15), Slab(19, 22)]


def test_merge_none_still_merges_overlapping_slabs_but_not_touching_ones():
    probs = probs_with_runs(30, [(5, 8), (12, 15)])
    # margin 2: [3, 10) and [10, 17) touch -> kept apart; margin 3: [2, 11) and [9, 18) overlap -> merged
    assert select_slabs(probs, margin_slices=2, merge="none") == [Slab(3, 10), Slab(10, 17)]
    assert select_slabs(probs, margin_slices=3, merge="none") == [Slab(2, 18)]
    # whereas "gaps" merges touching slabs even with merge_gap=0
    assert select_slabs(probs, margin_slices=2, merge="gaps") == [Slab(3, 17)]


def test_runs_touching_first_and_last_slice():
    probs = probs_with_runs(20, [(0, 3), (17, 20)])
    assert select_slabs(probs, merge="none") == [Slab(0, 3), Slab(17, 20)]
    # edge padding keeps the end slices positive under smoothing
    assert select_slabs(probs, smoothing_window=3, smoothing="median", merge="none") == [Slab(0, 3), Slab(17, 20)]
    assert select_slabs(probs, smoothing_window=3, smoothing="mean", merge="none") == [Slab(0, 3), Slab(17, 20)]


def test_margin_beyond_the_volume_is_clipped():
    probs = probs_with_runs(10, [(1, 3), (8, 9)])
    assert select_slabs(probs, margin_slices=4, merge="none") == [Slab(0, 10)]
    assert select_slabs(probs_with_runs(10, [(4, 6)]), margin_slices=100) == [Slab(0, 10)]
    assert select_slabs(probs_with_runs(40, [(1, 2), (38, 39)]), margin_slices=3, merge="none") == [
        Slab(0, 5),
        Slab(35, 40),
    ]


def test_margin_in_mm_with_spacing():
    probs = probs_with_runs(40, [(20, 22)])
    # 5 mm / 2.5 mm = 2 slices exactly; 6 mm / 2.5 mm = 2.4 -> rounded up to 3 slices
    assert select_slabs(probs, margin_mm=5.0, slice_spacing_mm=2.5) == [Slab(18, 24)]
    assert select_slabs(probs, margin_mm=6.0, slice_spacing_mm=2.5) == [Slab(17, 25)]
    assert select_slabs(probs, margin_mm=0.0, slice_spacing_mm=2.5) == [Slab(20, 22)]
    # no margin needs no spacing: the cascade passes none when cascade_margin_mm is 0
    assert (
        select_slabs(probs, margin_mm=0.0) == select_slabs(probs, margin_mm=0, slice_spacing_mm=None) == [Slab(20, 22)]
    )
    # floating point: 1.1 / 0.1 == 11.000000000000002 must stay 11 slices
    assert select_slabs(probs, margin_mm=1.1, slice_spacing_mm=0.1) == [Slab(9, 33)]


def test_margin_mm_errors():
    probs = probs_with_runs(10, [(4, 6)])
    with pytest.raises(ValueError, match="slice_spacing_mm"):
        select_slabs(probs, margin_mm=5.0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        select_slabs(probs, margin_slices=2, margin_mm=5.0, slice_spacing_mm=2.5)
    with pytest.raises(ValueError, match="slice_spacing_mm must be"):
        select_slabs(probs, margin_mm=5.0, slice_spacing_mm=0.0)
    with pytest.raises(ValueError, match="margin_mm must be >= 0"):
        select_slabs(probs, margin_mm=-1.0, slice_spacing_mm=2.5)


def test_median_smoothing_removes_spike_and_fills_hole():
    probs = np.array([0.0, 0.0, 0.0, 0.95, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.0, 0.0])
    assert select_slabs(probs, merge="none") == [Slab(3, 4), Slab(7, 10), Slab(11, 14)]
    smoothed = smooth_probabilities(probs, window=3, method="median")
    assert smoothed[3] == 0.0  # the isolated spike is gone
    assert smoothed[10] == pytest.approx(0.9)  # the one-slice hole is filled
    assert select_slabs(probs, smoothing_window=3, smoothing="median", merge="none") == [Slab(7, 14)]


def test_smoothing_mean_values_and_edges():
    probs = np.array([1.0, 0.0, 0.0, 0.0, 0.5])
    smoothed = smooth_probabilities(probs, window=3, method="mean")
    # edge padding repeats the end values: [1, 1, 0, 0, 0, 0.5, 0.5]
    np.testing.assert_allclose(smoothed, [2 / 3, 1 / 3, 0.0, 0.5 / 3, 1 / 3])
    np.testing.assert_array_equal(smooth_probabilities(probs, window=1), probs)
    assert smooth_probabilities(probs, window=1) is not probs
    # a window longer than the volume still works
    assert smooth_probabilities(probs, window=11, method="median").shape == (5,)


def test_smoothing_validation():
    probs = np.full(5, 0.5)
    for window in (0, 2, -3, 1.0, True):
        with pytest.raises(ValueError, match="window"):
            smooth_probabilities(probs, window=window)
    with pytest.raises(ValueError, match="method"):
        smooth_probabilities(probs, window=3, method="gaussian")


def test_min_run_drops_short_runs_before_margins():
    probs = probs_with_runs(30, [(2, 3), (8, 10), (15, 19)])
    assert select_slabs(probs, min_run=2, merge="none") == [Slab(8, 10), Slab(15, 19)]
    assert select_slabs(probs, min_run=3, merge="none", margin_slices=2) == [Slab(13, 21)]
    assert select_slabs(probs, min_run=5) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": np.full((4, 4), 0.5)}, "1-D"),
        ({"probs": []}, "empty"),
        ({"probs": [0.1, np.nan, 0.3]}, "finite"),
        ({"probs": [0.1, np.inf]}, "finite"),
        ({"probs": [0.1, 1.2, 0.3]}, r"\[0, 1\]"),
        ({"probs": [-0.1, 0.5]}, r"\[0, 1\]"),
        ({"probs": ["a", "b"]}, "array of numbers"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": None}, "threshold"),
        ({"min_run": 0}, "min_run"),
        ({"merge": "some"}, "merge must be one of"),
        ({"merge_gap": -1}, "merge_gap"),
        ({"margin_slices": -2}, "margin_slices"),
        ({"smoothing_window": 4}, "odd"),
        ({"smoothing": "max", "smoothing_window": 3}, "method"),
    ],
)
def test_invalid_inputs_raise_clear_errors(kwargs, message):
    arguments = {"probs": probs_with_runs(10, [(3, 6)]), **kwargs}
    with pytest.raises(ValueError, match=message):
        select_slabs(**arguments)


def test_slab_mask_and_covered_slices():
    slabs = [Slab(1, 3), Slab(6, 9)]
    mask = slab_mask(slabs, 10)
    assert mask.dtype == bool
    assert mask.tolist() == [False, True, True, False, False, False, True, True, True, False]
    assert covered_slices(slabs) == 5 == int(mask.sum())
    assert covered_slices([Slab(0, 5), Slab(3, 8)]) == 8  # overlapping slices count once
    assert covered_slices([]) == 0
    assert not slab_mask([], 4).any()
    with pytest.raises(ValueError, match="beyond"):
        slab_mask([Slab(2, 11)], 10)
    with pytest.raises(ValueError, match="n must be"):
        slab_mask(slabs, 0)


def test_selected_slabs_cover_every_positive_slice():
    rng = np.random.default_rng(0)
    for _ in range(20):
        probs = rng.random(50)
        slabs = select_slabs(probs, threshold=0.7, margin_slices=1, merge="none")
        mask = slab_mask(slabs, 50)
        assert mask[probs >= 0.7].all()
        assert all(a.stop <= b.start for a, b in zip(slabs[:-1], slabs[1:], strict=True))  # sorted, no overlap


def test_min_length_grows_short_slabs_about_their_centre_within_the_volume():
    probs = np.zeros(40)
    probs[20] = 1.0
    probs[1] = 1.0
    slabs = select_slabs(probs, min_length=8, merge="none")
    assert [(s.start, s.stop) for s in slabs] == [(0, 8), (17, 25)]
    assert [(s.start, s.stop) for s in select_slabs(probs[:5], min_length=8)] == [(0, 5)]
    long_run = np.ones(12)
    assert [(s.start, s.stop) for s in select_slabs(long_run, min_length=8)] == [(0, 12)]


def test_slabs_of_is_the_inverse_of_slab_mask():
    slabs = [Slab(0, 2), Slab(5, 6), Slab(9, 12)]
    assert slabs_of(slab_mask(slabs, 12)) == slabs
    assert slabs_of(np.zeros(4, dtype=bool)) == []
