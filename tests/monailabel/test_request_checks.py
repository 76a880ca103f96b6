"""The MONAI Label app's request checks (``apps/radcascade_label/lib/request_checks.py``): the one-line reasons of
its HTTP 4xx answers. They run here without MONAI Label; test_server.py sends the same requests to a real server."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.workflows import REPO_ROOT
from tests.monailabel.app_modules import load_app_module

checks = load_app_module("lib/request_checks.py")
AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
REAL_CT = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator" / "example_ct.nii.gz"


def _ct(tmp_path, name="ct.nii.gz", values=None):
    if values is None:
        values = np.full((16, 16, 8), -1000, np.int16)
        values[4:12, 4:12] = 40  # a body
    path = tmp_path / name
    nib.save(nib.Nifti1Image(values, AFFINE), path)
    return path


def _problem(call, *args, **kwargs):
    with pytest.raises(checks.RequestProblem) as caught:
        call(*args, **kwargs)
    assert "\n" not in caught.value.reason
    return caught.value


def test_unknown_model_is_404_naming_the_served_ones():
    checks.check_model_name("liver", ["liver", "liver_full"])
    problem = _problem(checks.check_model_name, "kidney", ["liver_full", "liver"])
    assert problem.status == 404 and "'kidney'" in problem.reason and "liver, liver_full" in problem.reason


def test_upload_of_a_text_file_is_415(tmp_path):
    (tmp_path / "notes.nii.gz").write_text("not an image")
    problem = _problem(checks.check_uploaded_image, tmp_path / "notes.nii.gz", shown="upload 'notes'")
    assert problem.status == 415 and problem.reason.startswith("upload 'notes': not an image")
    assert str(tmp_path) not in problem.reason  # the server's temporary path means nothing to the client


def test_upload_of_a_truncated_volume_is_422(tmp_path):
    path = _ct(tmp_path, values=np.random.default_rng(0).normal(size=(64, 64, 32)).astype(np.float32))
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[: len(data) // 2]))
    problem = _problem(checks.check_uploaded_image, path, shown="upload 'ct'")
    assert problem.status == 422 and problem.reason.startswith("upload 'ct':")


def test_upload_of_a_3d_ct_a_4d_study_and_a_real_ct_pass(tmp_path):
    checks.check_uploaded_image(_ct(tmp_path), shown="ct")
    mr = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 4, 4), np.float32), AFFINE), mr)
    checks.check_uploaded_image(mr, shown="mr")
    checks.check_uploaded_image(REAL_CT, shown="real")
    checks.check_image_for_model(REAL_CT, "liver", 1, "CT")


def test_a_volume_without_a_body_is_422(tmp_path):
    blank = _ct(tmp_path, "blank.nii.gz", np.full((16, 16, 8), -1000, np.int16))
    problem = _problem(checks.check_image_for_model, blank, "liver", 1, "CT")
    assert problem.status == 422 and problem.reason.startswith("liver: blank.nii.gz: all voxels are -1000")


def test_a_normalised_image_is_not_hounsfield_units(tmp_path):
    path = _ct(tmp_path, "norm.nii.gz", np.random.default_rng(0).random((16, 16, 8), np.float32))
    problem = _problem(checks.check_image_for_model, path, "liver", 1, "CT")
    assert problem.status == 422 and "Hounsfield units" in problem.reason


def test_wrong_channels_missing_and_non_images_for_a_model(tmp_path):
    problem = _problem(checks.check_image_for_model, _ct(tmp_path), "brain", 4, "MR")
    assert problem.status == 422 and problem.reason == "brain takes 4-channel images, ct.nii.gz has 1"
    assert _problem(checks.check_image_for_model, tmp_path / "gone.nii.gz", "liver", 1, "CT").status == 404
    sitk.WriteImage(sitk.Image([4, 4], sitk.sitkUInt8), str(tmp_path / "slice.png"))
    (tmp_path / "x.mha").write_text("garbage")
    assert _problem(checks.check_image_for_model, tmp_path / "x.mha", "liver", 1, "CT").status == 415
    problem = _problem(checks.check_image_for_model, tmp_path / "slice.png", "liver", 1, "CT")
    assert problem.status == 422 and "2D" in problem.reason


def _radiograph(tmp_path, name="cxr.png", colour=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 30, 3) if colour else (40, 30), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name)
    return tmp_path / name


def test_radiographs_are_taken_by_a_server_that_serves_them(tmp_path):
    checks.check_uploaded_image(_radiograph(tmp_path), shown="upload 'cxr'", radiographs=True)
    problem = _problem(checks.check_uploaded_image, _radiograph(tmp_path, "photo.png", colour=True), "upload 'photo'",
                       radiographs=True)  # fmt: skip
    assert problem.status == 422 and "upload 'photo'" in problem.reason and "colour image" in problem.reason
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    assert _problem(checks.check_uploaded_image, notes, "upload 'notes'", radiographs=True).status == 415


def test_radiograph_model_refuses_volumes_photographs_and_lateral_views(tmp_path):
    from tests.radiograph_files import write_radiograph_dicom

    checks.check_radiograph_for_model(str(_radiograph(tmp_path)), "chest_xray")
    problem = _problem(checks.check_radiograph_for_model, str(_ct(tmp_path)), "chest_xray")
    assert problem.status == 422 and "segments radiographs" in problem.reason and "ct.nii.gz" in problem.reason
    photo = _radiograph(tmp_path, "photo.png", colour=True)
    problem = _problem(checks.check_radiograph_for_model, str(photo), "chest_xray")
    assert problem.status == 422 and problem.reason.startswith("chest_xray: photo.png") and "colour" in problem.reason
    lateral = write_radiograph_dicom(tmp_path / "lat.dcm", np.arange(1200, dtype=np.uint16).reshape(40, 30),
                                     modality="DX", ViewPosition="LL")  # fmt: skip
    problem = _problem(checks.check_radiograph_for_model, str(lateral), "chest_xray")
    assert problem.status == 422 and "lateral" in problem.reason
    checks.check_radiograph_for_model(str(lateral), "chest_xray", allow_lateral=True)
    assert _problem(checks.check_radiograph_for_model, str(tmp_path / "gone.png"), "chest_xray").status == 404
