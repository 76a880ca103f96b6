"""ResampleToSource(d): a prediction back onto its input's grid, checked against world coordinates and Invertd."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    AsDiscreted,
    Compose,
    CropForegroundd,
    Invertd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)

from pipelines.validation.errors import DataError
from transforms import ResampleToSource, ResampleToSourced

SHAPE = (40, 36, 18)


def _lps_affine() -> np.ndarray:
    """A DICOM-like affine: axes flipped to LPS and the first two swapped, anisotropic spacing."""
    affine = np.array([[0.0, -1.4, 0, 30.0], [-1.2, 0.0, 0, 25.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
    return affine


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A CT-like volume (body and a bright organ off-centre) and its label, in a non-RAS orientation."""
    folder = tmp_path_factory.mktemp("resample")
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    body = ((i - 20) / 16.0) ** 2 + ((j - 18) / 14.0) ** 2 < 1
    organ = ((i - 14) / 7.0) ** 2 + ((j - 20) / 5.0) ** 2 + ((k - 9) / 5.0) ** 2 < 1
    image = np.where(body, 40.0, -1000.0) + np.where(organ, 80.0, 0.0)
    label = organ.astype(np.uint8)
    nib.save(nib.Nifti1Image(image.astype(np.int16), _lps_affine()), folder / "ct.nii.gz")
    nib.save(nib.Nifti1Image(label, _lps_affine()), folder / "label.nii.gz")
    return {"image": str(folder / "ct.nii.gz"), "label": str(folder / "label.nii.gz")}


def _preprocessing() -> Compose:
    return Compose(
        [
            LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True),
            Orientationd(["image", "label"], axcodes="RAS"),
            Spacingd(["image", "label"], pixdim=(2.0, 1.8, 4.0), mode=["bilinear", "nearest"]),
            ScaleIntensityRanged("image", a_min=-175, a_max=250, b_min=0, b_max=1, clip=True),
            CropForegroundd(["image", "label"], source_key="image", margin=2),
        ]
    )


def _world(affine, shape) -> np.ndarray:
    """World coordinates (3, *shape) of every voxel centre of a grid."""
    index = np.stack([*np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), np.ones(tuple(shape))], -1)
    return np.moveaxis((index @ np.asarray(affine, dtype=np.float64).T)[..., :3], -1, 0)


def _inside(src_affine, src_shape, dst_affine, dst_shape) -> np.ndarray:
    """Destination voxels whose position falls between the source grid's voxel centres (no padding involved)."""
    world = _world(dst_affine, dst_shape).reshape(3, -1)
    index = np.linalg.solve(np.asarray(src_affine, dtype=np.float64), np.vstack([world, np.ones(world.shape[1])]))
    ok = np.all((index[:3] >= 0) & (index[:3] <= np.array(src_shape)[:, None] - 1), axis=0)
    return ok.reshape(dst_shape)


def _prediction(values, reference: MetaTensor) -> MetaTensor:
    pred = MetaTensor(torch.as_tensor(values, dtype=torch.float32), meta=dict(reference.meta))
    pred.affine = reference.affine
    return pred


def test_world_coordinates_land_where_the_affines_say(case):
    data = _preprocessing()(case)
    image = data["image"]
    pred = _prediction(_world(image.affine, image.shape[1:]), image)
    out = ResampleToSource()(pred, image)
    assert out.shape == (3, *SHAPE)
    np.testing.assert_allclose(np.asarray(out.affine), _lps_affine(), atol=1e-5)
    expected = _world(_lps_affine(), SHAPE)
    inside = _inside(image.affine, image.shape[1:], _lps_affine(), SHAPE)  # voxels the crop kept
    assert inside.mean() > 0.3
    np.testing.assert_allclose(np.asarray(out)[:, inside], expected[:, inside], atol=1e-3)


def test_argmax_matches_invertd_then_argmax(case):
    preprocessing = _preprocessing()
    data = preprocessing(case)
    onehot = torch.nn.functional.one_hot(data["label"][0].long(), 2).permute(3, 0, 1, 2).float()
    probs = torch.nn.functional.avg_pool3d(onehot[None], 3, 1, 1)[0]  # soft edges, like a network's output
    data["pred"] = _prediction(probs, data["image"])
    ours = ResampleToSourced("pred", ref_key="image", argmax=True)(dict(data))["pred"]
    invert = Compose(
        [
            Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True),
            AsDiscreted("pred", argmax=True),
        ]
    )
    reference = invert(dict(data))["pred"]
    assert ours.dtype == torch.uint8 and ours.shape == reference.shape == (1, *SHAPE)
    np.testing.assert_allclose(np.asarray(ours.affine), np.asarray(reference.affine), atol=1e-5)
    assert (np.asarray(ours) == np.asarray(reference)).mean() > 0.9995
    assert ours.meta["filename_or_obj"] == case["image"]


