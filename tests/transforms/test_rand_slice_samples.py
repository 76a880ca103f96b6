import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from pipelines.validation.errors import DataError
from transforms import ExtractSlices, RandSliceSamples, RandSliceSamplesd

FILE = "/data/ct_007.nii.gz"
ARRAY_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, meta={"filename_or_obj": FILE})]
N_SLICES = 20
POSITIVE = [3, 4, 11]


def _volume() -> np.ndarray:
    """(1, 2, 3, 20) volume whose voxel value is its slice index."""
    return np.broadcast_to(np.arange(N_SLICES, dtype=np.float32), (1, 2, 3, N_SLICES)).copy()


def _labels(positive=POSITIVE) -> torch.Tensor:
    labels = torch.zeros(N_SLICES, dtype=torch.int64)
    labels[list(positive)] = 1
    return labels


def _n_positive(indices, labels) -> int:
    return int(sum(int(labels[i]) for i in indices))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_array_samples_match_extracted_slices(as_type):
    vol = as_type(_volume())
    sampler = RandSliceSamples(num_samples=6, pos_fraction=0.5, context=1).set_random_state(0)
    samples = sampler(vol, _labels())
    assert len(samples) == 6 and len(sampler.indices) == 6
    stack = ExtractSlices(context=1)(vol)
    for index, sample in zip(sampler.indices, samples, strict=True):
        assert sample.shape == (3, 2, 3)
        assert torch.equal(torch.as_tensor(sample), torch.as_tensor(stack[index]))
    if isinstance(vol, MetaTensor):
        assert samples[0].meta["filename_or_obj"] == FILE
        assert samples[0].meta["slice_index"] == sampler.indices[0]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_seeded_determinism(seed):
    draws = [RandSliceSamples(num_samples=8).set_random_state(seed) for _ in range(2)]
    for sampler in draws:
        sampler(_volume(), _labels())
    assert draws[0].indices == draws[1].indices
    other = RandSliceSamples(num_samples=8).set_random_state(seed + 100)
    other(_volume(), _labels())
    assert other.indices != draws[0].indices


@pytest.mark.parametrize(("num_samples", "pos_fraction", "n_pos"), [(8, 0.5, 4), (8, 0.25, 2), (5, 0.0, 0), (4, 1, 4)])
def test_positive_fraction(num_samples, pos_fraction, n_pos):
    labels = _labels()
    sampler = RandSliceSamples(num_samples=num_samples, pos_fraction=pos_fraction).set_random_state(3)
    for _ in range(5):
        sampler(_volume(), labels)
        assert len(sampler.indices) == num_samples
        assert _n_positive(sampler.indices, labels) == n_pos


def test_without_replacement_when_enough_slices():
    sampler = RandSliceSamples(num_samples=6, pos_fraction=0.5).set_random_state(0)
    sampler(_volume(), _labels())
    assert len(set(sampler.indices)) == 6 and set(POSITIVE) <= set(sampler.indices)


def test_few_positive_slices_are_repeated():
    labels = _labels(positive=[7])
    sampler = RandSliceSamples(num_samples=10, pos_fraction=0.5).set_random_state(0)
    sampler(_volume(), labels)
    assert sampler.indices.count(7) == 5


@pytest.mark.parametrize(("positive", "expected"), [([], 0), (range(N_SLICES), 6)])
def test_volume_without_positive_or_negative_slices(positive, expected):
    labels = _labels(positive=positive)
    sampler = RandSliceSamples(num_samples=6, pos_fraction=0.5).set_random_state(0)
    sampler(_volume(), labels)
    assert _n_positive(sampler.indices, labels) == expected


def test_without_labels_draws_uniformly_and_randomize_false_reuses():
    sampler = RandSliceSamples(num_samples=50, context=0).set_random_state(0)
    samples = sampler(_volume())
    assert len(samples) == 50 and all(0 <= i < N_SLICES for i in sampler.indices)
    again = sampler(_volume(), randomize=False)
    assert [int(s[0, 0, 0]) for s in again] == sampler.indices


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"pos_fraction": 1.5}, {"pos_fraction": -0.1}, {"context": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandSliceSamples(**kwargs)


def test_labels_of_wrong_length_raise():
    with pytest.raises(DataError, match=f"{FILE}: expected 20 slice labels"):
        RandSliceSamples()(MetaTensor(_volume(), meta={"filename_or_obj": FILE}), torch.zeros(19))


@pytest.mark.parametrize("as_type", ARRAY_TYPES)
def test_dict_samples(as_type):
    labels = _labels()
    data = {"image": as_type(_volume()), "slice_label": labels, "label": np.zeros((1, 2, 3, N_SLICES))}
    transform = RandSliceSamplesd(keys="image", num_samples=6, pos_fraction=0.5)
    assert transform.set_random_state(5) is transform
    samples = transform(data)
    assert len(samples) == 6
    assert sum(int(s["slice_label"]) for s in samples) == 3
    for sample in samples:
        assert set(sample) == {"image", "slice_label", "slice_index", "volume"}
        assert sample["image"].shape == (3, 2, 3)
        assert int(sample["image"][1, 0, 0]) == sample["slice_index"]
        assert int(sample["slice_label"]) == int(labels[sample["slice_index"]])
        assert sample["volume"] == (FILE if isinstance(data["image"], MetaTensor) else "")


def test_dict_seeded_through_compose():
    data = {"image": _volume(), "slice_label": _labels()}

    def draw(seed):
        pipeline = Compose([RandSliceSamplesd(keys="image", num_samples=5)]).set_random_state(seed)
        return [s["slice_index"] for s in pipeline(data)]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


def test_dict_missing_labels_raise():
    with pytest.raises(DataError, match=f"{FILE}: no 'slice_label' entry"):
        RandSliceSamplesd(keys="image")({"image": MetaTensor(_volume(), meta={"filename_or_obj": FILE})})
