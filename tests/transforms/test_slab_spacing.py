"""SlabSpacing / SlabSpacingd: MONAI's Spacing results, a large volume sampled slab by slab from its own dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Spacing, Spacingd
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from transforms import SlabSpacing, SlabSpacingd

RNG = np.random.default_rng(0)


def _volume(shape=(40, 37, 23), diagonal=(0.7, 0.8, 2.5), permute=False, channels=1) -> MetaTensor:
    """An int16 CT-like volume whose affine scales, flips (negative spacing) or permutes axes, with an offset."""
    affine = np.diag([*diagonal, 1.0])
    affine[:3, 3] = RNG.normal(size=3) * 10
    if permute:
        affine = affine[[1, 0, 2, 3]]
    values = torch.as_tensor(RNG.integers(-1000, 1000, size=(channels, *shape)), dtype=torch.int16)
    return MetaTensor(values, affine=torch.as_tensor(affine))


class _FloatCopies(TorchDispatchMode):
    """Records every floating tensor an operation returns with at least ``numel`` elements."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.seen = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() >= self.numel:
                self.seen.append(str(func))
        return out


CASES = [
    # (volume, pixdim, padding_mode)
    (dict(), (2.4, 2.4, 5.0), "border"),  # downsampling, as the liver bundle
    (dict(diagonal=(-0.7, 0.8, 2.5), permute=True), (1.3, 2.0, 1.0), "zeros"),  # flipped and permuted axes
    (dict(shape=(30, 31, 20), diagonal=(1.0, 1.0, 1.0)), (0.6, 0.7, 0.9), "border"),  # upsampling
    (dict(channels=3), (1.5, 1.5, 3.0), "border"),  # several sequences
]


@pytest.mark.parametrize("volume_args, pixdim, padding_mode", CASES)
def test_slab_path_gives_monai_spacingd_results(volume_args, pixdim, padding_mode):
    volume = _volume(**volume_args)
    kwargs = dict(keys="image", pixdim=pixdim, mode="bilinear", padding_mode=padding_mode, dtype=torch.float32)
    expected = Spacingd(**kwargs)({"image": volume.clone()})["image"]
    transform = SlabSpacingd(slab_above=0, slab_voxels=500, **kwargs)  # several slabs
    out = transform({"image": volume.clone()})["image"]
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out.affine.numpy(), expected.affine.numpy(), atol=1e-9)
    torch.testing.assert_close(out.as_tensor(), expected.as_tensor(), atol=0.02, rtol=1e-5)  # int16 range: float32
    assert len(out.applied_operations) == len(expected.applied_operations) == 1
    assert transform.inverse({"image": out})["image"].shape == volume.shape  # invertible as MONAI's


def test_slab_path_never_makes_a_float_copy_of_the_volume():
    volume = _volume(shape=(64, 64, 40))
    transform = SlabSpacingd("image", pixdim=(2.0, 2.0, 2.0), slab_above=0, slab_voxels=4096, dtype=torch.float32)
    with _FloatCopies(volume.numel() // 4) as record:  # a quarter of the volume: the slabs are smaller
        out = transform({"image": volume})["image"]
    assert out.shape[1:] != volume.shape[1:]  # it did resample
    assert not record.seen, record.seen
    with _FloatCopies(volume.numel()) as record:
        Spacingd("image", pixdim=(2.0, 2.0, 2.0), dtype=torch.float32)({"image": volume})
    assert record.seen  # MONAI's path does: what this transform is for


@pytest.mark.parametrize(
    "volume_args, kwargs",
    [
        (dict(), dict(mode="nearest")),  # labels: grid_sample's own tie-breaking is kept
        (dict(), dict(padding_mode="reflection")),
        (dict(), dict(slab_above=10**9)),  # small volumes
    ],
)
def test_other_cases_take_monai_path_exactly(volume_args, kwargs):
    volume = _volume(**volume_args)
    slab_above = kwargs.pop("slab_above", 0)
    args = dict(keys="image", pixdim=(0.6, 0.7, 0.9), dtype=torch.float32, **kwargs)
    expected = Spacingd(**args)({"image": volume.clone()})["image"]
    out = SlabSpacingd(slab_above=slab_above, **args)({"image": volume.clone()})["image"]
    assert torch.equal(out.as_tensor(), expected.as_tensor())


def test_oblique_map_takes_monai_path_exactly():
    """A rotated volume resampled onto an axis-aligned grid (``diagonal=True``): the voxel map is oblique."""
    volume = _volume(shape=(20, 21, 12))
    angle = 0.2
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    volume.affine = torch.as_tensor(rotation @ volume.affine.numpy())
    expected = Spacing(pixdim=(1.0, 1.0, 3.0), diagonal=True, dtype=torch.float32)(volume.clone())
    out = SlabSpacing(pixdim=(1.0, 1.0, 3.0), diagonal=True, dtype=torch.float32, slab_above=0)(volume.clone())
    assert torch.equal(out.as_tensor(), expected.as_tensor())


def test_image_and_label_keys_and_missing_keys():
    volume = _volume(shape=(30, 28, 16))
    label = MetaTensor((volume.as_tensor() > 500).to(torch.uint8), affine=volume.affine.clone())
    args = dict(keys=["image", "label"], pixdim=(1.5, 1.5, 4.0), mode=["bilinear", "nearest"], dtype=torch.float32)
    expected = Spacingd(**args)({"image": volume.clone(), "label": label.clone()})
    out = SlabSpacingd(slab_above=0, **args)({"image": volume.clone(), "label": label.clone()})
    assert out["image"].shape == out["label"].shape == expected["label"].shape
    assert torch.equal(out["label"].as_tensor(), expected["label"].as_tensor())
    image_only = SlabSpacingd(slab_above=0, allow_missing_keys=True, **args)({"image": volume.clone()})
    assert set(image_only) == {"image"}
    with pytest.raises(KeyError):
        SlabSpacingd(slab_above=0, **args)({"image": volume.clone()})
