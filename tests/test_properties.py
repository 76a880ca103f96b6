"""Property-based tests (hypothesis) of the cascade's slab selection and of the image/label geometry checks."""

import math

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.inference.slabs import covered_slices, select_slabs, slab_mask, smooth_probabilities
from pipelines.validation.volume_checks import check_pair

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILE_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)

probabilities = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=60)
# probabilities that are mostly 0 or 1, so that runs of positive slices are common
blocky = st.lists(st.sampled_from([0.0, 0.0, 1.0, 1.0, 0.3, 0.7]), min_size=1, max_size=60)
selection = st.fixed_dictionaries(
    {
        "threshold": st.floats(0.0, 1.0),
        "smoothing_window": st.sampled_from([1, 3, 5]),
        "smoothing": st.sampled_from(["mean", "median"]),
        "margin_slices": st.integers(0, 5),
        "min_run": st.integers(1, 4),
        "merge": st.sampled_from(["gaps", "all", "none"]),
        "merge_gap": st.integers(0, 4),
        "min_length": st.integers(1, 40),
    }
)


def _kept_runs(probs, kwargs) -> list[tuple[int, int]]:
    """Runs of positive (smoothed) slices at least ``min_run`` long: an independent reference."""
    positive = smooth_probabilities(probs, kwargs["smoothing_window"], kwargs["smoothing"]) >= kwargs["threshold"]
    runs, start = [], None
    for i, flag in enumerate([*positive, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return [(a, b) for a, b in runs if b - a >= kwargs["min_run"]]


@SETTINGS
@given(st.one_of(probabilities, blocky), selection)
def test_slabs_are_sorted_disjoint_inside_and_cover_every_positive_run(probs, kwargs):
    n = len(probs)
    slabs = select_slabs(probs, **kwargs)
    runs = _kept_runs(probs, kwargs)
    assert (slabs == []) == (runs == [])
    for slab in slabs:
        assert 0 <= slab.start < slab.stop <= n
        assert len(slab) >= min(kwargs["min_length"], n)
    for before, after in zip(slabs, slabs[1:], strict=False):
        assert before.stop <= after.start  # sorted and disjoint
        if kwargs["merge"] == "gaps":
            assert after.start - before.stop > kwargs["merge_gap"]
    if kwargs["merge"] == "all":
        assert len(slabs) <= 1
    mask = slab_mask(slabs, n)
    margin = kwargs["margin_slices"]
    for start, stop in runs:  # every positive slice, and the margin around it, is segmented
        assert mask[max(0, start - margin) : min(n, stop + margin)].all()
    assert mask.sum() == covered_slices(slabs)


@SETTINGS
@given(st.one_of(probabilities, blocky), selection)
def test_without_min_length_nothing_is_segmented_beyond_margin_and_gap(probs, kwargs):
    kwargs = {**kwargs, "min_length": 1}
    if kwargs["merge"] == "all":
        kwargs["merge"] = "none"
    slabs = select_slabs(probs, **kwargs)
    near = np.zeros(len(probs), dtype=bool)
    reach = kwargs["margin_slices"] + (kwargs["merge_gap"] if kwargs["merge"] == "gaps" else 0)
    for start, stop in _kept_runs(probs, kwargs):
        near[max(0, start - reach) : stop + reach] = True
    assert not (slab_mask(slabs, len(probs)) & ~near).any()


@SETTINGS
@given(probabilities, st.sampled_from([1, 3, 5, 7]), st.sampled_from(["mean", "median"]))
def test_smoothing_keeps_length_and_range(probs, window, method):
    smoothed = smooth_probabilities(probs, window, method)
    assert smoothed.shape == (len(probs),) and ((smoothed >= 0) & (smoothed <= 1)).all()
    if window == 1:
        np.testing.assert_array_equal(smoothed, probs)


@SETTINGS
@given(st.integers(1, 60), st.floats(0.0, 50.0), st.floats(0.1, 10.0))
def test_margin_in_mm_is_rounded_up_to_whole_slices(n, margin_mm, spacing):
    probs = np.zeros(n)
    probs[n // 2] = 1.0
    slabs = select_slabs(probs, margin_mm=margin_mm, slice_spacing_mm=spacing, merge="none")
    margin = math.ceil(margin_mm / spacing - 1e-9)
    assert slabs[0].start == max(0, n // 2 - margin) and slabs[0].stop == min(n, n // 2 + 1 + margin)


# ---- geometry of image and label -------------------------------------------------------------------------------
def _rotation(angles) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


geometries = st.fixed_dictionaries(
    {
        "shape": st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 6)),
        "angles": st.tuples(*[st.floats(-math.pi, math.pi)] * 3),
        "spacing": st.tuples(*[st.floats(0.3, 5.0)] * 3),
        "origin": st.tuples(*[st.floats(-300.0, 300.0)] * 3),
    }
)


def _affine(geometry) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = _rotation(geometry["angles"]) * np.asarray(geometry["spacing"])[None, :]
    affine[:3, 3] = geometry["origin"]
    return affine


def _write_pair(folder, shape, image_affine, label_affine, label_shape=None):
    image, label = folder / "image.nii.gz", folder / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), image_affine), image)
    nib.save(nib.Nifti1Image(np.zeros(label_shape or shape, np.uint8), label_affine), label)
    return image, label


