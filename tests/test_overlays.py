"""Overlay strips: which axial slices are shown, the grey-level range, and the PNG written."""

import numpy as np
import pytest
from PIL import Image

from pipelines.reports.overlays import (
    class_colour,
    display_range,
    save_overlay_strip,
    save_radiograph_overlay,
    select_slices,
)


def _maps(depth: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((8, 8, depth), np.uint8), np.zeros((8, 8, depth), np.uint8)


def test_slices_ranked_by_ground_truth_pathology_not_by_the_organ():
    label, pred = _maps()
    label[:, :, 1] = 1  # organ everywhere on slice 1: 64 voxels, but no pathology
    label[0, :2, 3] = 2  # 2 tumour voxels
    label[0, :3, 6] = 2  # 3
    label[0, :1, 8] = 2  # 1
    assert select_slices(label, pred, pathology_classes=[2], num_slices=2) == [3, 6]
    assert select_slices(label, pred, pathology_classes=[2], num_slices=3) == [3, 6, 8]


def test_prediction_breaks_ties_and_speaks_when_the_ground_truth_has_no_pathology():
    label, pred = _maps()
    label[0, 0, 2] = label[0, 0, 5] = 2  # one tumour voxel on slices 2 and 5
    pred[0, :2, 5] = 2
    assert select_slices(label, pred, [2], num_slices=1) == [5]
    healthy, pred = _maps()
    healthy[:, :, 4] = 1
    pred[1, :3, 7] = 2  # a false positive
    pred[1, :1, 0] = 2
    assert select_slices(healthy, pred, [2], num_slices=2) == [0, 7]


def test_falls_back_to_all_foreground_then_to_the_centre():
    label, pred = _maps(9)
    label[:, :2, 6] = 1  # 16 organ voxels
    pred[:, :1, 2] = 1  # 8
    assert select_slices(label, pred, [2], num_slices=2) == [2, 6]
    empty, none = _maps(9)
    assert select_slices(empty, none, [2], num_slices=3) == [3, 4, 5]  # centre 4, then 3 before 5


def test_min_gap_spreads_the_slices_and_fills_when_the_volume_is_short():
    label, pred = _maps(8)
    for z, count in zip(range(8), [0, 5, 6, 7, 6, 5, 0, 1], strict=True):
        label[0, :count, z] = 2
    assert select_slices(label, pred, [2], num_slices=3, min_gap=1) == [2, 3, 4]
    assert select_slices(label, pred, [2], num_slices=3, min_gap=2) == [1, 3, 5]
    assert select_slices(label, pred, [2], num_slices=3, min_gap=5) == [2, 3, 4]  # only 3 then the best others
    assert select_slices(label, pred, [2], num_slices=20) == list(range(8))


@pytest.mark.parametrize(
    "label_shape, num_slices, min_gap", [((4, 5, 5), 2, 1), ((4, 4), 2, 1), ((4, 4, 5), 0, 1), ((4, 4, 5), 1, 0)]
)
def test_select_slices_rejects_bad_input(label_shape, num_slices, min_gap):
    with pytest.raises(ValueError):
        select_slices(np.zeros(label_shape), np.zeros((4, 4, 5)), [1], num_slices, min_gap)


def test_display_range_uses_the_window_or_the_non_zero_percentiles():
    assert display_range(np.zeros((3, 3, 3)), window=(-175, 250)) == (-175.0, 250.0)
    image = np.zeros((10, 10, 1))
    image[:, :, 0].flat[:] = np.linspace(1, 100, 100)  # no zero: the 1st..99th percentile of 1..100
    low, high = display_range(image)
    assert low == pytest.approx(1.99) and high == pytest.approx(99.01)
    assert display_range(np.zeros((2, 2, 2))) == (0.0, 1.0)  # flat image: a non-empty range


def test_class_colours_differ_and_background_has_none():
    assert len({class_colour(i) for i in range(1, 5)}) == 4
    with pytest.raises(ValueError):
        class_colour(0)


def test_overlay_strip_is_a_png_of_the_documented_size(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 16, 6)).astype(np.float32)
    label = np.zeros((20, 16, 6), np.uint8)
    label[5:12, 4:10, 2:4] = 1
    label[7:9, 5:7, 3] = 2
    path = save_overlay_strip(
        tmp_path / "out" / "case.png", image, label, label, ["background", "liver", "tumour"], [2, 3, 4], "case"
    )
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (3 * 250, 830)
        assert np.asarray(png.convert("L")).std() > 10  # not blank
    assert sorted(p.name for p in path.parent.iterdir()) == ["case.png"]  # no temporary left
    with pytest.raises(ValueError):
        save_overlay_strip(tmp_path / "bad.png", image, label[:, :, :5], label, ["b", "l"], [1], "bad")


def test_radiograph_overlay_is_upright_and_checks_its_input(tmp_path):
    """A radiograph as the PIL reader loads it is (width, height): the top rows of the film are the low second
    index; they must come out at the top of each panel."""
    image = np.zeros((40, 30), np.float32)  # (width, height)
    image[:, :8] = 1.0  # the top of the film is bright
    label = np.zeros((40, 30), np.uint8)
    path = save_radiograph_overlay(tmp_path / "xr.png", image, label, label, ["background", "lung"], "film")
    with Image.open(path) as png:
        assert png.size == (3 * 250, 330)
        grey = np.asarray(png.convert("L"), dtype=np.float32)
    panel = grey[40:300, 10:240]  # the first panel, below the titles
    rows = np.nonzero((panel > 5).any(axis=1) & (panel < 250).any(axis=1))[0]
    top, bottom = panel[rows[0] : rows[0] + 10], panel[rows[-1] - 10 : rows[-1]]
    assert top.mean() > bottom.mean() + 50
    with pytest.raises(ValueError, match="must be 2D of one shape"):
        save_radiograph_overlay(tmp_path / "bad.png", image, label[:, :5], label, ["b", "l"], "bad")
