import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from transforms import FillMissingSequencesd, KeepSequencesd, RandDropSequences, RandDropSequencesd
from transforms.sequences import SEQUENCES_META_KEY, FillMissingSequences, sequence_indices

SEQUENCES = ["FLAIR", "T1", "T1ce", "T2"]
SUFFIXES = ["flair", "t1", "t1ce", "t2"]


def _image(channels, value=1.0):
    data = torch.stack([torch.full((4, 5, 3), value + c) for c in range(channels)])
    return MetaTensor(data, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])), meta={"filename_or_obj": "p.nii"})


def test_named_subset_is_placed_in_bundle_order_with_zero_channels():
    out = FillMissingSequencesd("image", SEQUENCES, SUFFIXES)({"image": _image(2), "sequences": ["t1ce", "FLAIR"]})
    assert "sequences" not in out  # studies with different subsets batch together
    img = out["image"]
    assert img.shape == (4, 4, 5, 3)
    assert torch.all(img[2] == 1) and torch.all(img[0] == 2)  # channel 0 read (T1ce) goes to T1ce's place
    assert torch.all(img[1] == 0) and torch.all(img[3] == 0)
    assert img.meta[SEQUENCES_META_KEY] == "FLAIR+T1ce"
    assert torch.equal(img.affine, _image(1).affine)


def test_without_names_blank_channels_are_the_missing_sequences():
    image = _image(4)
    image[1] = 0
    out = FillMissingSequences(SEQUENCES)(image)
    assert out.meta[SEQUENCES_META_KEY] == "FLAIR+T1ce+T2"
    assert torch.equal(out.as_tensor(), image.as_tensor())


def test_bad_inputs_name_the_file_and_the_problem():
    with pytest.raises(ValueError, match=r"p.nii: 2 channel\(s\) read but 1 sequence\(s\) named"):
        FillMissingSequences(SEQUENCES)(_image(2), ["FLAIR"])
    with pytest.raises(ValueError, match=r"p.nii: unknown sequence 'dwi'"):
        FillMissingSequences(SEQUENCES)(_image(1), ["dwi"])
    with pytest.raises(ValueError, match=r"p.nii: 3 channel\(s\), but this bundle reads 4 sequences"):
        FillMissingSequences(SEQUENCES)(_image(3))
    with pytest.raises(ValueError, match="every channel is blank"):
        FillMissingSequences(SEQUENCES)(_image(4, value=0.0) * 0)
    flair_blank = _image(2)
    flair_blank[0] = 0  # the FLAIR file of a FLAIR + T1ce study holds nothing
    with pytest.raises(ValueError, match=r"p.nii: the FLAIR image is blank \(every voxel 0\)"):
        FillMissingSequences(SEQUENCES, SUFFIXES)(flair_blank, ["flair", "t1ce"])
    with pytest.raises(ValueError, match="named twice"):
        sequence_indices(["FLAIR", "flair"], SEQUENCES, SUFFIXES)


def test_keep_zeroes_the_other_sequences_and_none_keeps_all():
    image = _image(4)
    out = KeepSequencesd("image", SEQUENCES, keep="FLAIR+T1ce")({"image": image})["image"]
    assert [bool(out[c].any()) for c in range(4)] == [True, False, True, False]
    assert out.meta[SEQUENCES_META_KEY] == "FLAIR+T1ce"
    assert KeepSequencesd("image", SEQUENCES)({"image": image})["image"] is image
    t1_t1ce = image.clone()
    t1_t1ce[[0, 3]] = 0  # a study of T1 and T1ce: keeping FLAIR alone leaves nothing
    with pytest.raises(
        ValueError, match=r"p\.nii: none of the sequences to keep \(FLAIR\) is in the study \(it has T1\+T1ce\)"
    ):
        KeepSequencesd("image", SEQUENCES, keep=["FLAIR"])({"image": t1_t1ce})


def test_sequence_dropout_keeps_a_proper_non_empty_subset_of_every_key_alike():
    drop = RandDropSequencesd(["image", "other"], prob=1.0).set_random_state(0)
    seen = set()
    for _ in range(200):
        image = _image(4)
        out = drop({"image": image, "other": image.clone()})
        kept = tuple(c for c in range(4) if out["image"][c].any())
        assert 0 < len(kept) < 4
        assert torch.equal(out["image"].as_tensor(), out["other"].as_tensor())
        seen.add(kept)
    assert len(seen) == 14  # every non-empty proper subset of four sequences is drawn


def test_sequence_dropout_from_named_subsets_and_prob_zero():
    drop = RandDropSequences(1.0, subsets=[["FLAIR", "T1ce"], ["FLAIR"]], sequences=SEQUENCES).set_random_state(1)
    kept = {tuple(c for c in range(4) if drop(_image(4))[c].any()) for _ in range(50)}
    assert kept == {(0, 2), (0,)}
    image = np.ones((4, 2, 2, 2), dtype=np.float32)
    assert RandDropSequences(0.0)(image) is image
