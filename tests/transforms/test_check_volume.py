import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipelines.validation.errors import DataError
from transforms import CheckVolume

ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, meta={"filename_or_obj": "/data/ct_007.nii.gz"})]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_valid_volume_passes_through_unchanged(as_type):
    img = as_type(np.random.default_rng(0).normal(size=(1, 8, 9, 4)).astype(np.float32))
    out = CheckVolume(spatial_dims=3)(img)
    assert out is img


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_2d_image_where_3d_expected(as_type):
    with pytest.raises(DataError, match=r"expected 3 spatial dimensions .* got shape \(1, 8, 9\)"):
        CheckVolume(spatial_dims=3)(as_type(np.zeros((1, 8, 9), np.float32)))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_nan_and_inf_voxels_are_counted(as_type):
    data = np.zeros((1, 4, 4, 4), np.float32)
    data[0, 0, 0, 0] = np.nan
    data[0, 1, 0, 0] = np.inf
    with pytest.raises(DataError, match="2 NaN or infinite voxel"):
        CheckVolume()(as_type(data))
    assert CheckVolume(allow_non_finite=True)(as_type(data)) is not None


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_zero_sized_dimension(as_type):
    with pytest.raises(DataError, match="zero-sized dimension"):
        CheckVolume()(as_type(np.zeros((1, 4, 0, 4), np.float32)))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_value_range(as_type):
    data = np.full((1, 4, 4, 4), 40.0, np.float32)
    data[0, 0, 0, 0] = 60000.0
    with pytest.raises(DataError, match=r"intensities span \[40, 60000\]"):
        CheckVolume(value_range=(-1024, 4000))(as_type(data))


def test_error_names_the_file():
    img = MetaTensor(np.zeros((1, 4, 4), np.float32), meta={"filename_or_obj": "/data/ct_007.nii.gz"})
    with pytest.raises(DataError, match="/data/ct_007.nii.gz"):
        CheckVolume()(img)


def test_integer_volume_skips_finite_check():
    img = torch.zeros((1, 3, 3, 3), dtype=torch.int16)
    assert CheckVolume()(img) is img


def _ct(offset: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A tiny CT in HU: air around a soft-tissue body with a bone; ``offset``/``scale`` break the units."""
    data = np.full((1, 8, 8, 4), -1000.0, np.float32)
    data[0, 2:6, 2:6] = 40.0
    data[0, 3, 3] = 900.0
    return data * scale + offset


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_ct_in_hounsfield_units_passes(as_type):
    img = as_type(_ct())
    assert CheckVolume(modality="CT")(img) is img


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_ct_without_rescale_or_normalised(as_type):
    with pytest.raises(DataError, match=r"values span \[24, 1924\], none negative: stored pixel values"):
        CheckVolume(modality="CT")(as_type(_ct(offset=1024.0)))
    with pytest.raises(DataError, match="a normalised or windowed image"):
        CheckVolume(modality="CT")(as_type((_ct() + 1000.0) / 1900.0))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_blank_image_for_any_modality(as_type):
    for modality in ("CT", "MR"):
        with pytest.raises(DataError, match="all voxels are 0: a blank image"):
            CheckVolume(modality=modality)(as_type(np.zeros((1, 4, 4, 4), np.float32)))
    mr = as_type(np.abs(_ct()))  # MR-like values, never checked as HU
    assert CheckVolume(modality="MR")(mr) is mr