@FILE_SETTINGS
@given(geometries)
def test_equal_geometry_passes(tmp_path, geometry):
    affine = _affine(geometry)
    image, label = _write_pair(tmp_path, geometry["shape"], affine, affine)
    assert check_pair(image, label) == []


@FILE_SETTINGS
@given(geometries, st.integers(0, 2), st.integers(0, 3), st.floats(0.01, 2.0), st.sampled_from([-1, 1]))
def test_affine_perturbation_beyond_tolerance_is_reported_naming_the_label(tmp_path, geometry, row, col, delta, sign):
    affine = _affine(geometry)
    moved = affine.copy()
    moved[row, col] += sign * delta
    image, label = _write_pair(tmp_path, geometry["shape"], affine, moved)
    problems = check_pair(image, label, atol=1e-3)
    assert problems, f"affine entry ({row}, {col}) moved by {sign * delta} went unnoticed"
    assert all(p.startswith(str(label)) for p in problems), problems


@FILE_SETTINGS
@given(geometries, st.integers(0, 2), st.integers(0, 3), st.floats(0.0, 2e-4))
def test_perturbation_within_tolerance_passes(tmp_path, geometry, row, col, delta):
    affine = _affine(geometry)
    moved = affine.copy()
    moved[row, col] += delta
    image, label = _write_pair(tmp_path, geometry["shape"], affine, moved)
    assert check_pair(image, label, atol=1e-3) == []


@FILE_SETTINGS
@given(geometries, st.integers(0, 2), st.integers(1, 3))
def test_shape_mismatch_is_reported_naming_the_label(tmp_path, geometry, axis, extra):
    affine = _affine(geometry)
    other = list(geometry["shape"])
    other[axis] += extra
    image, label = _write_pair(tmp_path, geometry["shape"], affine, affine, label_shape=tuple(other))
    problems = check_pair(image, label)
    assert len(problems) == 1 and problems[0].startswith(f"{label}: shape"), problems


@pytest.mark.parametrize("atol", [1e-3, 0.5])
def test_tolerance_is_the_boundary(tmp_path, atol):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    moved = affine.copy()
    moved[0, 3] += 2 * atol
    assert check_pair(*_write_pair(tmp_path, (3, 3, 3), affine, moved), atol=atol)
    moved[0, 3] = atol / 2
    assert check_pair(*_write_pair(tmp_path, (3, 3, 3), affine, moved), atol=atol) == []
