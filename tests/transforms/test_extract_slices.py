import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipelines.validation.errors import DataError
from transforms import ExtractSlices, ExtractSlicesd

FILE = "/data/ct_007.nii.gz"
ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, meta={"filename_or_obj": FILE})]


def _volume(channels: int = 1, shape=(3, 4, 6)) -> np.ndarray:
    """Channel-first volume whose voxel value is ``100 * channel + 10 * x + z``."""
    c, x, _, z = np.meshgrid(*(np.arange(n) for n in (channels, *shape)), indexing="ij")
    return (100 * c + 10 * x + z).astype(np.float32)


def _tags(sample: torch.Tensor) -> list[int]:
    """The ``100 * channel + z`` tag of every channel of a sample, read at x = 0."""
    return [int(v) for v in torch.as_tensor(sample)[:, 0, 0]]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
@pytest.mark.parametrize("context", [0, 1, 2])
def test_shape_and_centre_slice(as_type, context):
    out = ExtractSlices(context=context)(as_type(_volume()))
    assert out.shape == (6, 2 * context + 1, 3, 4)
    for z in range(6):
        assert torch.equal(torch.as_tensor(out[z, context]), torch.as_tensor(_volume()[0, :, :, z]))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_edges_replicate_border_slice(as_type):
    out = ExtractSlices(context=2)(as_type(_volume()))
    assert _tags(out[0]) == [0, 0, 0, 1, 2]
    assert _tags(out[1]) == [0, 0, 1, 2, 3]
    assert _tags(out[5]) == [3, 4, 5, 5, 5]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_channels_grouped_by_slice_offset(as_type):
    out = ExtractSlices(context=1)(as_type(_volume(channels=2)))
    assert out.shape == (6, 6, 3, 4)
    assert _tags(out[3]) == [2, 102, 3, 103, 4, 104]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_indices_subset_in_order(as_type):
    vol = as_type(_volume())
    out = ExtractSlices(context=0, indices=[5, 0, 2])(vol)
    assert [_tags(s) for s in out] == [[5], [0], [2]]
    assert [_tags(s) for s in ExtractSlices(context=0)(vol, indices=np.array([4]))] == [[4]]
    assert ExtractSlices()(vol, indices=[]).shape == (0, 3, 3, 4)


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_other_spatial_axis(as_type):
    out = ExtractSlices(context=1, spatial_axis=0)(as_type(_volume()))
    assert out.shape == (3, 3, 4, 6)
    assert [int(v) for v in torch.as_tensor(out[0])[:, 0, 1]] == [1, 1, 11]


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_output_type_dtype_and_meta(as_type):
    vol = as_type(_volume().astype(np.int16))
    out = ExtractSlices()(vol)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int16
    if isinstance(vol, MetaTensor):
        assert isinstance(out, MetaTensor)
        assert out.meta["filename_or_obj"] == FILE
        assert not out.applied_operations
    else:
        assert not isinstance(out, MetaTensor)


def test_meta_tensor_without_filename():
    out = ExtractSlices()(MetaTensor(_volume()))
    assert isinstance(out, MetaTensor) and "filename_or_obj" not in out.meta


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
@pytest.mark.parametrize("shape", [(3, 4, 6), (1, 1, 3, 4, 6), (1, 3, 0, 6)])
def test_wrong_dimensions_raise(as_type, shape):
    with pytest.raises(DataError, match=r"expected a channel-first volume \(C, X, Y, Z\)"):
        ExtractSlices()(as_type(np.zeros(shape, np.float32)))


def test_index_out_of_range_names_the_file():
    with pytest.raises(DataError, match=rf"{FILE}: slice indices \[6, -1\] out of range for 6 slices"):
        ExtractSlices(indices=[0, 6, -1])(MetaTensor(_volume(), meta={"filename_or_obj": FILE}))


@pytest.mark.parametrize("kwargs", [{"context": -1}, {"context": 1.5}, {"spatial_axis": -4}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ExtractSlices(**kwargs)


def test_float_indices_raise():
    with pytest.raises(ValueError, match="integers"):
        ExtractSlices()(_volume(), indices=[1.5])


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_dict_slices_image_keys_only(as_type):
    data = {"image": as_type(_volume(channels=2)), "label": np.zeros((1, 3, 4, 6))}
    out = ExtractSlicesd(keys="image", context=1, indices=[0, 1])(data)
    assert out["image"].shape == (2, 6, 3, 4)
    assert out["label"] is data["label"]
    assert _tags(out["image"][0]) == [0, 100, 0, 100, 1, 101]
