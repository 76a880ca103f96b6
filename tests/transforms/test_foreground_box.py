"""``InForegroundBox(d)``: a label post-processing step run on the foreground's bounding box gives exactly the
label map it gives on the whole volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent, RemoveSmallObjects

from transforms import InForegroundBox, InForegroundBoxd, KeepLargestComponent
from transforms.foreground_box import foreground_box


def _label(seed: int = 0) -> MetaTensor:
    """A (1, 40, 36, 30) label map: a liver-sized blob with a tumour, and small islands of both classes."""
    rng = np.random.default_rng(seed)
    values = np.zeros((1, 40, 36, 30), np.uint8)
    values[0, 10:25, 8:22, 5:18] = 1
    values[0, 14:18, 12:15, 8:11] = 2
    for _ in range(6):
        x, y, z = rng.integers(2, 28, size=3)
        values[0, x : x + 2, y : y + 2, z : z + 2] = rng.integers(1, 3)
    return MetaTensor(torch.as_tensor(values), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_largest_component_in_the_box_equals_the_whole_volume(seed):
    step = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False)
    label = _label(seed)
    expected = step(label.clone())
    result = InForegroundBox(step)(label)
    torch.testing.assert_close(torch.as_tensor(result), torch.as_tensor(expected))
    assert isinstance(result, MetaTensor) and torch.equal(result.affine, label.affine)


def test_remove_small_objects_by_measure_in_the_box_equals_the_whole_volume():
    step = RemoveSmallObjects(min_size=100.0, by_measure=True)  # mm^3: islands of 8 voxels of 12 mm^3 go
    label = (_label(3) > 0).to(torch.uint8)  # a lesion mask, as the lung bundle's
    expected = step(label.clone())
    result = InForegroundBoxd("pred", step)({"pred": label})["pred"]
    torch.testing.assert_close(torch.as_tensor(result), torch.as_tensor(expected))
    assert int(torch.as_tensor(result).ne(0).sum()) < int(label.ne(0).sum())  # something was removed


def test_no_foreground_and_numpy_input():
    empty = np.zeros((1, 5, 5, 5), np.uint8)
    assert foreground_box(empty) is None
    assert InForegroundBox(KeepLargestConnectedComponent())(empty) is empty
    values = np.zeros((1, 6, 6, 6), np.uint8)
    values[0, 1:3, 1:3, 1:3] = 1
    values[0, 5, 5, 5] = 1
    out = InForegroundBox(KeepLargestConnectedComponent(applied_labels=[1]))(values)
    assert isinstance(out, np.ndarray) and int(out.sum()) == 8 and values[0, 5, 5, 5] == 1  # input untouched
    assert foreground_box(values) == (slice(1, 6), slice(1, 6), slice(1, 6))


def test_a_non_callable_is_refused():
    with pytest.raises(TypeError, match="callable"):
        InForegroundBox("KeepLargestConnectedComponent")


@pytest.mark.parametrize("slab_voxels", [1, 50, 2**24])
def test_foreground_box_in_slabs_of_any_size(slab_voxels):
    """Every slab size finds the same box; a negative value and a second channel count as foreground."""
    values = torch.zeros(2, 9, 8, 11)
    values[0, 2, 3, 4] = -1.0
    values[1, 6, 1, 9] = 3.0
    assert foreground_box(values, slab_voxels=slab_voxels) == (slice(2, 7), slice(1, 4), slice(4, 10))
    assert foreground_box(torch.zeros(1, 4, 4, 4), slab_voxels=slab_voxels) is None


def test_inplace_pastes_into_the_input_with_the_same_result():
    step = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False)
    expected = step(_label(1))
    label = _label(1)
    out = InForegroundBoxd("pred", step, inplace=True)({"pred": label})["pred"]
    assert out is label
    assert torch.equal(out.as_tensor(), torch.as_tensor(expected))
    copy = InForegroundBox(step)(_label(1))
    assert torch.equal(copy.as_tensor(), torch.as_tensor(expected))


@pytest.mark.parametrize("seed", [0, 1])
def test_an_inplace_transform_changes_the_box_of_the_input_itself(seed):
    expected = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False)(_label(seed))
    label = _label(seed)
    before = label.as_tensor().data_ptr()
    out = InForegroundBox(KeepLargestComponent(applied_labels=[1, 2], inplace=True), inplace=True)(label)
    assert out is label and out.as_tensor().data_ptr() == before
    assert torch.equal(out.as_tensor(), torch.as_tensor(expected))
