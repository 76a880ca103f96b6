"""``radcascade prepare-real``: the real public cases of data_manifests/real_public.json checked and listed, on the
real files this repository carries (TotalSegmentator's example CTs and liver label, Apache-2.0)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from data_manifests.real_public import MANIFEST, load_manifest, prepare_real, sha256_of
from pipelines.cli.main import main
from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_pair, same_grid
from pipelines.workflows import REPO_ROOT

REAL = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator"


def test_the_manifest_records_every_case_and_the_files_in_the_repository_match_it():
    manifest = load_manifest()
    source = manifest["sources"]["totalsegmentator"]
    assert source["licence"] == "Apache-2.0" and len(source["commit"]) == 40
    for case in manifest["cases"]:
        assert case["workflow"] == "liver" and case["modality"] == "CT"
        if case["in_repository"]:
            folder = REPO_ROOT / case["in_repository"]
            assert sha256_of(folder / case["image"]["path"]) == case["image"]["sha256"]
            if case["label"]:
                assert sha256_of(folder / case["label"]["path"]) == case["label"]["sha256"]
        else:
            assert case["why_not_in_repository"]


def test_prepare_real_writes_a_datalist_of_the_cases_found_and_lists_the_missing(tmp_path, capsys):
    assert main(["prepare-real", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing  totalseg_ct_dicom: get it from https://github.com/wasserth/TotalSegmentator" in out
    datalist = json.loads((tmp_path / "liver_real.json").read_text())
    assert datalist["training"] == []  # evaluation only
    test_images = [e["image"] for e in datalist["test"]]
    assert test_images == [str(REAL / "example_ct_sm.nii.gz"), str(REAL / "example_ct.nii.gz")]
    assert datalist["unlabelled"] == []
    whole = np.asarray(nib.load(datalist["test"][1]["label"]).dataobj)
    np.testing.assert_array_equal(np.flatnonzero(whole.any(axis=(0, 1)))[[0, -1]], [69, 111])  # the liver's slices
    label = nib.load(datalist["test"][0]["label"])
    source = nib.load(REAL / "example_seg.nii.gz")
    values = np.asarray(label.dataobj)
    assert set(np.unique(values).tolist()) == {0, 1}  # TotalSegmentator's 5 (liver) -> 1, the other organs -> 0
    np.testing.assert_array_equal(values == 1, np.asarray(source.dataobj) == 5)
    np.testing.assert_allclose(label.affine, source.affine)
    assert check_pair(datalist["test"][0]["image"], datalist["test"][0]["label"]) == []


def test_a_file_that_differs_from_the_manifest_is_refused(tmp_path):
    fetched = tmp_path / "fetched" / "tests" / "reference_files"
    fetched.mkdir(parents=True)
    shutil.copy(REAL / "example_seg.nii.gz", fetched / "example_seg.nii.gz")
    shutil.copy(REAL / "example_ct.nii.gz", fetched / "example_ct_sm.nii.gz")  # the wrong file under the name
    with pytest.raises(DataError, match=r"example_ct_sm.nii.gz: sha256 dbd3ae6d.* differs from e50c00b2"):
        prepare_real([tmp_path / "fetched"], tmp_path / "out", MANIFEST)
    assert not (tmp_path / "out" / "liver_real.json").exists()


def test_a_label_stored_with_flipped_rows_lies_on_its_images_grid(tmp_path):
    """dicom2nifti and some viewers store a label with the rows flipped: the same voxel centres, another affine."""
    image = nib.load(REAL / "example_ct_sm.nii.gz")
    rows_flipped = image.affine.copy()
    rows_flipped[:3, 3] += rows_flipped[:3, 1] * (image.shape[1] - 1)  # the first row is the image's last
    rows_flipped[:3, 1] *= -1
    values = np.asarray(nib.load(REAL / "example_seg.nii.gz").dataobj)[:, ::-1]
    nib.save(nib.Nifti1Image(values, rows_flipped), tmp_path / "flipped.nii.gz")
    assert same_grid(image.affine, image.shape, rows_flipped, values.shape)
    assert check_pair(REAL / "example_ct_sm.nii.gz", tmp_path / "flipped.nii.gz") == []

    shifted = rows_flipped.copy()
    shifted[0, 3] += 3.0  # one voxel off: another grid
    nib.save(nib.Nifti1Image(values, shifted), tmp_path / "shifted.nii.gz")
    problems = check_pair(REAL / "example_ct_sm.nii.gz", tmp_path / "shifted.nii.gz")
    assert len(problems) == 1 and "affine (origin/direction) differs" in problems[0]