def test_slab_size_does_not_change_the_result(case):
    data = _preprocessing()(case)
    image = data["image"]
    pred = _prediction(torch.rand(3, *image.shape[1:], generator=torch.Generator().manual_seed(0)), image)
    one_slice = ResampleToSource(argmax=True, slab_voxels=1)(pred, image)
    whole = ResampleToSource(argmax=True, slab_voxels=10**9)(pred, image)
    assert torch.equal(one_slice.as_tensor(), whole.as_tensor())


@pytest.mark.parametrize("slab_voxels", [2**20, 1])
@pytest.mark.parametrize("where", ["blob", "two blobs", "corner", "none", "everywhere"])
def test_sampling_the_foreground_box_only_gives_the_same_labels(case, where, slab_voxels):
    """``foreground_box`` (the default) skips output voxels whose taps all read background, in the whole box and
    per slab (one output slice per slab: each slab's own box): same labels as sampling everything, for a small
    blob, two blobs apart in every axis, a blob at the grid's edge, no foreground and foreground everywhere."""
    data = _preprocessing()(case)
    image = data["image"]
    shape = image.shape[1:]
    probs = torch.zeros(3, *shape)
    probs[0] = 0.9
    if where == "blob":
        probs[1, 5:9, 6:10, 3:6], probs[2, 7:9, 7:9, 4:5] = 0.95, 0.97
    elif where == "two blobs":
        probs[0, 2:6, 2:6, 1:5], probs[1, 2:6, 2:6, 1:5] = 0.0, 1.0
        probs[0, -7:-3, -8:-4, -5:-1], probs[2, -7:-3, -8:-4, -5:-1] = 0.0, 1.0
    elif where == "corner":
        probs[0, :4, -4:, :3], probs[2, :4, -4:, :3] = 0.0, 1.0
    elif where == "everywhere":
        probs[1] = 0.95
    probs = torch.nn.functional.avg_pool3d(probs[None], 3, 1, 1)[0]  # soft edges
    pred = _prediction(probs, image)
    boxed = ResampleToSource(argmax=True, slab_voxels=slab_voxels)(pred, image)
    full = ResampleToSource(argmax=True, foreground_box=False)(pred, image)
    assert torch.equal(boxed.as_tensor(), full.as_tensor())
    assert (full.as_tensor() > 0).any() == (where != "none")


def test_an_oblique_map_goes_through_grid_sample_with_the_same_geometry(case):
    data = _preprocessing()(case)
    image = data["image"]
    angle = np.deg2rad(20)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    oblique = rotation @ _lps_affine()
    image.meta["original_affine"] = oblique  # as if the source had been acquired tilted
    pred = _prediction(_world(image.affine, image.shape[1:]), image)
    out = ResampleToSource()(pred, image)
    expected = _world(oblique, SHAPE)
    inside = _inside(image.affine, image.shape[1:], oblique, SHAPE)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(np.asarray(out)[:, inside], expected[:, inside], atol=1e-3)


def test_nearest_mode_keeps_label_values(case):
    data = _preprocessing()(case)
    label = data["label"]
    out = ResampleToSource(mode="nearest")(_prediction(label.float() * 7, data["image"]), data["image"])
    assert set(np.unique(np.asarray(out)).tolist()) <= {0.0, 7.0}


def test_a_reference_without_source_geometry_is_refused():
    image = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/data/scan.nii.gz"})
    with pytest.raises(DataError, match="scan.nii.gz: no original_affine / spatial_shape"):
        ResampleToSource()(torch.zeros(2, 4, 4, 4), image)
    with pytest.raises(ValueError, match="mode must be"):
        ResampleToSource(mode="bicubic")


def test_missing_keys_are_allowed_when_asked(case):
    data = _preprocessing()(case)
    out = ResampleToSourced("pred", allow_missing_keys=True)(dict(data))
    assert "pred" not in out
