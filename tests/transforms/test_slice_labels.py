import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipelines.validation.errors import DataError
from transforms import SliceLabels, SliceLabelsd

FILE = "/data/liver_007.nii.gz"
ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, meta={"filename_or_obj": FILE})]


def _mask() -> np.ndarray:
    """(1, 4, 5, 6) float mask: class 1 in slice 1 (1 voxel) and slice 3 (4 voxels), class 2 in slice 4 (2 voxels)."""
    mask = np.zeros((1, 4, 5, 6), np.float32)
    mask[0, 0, 0, 1] = 1
    mask[0, :2, :2, 3] = 1
    mask[0, 3, 3:, 4] = 2
    return mask


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_default_labels_class_one_in_last_axis(as_type):
    out = SliceLabels()(as_type(_mask()))
    assert type(out) is torch.Tensor and out.dtype == torch.int64
    assert out.tolist() == [0, 1, 0, 1, 0, 0]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_min_area_threshold(as_type):
    assert SliceLabels(min_area=2)(as_type(_mask())).tolist() == [0, 0, 0, 1, 0, 0]
    assert SliceLabels(min_area=4)(as_type(_mask())).tolist() == [0, 0, 0, 1, 0, 0]
    assert SliceLabels(min_area=5)(as_type(_mask())).tolist() == [0] * 6


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_target_classes_int_or_sequence(as_type):
    assert SliceLabels(target_classes=2)(as_type(_mask())).tolist() == [0, 0, 0, 0, 1, 0]
    assert SliceLabels(target_classes=(1, 2))(as_type(_mask())).tolist() == [0, 1, 0, 1, 1, 0]
    assert SliceLabels(target_classes=[2], min_area=3)(as_type(_mask())).tolist() == [0] * 6


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_other_spatial_axis(as_type):
    out = SliceLabels(target_classes=(1, 2), spatial_axis=0)(as_type(_mask()))
    assert out.tolist() == [1, 1, 0, 1]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.float64, bool])
def test_integer_and_bool_dtypes(dtype):
    mask = _mask().astype(dtype)
    assert SliceLabels()(torch.as_tensor(mask)).tolist() == (
        [0, 1, 0, 1, 1, 0] if dtype is bool else [0, 1, 0, 1, 0, 0]
    )


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_non_integer_labels_raise(as_type):
    mask = _mask()
    mask[0, 1, 1, 1] = 0.5
    with pytest.raises(DataError, match="1 non-integer voxel"):
        SliceLabels()(as_type(mask))


def test_error_names_the_file():
    mask = _mask()
    mask[0, 1, 1, 1] = np.nan
    with pytest.raises(DataError, match=FILE):
        SliceLabels()(MetaTensor(mask, meta={"filename_or_obj": FILE}))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 4, 5, 6), (1, 4, 5), (1, 4, 0, 6)])
def test_wrong_dimensions_raise(as_type, shape):
    with pytest.raises(DataError, match=r"expected a channel-first label volume \(1, X, Y, Z\)"):
        SliceLabels()(as_type(np.zeros(shape, np.float32)))


@pytest.mark.parametrize(
    "kwargs", [{"min_area": 0}, {"target_classes": ()}, {"target_classes": 1.5}, {"spatial_axis": 3}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SliceLabels(**kwargs)


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_dict_writes_new_key_and_keeps_mask(as_type):
    mask = as_type(_mask())
    out = SliceLabelsd(keys="label", target_classes=2)({"label": mask, "image": "x"})
    assert out["label"] is mask and out["image"] == "x"
    assert out["slice_label"].tolist() == [0, 0, 0, 0, 1, 0]
    custom = SliceLabelsd(keys="label", output_key="tumour_slices")({"label": mask})
    assert custom["tumour_slices"].tolist() == [0, 1, 0, 1, 0, 0] and "slice_label" not in custom


def test_dict_several_keys_need_distinct_output_keys():
    with pytest.raises(ValueError, match="distinct output_key"):
        SliceLabelsd(keys=("a", "b"))
    out = SliceLabelsd(keys=("a", "b"), output_key=("la", "lb"))({"a": _mask(), "b": np.zeros((1, 2, 2, 3))})
    assert out["la"].tolist() == [0, 1, 0, 1, 0, 0] and out["lb"].tolist() == [0, 0, 0]


def test_dict_missing_key():
    with pytest.raises(KeyError):
        SliceLabelsd(keys="label")({"image": _mask()})
    assert "slice_label" not in SliceLabelsd(keys="label", allow_missing_keys=True)({"image": _mask()})
