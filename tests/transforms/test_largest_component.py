"""KeepLargestComponent(d): MONAI's KeepLargestConnectedComponent(independent=False), with 32-bit labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent

from transforms import KeepLargestComponent, KeepLargestComponentd


def _label(seed: int, shape=(30, 28, 24)) -> np.ndarray:
    """A (1, ...) label map: an organ with a lesion, islands of both classes, and a class outside the union (3)."""
    rng = np.random.default_rng(seed)
    values = np.zeros((1, *shape), np.uint8)
    values[0, 5:20, 6:18, 4:15] = 1
    values[0, 9:12, 9:12, 7:10] = 2
    for _ in range(10):
        corner = rng.integers(0, np.array(shape) - 3)
        size = rng.integers(1, 3)
        index = tuple(slice(int(c), int(c) + int(size)) for c in corner)
        values[(0, *index)] = rng.integers(1, 4)
    return values


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("connectivity", [None, 1, 2])
@pytest.mark.parametrize("kind", ["numpy", "tensor", "metatensor"])
def test_same_label_map_as_monai(seed, connectivity, kind):
    values = _label(seed)
    img = {"numpy": values, "tensor": torch.as_tensor(values), "metatensor": MetaTensor(torch.as_tensor(values))}[kind]
    expected = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False, connectivity=connectivity)(
        torch.as_tensor(values)
    )
    out = KeepLargestComponent([1, 2], connectivity=connectivity)(img)
    assert type(out) is type(img)
    np.testing.assert_array_equal(np.asarray(torch.as_tensor(out)), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(img), values)  # the input is left as it was


def test_one_component_empty_and_other_labels():
    values = np.zeros((1, 6, 6, 6), np.uint8)
    assert np.array_equal(KeepLargestComponent(1)(values), values)
    values[0, 1:3, 1:3, 1:3] = 1
    values[0, 5, 5, 5] = 3  # not applied: kept
    assert np.array_equal(KeepLargestComponent([1])(values), values)
    values[0, 5, 0, 0] = 1
    out = KeepLargestComponent([1])(values)
    assert out[0, 5, 0, 0] == 0 and out[0, 5, 5, 5] == 3 and out[0, 1:3, 1:3, 1:3].all()


def test_several_channels_are_refused():
    with pytest.raises(ValueError, match="one channel"):
        KeepLargestComponent([1])(np.zeros((2, 4, 4, 4), np.uint8))


def test_dictionary_twin_and_missing_keys():
    values = torch.as_tensor(_label(5))
    expected = KeepLargestComponent([1, 2])(values)
    out = KeepLargestComponentd("pred", [1, 2])({"pred": values, "image": values})
    assert torch.equal(out["pred"], expected) and out["image"] is values
    assert KeepLargestComponentd("pred", [1, 2], allow_missing_keys=True)({"image": values}) == {"image": values}
    with pytest.raises(KeyError):
        KeepLargestComponentd("pred", [1, 2])({"image": values})


def test_more_components_than_16_bit_labels_hold():
    # 65,536 isolated voxels and one 2-voxel component: scipy refuses 16-bit labels, 32-bit ones take over
    labels = np.zeros((1, 512, 512, 3), np.uint8)
    labels[0, ::2, ::2, 0] = 1
    labels[0, 0, 0, 1] = 2
    out = KeepLargestComponent(applied_labels=[1, 2], connectivity=1)(torch.from_numpy(labels))
    expected = np.zeros_like(labels)
    expected[0, 0, 0, :2] = labels[0, 0, 0, :2]
    np.testing.assert_array_equal(out.numpy(), expected)


def test_inplace_changes_the_input_and_a_copy_leaves_it():
    labels = np.zeros((1, 8, 8, 8), np.uint8)
    labels[0, :3, :3, :3] = 1
    labels[0, 6:, 6:, 6:] = 2
    original = torch.from_numpy(labels.copy())
    copy = KeepLargestComponent(applied_labels=[1, 2])(original)
    assert torch.equal(original, torch.from_numpy(labels)) and int(copy[0, 7, 7, 7]) == 0
    changed = KeepLargestComponent(applied_labels=[1, 2], inplace=True)(original)
    assert changed is original and torch.equal(changed, copy)
    array = labels.copy()
    assert KeepLargestComponent(applied_labels=[1, 2], inplace=True)(array) is array and array[0, 7, 7, 7] == 0


@pytest.mark.parametrize("dtype,count", [(np.uint16, 5), (np.uint16, 40000), (np.int32, 5)])
def test_component_sizes_count_every_label_whatever_the_label_type(dtype, count):
    from transforms.largest_component import _component_sizes

    labels = np.random.default_rng(3).integers(0, count + 1, (17, 9, 11)).astype(dtype)
    sizes = _component_sizes(labels, count, chunk=100)
    np.testing.assert_array_equal(sizes, np.bincount(labels.ravel().astype(np.int64), minlength=count + 1))
