import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, LoadImaged, Orientationd, ScaleIntensityd

from pipelines.validation.errors import DataError
from transforms import ExtractSlices, SliceLabelsd, SliceSamples, SliceSamplesd

FILE = "/data/ct_007.nii.gz"
ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, meta={"filename_or_obj": FILE})]
LABELS = [0, 1, 1, 0, 0]


def _volume(channels: int = 1) -> np.ndarray:
    """(C, 3, 4, 5) volume whose voxel value is ``10 * channel + z``."""
    c, _, _, z = np.meshgrid(np.arange(channels), np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    return (10 * c + z).astype(np.float32)


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_array_one_sample_per_slice(as_type):
    vol = as_type(_volume(channels=2))
    samples = SliceSamples(context=1)(vol)
    stack = ExtractSlices(context=1)(vol)
    assert len(samples) == 5
    for z, sample in enumerate(samples):
        assert sample.shape == (6, 3, 4)
        assert torch.equal(torch.as_tensor(sample), torch.as_tensor(stack[z]))
        if isinstance(vol, MetaTensor):
            assert sample.meta["slice_index"] == z and sample.meta["filename_or_obj"] == FILE


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_array_indices(as_type):
    samples = SliceSamples(context=0, indices=[4, 1])(as_type(_volume()))
    assert [int(s[0, 0, 0]) for s in samples] == [4, 1]
    assert len(SliceSamples()(as_type(_volume()), indices=[2])) == 1


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_dict_samples(as_type):
    data = {"image": as_type(_volume()), "slice_label": torch.tensor(LABELS), "label": np.zeros((1, 3, 4, 5))}
    samples = SliceSamplesd(keys="image", context=1)(data)
    assert isinstance(samples, list) and len(samples) == 5
    for z, sample in enumerate(samples):
        assert set(sample) == {"image", "slice_label", "slice_index", "volume"}
        assert sample["image"].shape == (3, 3, 4)
        assert [int(v) for v in torch.as_tensor(sample["image"])[:, 0, 0]] == [max(z - 1, 0), z, min(z + 1, 4)]
        assert sample["slice_label"].dtype == torch.int64 and sample["slice_label"].ndim == 0
        assert int(sample["slice_label"]) == LABELS[z]
        assert sample["slice_index"] == z
        assert sample["volume"] == (FILE if isinstance(data["image"], MetaTensor) else "")


def test_dict_several_keys_and_subset():
    data = {"image": _volume(), "pet": _volume(channels=2), "slice_label": np.array(LABELS)}
    samples = SliceSamplesd(keys=("image", "pet"), context=0, indices=[2, 3])(data)
    assert [s["slice_index"] for s in samples] == [2, 3]
    assert [int(s["slice_label"]) for s in samples] == [1, 0]
    assert samples[0]["image"].shape == (1, 3, 4) and samples[0]["pet"].shape == (2, 3, 4)


def test_dict_without_labels():
    samples = SliceSamplesd(keys="image", label_key=None)({"image": _volume()})
    assert len(samples) == 5 and "slice_label" not in samples[0]


def test_dict_missing_or_mis_sized_labels_raise():
    image = MetaTensor(_volume(), meta={"filename_or_obj": FILE})
    with pytest.raises(DataError, match=f"{FILE}: no 'slice_label' entry"):
        SliceSamplesd(keys="image")({"image": image})
    with pytest.raises(DataError, match=f"{FILE}: expected 5 slice labels"):
        SliceSamplesd(keys="image")({"image": image, "slice_label": torch.zeros(4)})


def test_dict_keys_with_different_slice_counts_raise():
    with pytest.raises(DataError, match="different slice counts"):
        SliceSamplesd(keys=("a", "b"), label_key=None)({"a": _volume(), "b": np.zeros((1, 3, 4, 6))})


def _write_case(path, n_slices: int, tumour_slices: list[int]) -> tuple[str, str]:
    rng = np.random.default_rng(n_slices)
    image = rng.normal(size=(6, 7, n_slices)).astype(np.float32)
    label = np.zeros((6, 7, n_slices), np.uint8)
    label[2:4, 2:4, :] = 1
    for z in tumour_slices:
        label[3, 3, z] = 2
    names = (str(path / f"ct_{n_slices}.nii.gz"), str(path / f"seg_{n_slices}.nii.gz"))
    for name, array in zip(names, (image, label), strict=True):
        nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.5, 1.0])), name)
    return names


def test_compose_with_dataset_and_dataloader_flattens_slices(tmp_path):
    cases = [_write_case(tmp_path, 4, [1]), _write_case(tmp_path, 5, [0, 4])]
    datalist = [{"image": image, "label": label} for image, label in cases]
    transform = Compose(
        [
            LoadImaged(keys=("image", "label"), ensure_channel_first=True),
            Orientationd(keys=("image", "label"), axcodes="RAS"),
            SliceLabelsd(keys="label", target_classes=2),
            SliceSamplesd(keys="image", label_key="slice_label", context=1),
            ScaleIntensityd(keys="image"),  # applied to every sample of the list
        ]
    )
    dataset = Dataset(datalist, transform)
    first = dataset[0]
    assert isinstance(first, list) and len(first) == 4
    assert [int(s["slice_label"]) for s in first] == [0, 1, 0, 0]
    assert first[0]["volume"] == cases[0][0] and first[0]["image"].shape == (3, 6, 7)
    assert float(first[0]["image"].max()) == pytest.approx(1.0)

    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))  # list_data_collate flattens the lists
    assert batch["image"].shape == (9, 3, 6, 7)
    assert batch["slice_label"].tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 1]
    assert batch["slice_index"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4]
    assert batch["volume"] == [cases[0][0]] * 4 + [cases[1][0]] * 5
    assert "label" not in batch
