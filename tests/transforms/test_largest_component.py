"""KeepLargestComponent(d): MONAI's KeepLargestConnectedComponent(independent=False), labelled slab by slab."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent
from scipy import ndimage

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
        torch.tensor(values)  # a copy: MONAI clears its input tensor in place, which would change ``values`` too
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
    # 65,536 isolated voxels and one 2-voxel component, in one slab
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


def _blobs(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """A (1, ...) label map of random sparse voxels of labels 1-3: many small components that touch diagonally,
    across every plane of the first axis; for odd seeds, every 4th plane of the last axis empty."""
    rng = np.random.default_rng(seed)
    values = rng.choice(4, size=(1, *shape), p=[0.7, 0.15, 0.1, 0.05]).astype(np.uint8)
    if seed % 2:  # empty planes of the last axis, as between a gate's slabs: runs labelled apart
        values[..., 2::4] = 0
    return values


@pytest.mark.parametrize(
    "shape,connectivity",
    [((12, 10, 9), None), ((12, 10, 9), 1), ((12, 10, 9), 2), ((15, 13), None), ((15, 13), 1), ((40,), None)],
)
@pytest.mark.parametrize("slab_voxels", [1, 100, 350, 10**6])
def test_slabs_give_monai_s_label_map(shape, connectivity, slab_voxels):
    # slab_voxels 1: one plane per slab, every boundary crossed; 10**6: the whole map in one slab
    compared = 0
    for seed in range(8):
        values = _blobs(seed, shape)
        if not _largest_is_unique(np.isin(values[0], [1, 2]), connectivity):
            continue  # equal sizes: MONAI's unstable argsort picks one; the rule is tested below
        expected = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False, connectivity=connectivity)(
            torch.tensor(values)
        )
        out = KeepLargestComponent([1, 2], connectivity=connectivity, slab_voxels=slab_voxels)(values)
        np.testing.assert_array_equal(out, np.asarray(expected))
        compared += 1
    assert compared >= 3


def _largest_is_unique(foreground: np.ndarray, connectivity: int | None) -> bool:
    structure = ndimage.generate_binary_structure(foreground.ndim, connectivity or foreground.ndim)
    sizes = np.bincount(ndimage.label(foreground, structure)[0].ravel())[1:]
    return np.count_nonzero(sizes == sizes.max()) == 1


def test_a_component_joined_only_in_a_later_slab_and_ties_keep_the_first_in_c_order():
    # a U whose two arms are separate pieces in every slab until its base, in the last plane; then two equal
    # components: the one whose first voxel comes first in C order is kept
    values = np.zeros((1, 8, 7, 3), np.uint8)
    values[0, :, 1, 1] = 1
    values[0, :, 5, 1] = 2
    values[0, 7, 1:6, 1] = 1  # the base: 8 + 8 + 3 voxels in one component
    values[0, 0:2, 3, 1] = 1  # a small island between the arms
    for slab_voxels in (21, 42, 10**6):
        out = KeepLargestComponent([1, 2], connectivity=1, slab_voxels=slab_voxels)(values)
        expected = values.copy()
        expected[0, 0:2, 3, 1] = 0
        np.testing.assert_array_equal(out, expected)
    equal = np.zeros((1, 6, 4, 4), np.uint8)
    equal[0, 4:6, 0, 0] = 1  # later in C order, in the last slab
    equal[0, 0, 3, 3] = 1  # first in C order, joined to the next slab's voxel below it
    equal[0, 1, 3, 3] = 2
    expected = equal.copy()
    expected[0, 4:6, 0, 0] = 0
    for slab_voxels in (16, 32, 10**6):
        # MONAI ranks equal sizes by an unstable argsort (here it keeps the later one): only the rule is checked
        np.testing.assert_array_equal(
            KeepLargestComponent([1, 2], connectivity=1, slab_voxels=slab_voxels)(equal), expected
        )


def test_a_piece_to_clear_is_found_in_its_box_or_in_its_whole_slab():
    # one plane per slab: a block kept; in plane 3 a frame around it (its box: the whole plane, so that slab is
    # labelled again whole) and in plane 6 a short line beside it (labelled again in its box alone)
    from transforms.largest_component import _Slabs

    values = np.zeros((1, 10, 20, 20), np.uint8)
    values[0, :, 5:15, 5:15] = 1
    values[0, 3, [0, 19], :] = 2
    values[0, 3, :, [0, 19]] = 2
    values[0, 6, 17, 2:9] = 1
    expected = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False)(torch.tensor(values))
    out = KeepLargestComponent([1, 2], slab_voxels=400)(values)
    np.testing.assert_array_equal(out, np.asarray(expected))
    assert not out[0, 3, 0].any() and not out[0, 6, 17].any() and out[0, :, 5:15, 5:15].all()
    slabs = _Slabs(values[0], (slice(0, 10), slice(0, 20), slice(0, 20)), [1, 2], None, 400)
    slabs.label_components()
    regions = [region for region, _ in slabs.voxels_to_clear(kept_only_largest=True)]
    assert regions == [(slice(3, 4), slice(0, 20), slice(0, 20)), (slice(6, 7), slice(17, 18), slice(2, 9))]


def test_runs_between_empty_planes_are_labelled_apart_and_ties_follow_c_order_across_them():
    # foreground in three runs of the last axis (a gate's kept slabs); a run without the largest component is
    # cleared whole; two equal components in different runs: the one first in C order (smaller first index, even
    # at a later plane) is kept
    from transforms.largest_component import _occupied_boxes

    values = np.zeros((1, 12, 10, 30), np.uint8)
    values[0, 2:6, 2:6, 1:4] = 1  # 48 voxels, planes 1-3
    values[0, 8:10, 0:2, 2] = 2  # 4 voxels, same run, not touching
    values[0, 1:5, 3:7, 12:15] = 2  # 48 voxels, planes 12-14: first in C order (x from 1)
    values[0, 9, 9, 25:28] = 1  # 3 voxels, planes 25-27
    boxes = _occupied_boxes(values[0], [1, 2], 2**22)
    assert boxes == [
        (slice(2, 10), slice(0, 6), slice(1, 4)),
        (slice(1, 5), slice(3, 7), slice(12, 15)),
        (slice(9, 10), slice(9, 10), slice(25, 28)),
    ]
    for slab_voxels in (30, 300, 10**6):
        out = KeepLargestComponent([1, 2], slab_voxels=slab_voxels)(values)
        expected = np.zeros_like(values)
        expected[0, 1:5, 3:7, 12:15] = 2
        np.testing.assert_array_equal(out, expected)
    values[0, 5, 5, 13] = 2  # joins the second run's component: 49 voxels, the largest
    values[0, 0, 0, 1] = 1  # a lone voxel before everything in C order, its own component
    out = KeepLargestComponent([1, 2])(values)
    assert out[0, 1:5, 3:7, 12:15].all() and out[0, 5, 5, 13] == 2
    assert np.count_nonzero(out) == 49
