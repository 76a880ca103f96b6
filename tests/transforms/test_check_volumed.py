import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipelines.validation.errors import DataError
from transforms import CheckVolumed


def _meta(data, name, affine=None):
    return MetaTensor(data, affine=affine if affine is not None else torch.eye(4), meta={"filename_or_obj": name})


ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: _meta(x, "case.nii.gz")]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_valid_pair_is_returned(as_type):
    data = {"image": as_type(np.zeros((1, 6, 6, 3), np.float32)), "label": as_type(np.zeros((1, 6, 6, 3), np.uint8))}
    out = CheckVolumed(keys=["image", "label"], ref_key="image")(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_shape_mismatch_names_both_files(as_type):
    data = {"image": as_type(np.zeros((1, 6, 6, 3), np.float32)), "label": as_type(np.zeros((1, 6, 5, 3), np.uint8))}
    with pytest.raises(DataError, match=r"spatial shape \(6, 5, 3\) differs from \(6, 6, 3\)"):
        CheckVolumed(keys=["image", "label"], ref_key="image")(data)


def test_affine_mismatch():
    shifted = torch.eye(4)
    shifted[0, 3] = 10.0
    data = {
        "image": _meta(np.zeros((1, 6, 6, 3), np.float32), "img.nii.gz"),
        "label": _meta(np.zeros((1, 6, 6, 3), np.uint8), "lbl.nii.gz", shifted),
    }
    with pytest.raises(DataError, match=r"lbl.nii.gz: affine .* differs from that of img.nii.gz"):
        CheckVolumed(keys=["image", "label"], ref_key="image")(data)


def test_every_problem_reported_at_once():
    image = np.zeros((1, 6, 6, 3), np.float32)
    image[0, 0, 0, 0] = np.nan
    data = {"image": _meta(image, "img.nii.gz"), "label": _meta(np.zeros((1, 6, 6), np.uint8), "lbl.nii.gz")}
    with pytest.raises(DataError) as err:
        CheckVolumed(keys=["image", "label"], ref_key="image")(data)
    message = str(err.value)
    assert "img.nii.gz: 1 NaN" in message and "lbl.nii.gz: expected 3 spatial dimensions" in message


def test_missing_keys():
    data = {"image": np.zeros((1, 4, 4, 4), np.float32)}
    assert CheckVolumed(keys=["image", "label"], allow_missing_keys=True)(data)["image"] is data["image"]
    with pytest.raises(KeyError):
        CheckVolumed(keys=["image", "label"])(data)


def test_per_key_value_range():
    data = {"image": np.full((1, 4, 4, 4), 5000.0, np.float32), "label": np.full((1, 4, 4, 4), 7, np.uint8)}
    transform = CheckVolumed(keys=["image", "label"], value_range={"image": (-1024, 4000)})
    with pytest.raises(DataError, match=r"item 'image': intensities span \[5000, 5000\]"):
        transform(data)


def test_per_key_modality_leaves_labels_alone():
    image = np.full((1, 4, 4, 4), -1000.0, np.float32)
    image[0, 1:3] = 50.0
    data = {"image": _meta(image, "ct.nii.gz"), "label": _meta(np.zeros((1, 4, 4, 4), np.uint8), "lbl.nii.gz")}
    transform = CheckVolumed(keys=["image", "label"], ref_key="image", modality={"image": "CT"})
    assert transform(data)["label"] is data["label"]  # an all-background label is fine
    data["image"] = _meta(image + 1024.0, "raw.nii.gz")
    with pytest.raises(DataError, match="raw.nii.gz: values span .* none negative"):
        transform(data)
