"""DICOM as it arrives from the field: blanked UIDs, non-image objects beside the slices, re-encoded, reordered and
tilted series, and pydicom's own test files (shipped inside the pydicom package) given as images.

The series are built from pydicom's real ``CT_small.dcm`` (a 128x128 CT slice), copied to several positions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless, generate_uid

from pipelines.validation.dicom_checks import checked_series_files, dicom_file_problems, dicom_series_problems
from pipelines.validation.volume_checks import check_volume

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SPACING = 2.5


def _ct_small_series(
    folder: Path,
    n: int = 5,
    *,
    blank_uids: bool = False,
    series_number: int | None = 1,
    shift_y_per_slice: float = 0.0,
    order=None,
    rle: bool = False,
    prefix: str = "im",
) -> Path:
    """``n`` copies of CT_small.dcm stepped ``SPACING`` mm along z (and ``shift_y_per_slice`` along y: a tilt)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    origin = np.asarray(source.ImagePositionPatient, dtype=float)
    series_uid = generate_uid()
    for i in order if order is not None else range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.ImagePositionPatient = [float(v) for v in origin + [0.0, i * shift_y_per_slice, i * SPACING]]
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = series_number
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if blank_uids:  # as anonymisers and some export tools leave them: present, empty
            for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
                setattr(ds, keyword, "")
        if rle:
            ds.compress(RLELossless)
        ds.save_as(folder / f"{prefix}_{i:03d}.dcm")
    return folder


def test_blank_uids_are_grouped_by_the_attributes_that_stand_in(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", blank_uids=True)
    assert dicom_series_problems(folder) == []
    assert len(checked_series_files(folder)[1]) == 5
    assert check_volume(folder) == []


def test_reordered_files_are_read_along_the_slice_normal(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", blank_uids=True, order=[3, 0, 4, 1, 2])
    names = [p.name for p in checked_series_files(folder)[1]]
    assert names == [f"im_{i:03d}.dcm" for i in range(5)]


def test_non_image_objects_beside_the_slices_are_skipped(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", blank_uids=True)
    for name in ("rtstruct.dcm", "test-SR.dcm", "liver_1frame.dcm"):
        shutil.copy(TEST_FILES / name, folder / name)
    assert dicom_series_problems(folder) == []
    assert [p.name for p in checked_series_files(folder)[1]] == [f"im_{i:03d}.dcm" for i in range(5)]
    assert check_volume(folder) == []


def test_a_folder_of_non_image_objects_only_says_what_they_are(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("rtstruct.dcm", "liver_1frame.dcm"):
        shutil.copy(TEST_FILES / name, folder / name)
    problems = dicom_series_problems(folder)
    assert len(problems) == 1 and "no image series, only non-image DICOM objects" in problems[0]
    assert "DICOM SEG" in problems[0] and "RTSTRUCT" in problems[0]


def test_two_series_without_uids_are_told_apart_by_series_number(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", blank_uids=True, series_number=2)
    _ct_small_series(folder, n=3, blank_uids=True, series_number=3, prefix="other")
    problems = dicom_series_problems(folder)
    assert len(problems) == 1 and "2 image series in one folder" in problems[0]
    assert "series number 2" in problems[0] and "series number 3" in problems[0]


def test_one_slice_is_not_a_volume(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", n=1)
    assert "holds a single slice (im_000.dcm, 128x128), not a volume" in dicom_series_problems(folder)[0]
    assert dicom_series_problems(folder, expect_volume=False) == []
    problems = check_volume(TEST_FILES / "CT_small.dcm", modality="CT")
    assert problems == [
        f"{TEST_FILES / 'CT_small.dcm'}: is a single 128x128 slice, not a volume; give the folder "
        "that holds the whole series (one file per slice)"
    ]
    assert dicom_file_problems(TEST_FILES / "CT_small.dcm", expect_ndim=2) == []


def test_gantry_tilt_is_named(tmp_path):
    folder = _ct_small_series(tmp_path / "ct", shift_y_per_slice=0.5)  # 11.3 degrees off the normal
    problems = dicom_series_problems(folder)
    assert len(problems) == 1 and "gantry tilt: the slices step 11.3 degrees off their normal" in problems[0]


def test_an_rle_re_encoded_series_decodes_to_the_same_values(tmp_path):
    plain = _ct_small_series(tmp_path / "plain", blank_uids=True)
    rle = _ct_small_series(tmp_path / "rle", blank_uids=True, rle=True)
    assert pydicom.dcmread(next(rle.iterdir())).file_meta.TransferSyntaxUID == RLELossless
    from pipelines.validation.volume_checks import _inspect

    _, a = _inspect(plain, 3, read_data=True, keep_data=True)
    _, b = _inspect(rle, 3, read_data=True, keep_data=True)
    assert a.shape == b.shape == (128, 128, 5)
    np.testing.assert_array_equal(a.data, b.data)


EXPECTED = {
    "CT_small.dcm": "is a single 128x128 slice, not a volume",
    "liver_1frame.dcm": "is a DICOM SEG (a segmentation object), not an image",
    "rtstruct.dcm": "is an RTSTRUCT (contours of structures), not an image",
    "test-SR.dcm": "is a structured report (SR), not an image",
    "rtdose.dcm": "is an RT dose grid, not an image",
    "ExplVR_BigEnd.dcm": "is a colour US image (RGB, 3 samples per pixel)",
    "waveform_ecg.dcm": "is a waveform (ECG or another signal), not an image",
    "no_meta_group_length.dcm": "holds no pixel data",
}


@pytest.mark.parametrize("name", sorted(p.name for p in TEST_FILES.glob("*.dcm")))
def test_every_pydicom_test_file_gets_one_line_in_a_users_words(name):
    """Given as a CT volume, each of pydicom's test files is refused with one line naming the file and the real
    problem (none of them is a CT volume), never a reader's internal message."""
    path = TEST_FILES / name
    problems = check_volume(path, modality="CT")
    assert len(problems) >= 1
    first = problems[0]
    assert first.startswith(f"{path}: ") and "\n" not in first
    for internal in ("Exception thrown", "sitk::", ".cxx", "itk::", "Traceback"):
        assert internal not in first, first
    if name in EXPECTED:
        assert EXPECTED[name] in first, first


def test_the_file_set_is_what_pydicom_ships():
    assert len(list(TEST_FILES.glob("*.dcm"))) >= 60 and os.path.isfile(get_testdata_file("CT_small.dcm"))


def test_the_bundles_loader_reads_the_image_series_beside_other_objects(tmp_path, caplog):
    """``LoadImaged`` of the bundles (stage common.yaml) reads a folder's one image series, as the checks see it."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from pipelines.workflows import get_workflow

    plain = _ct_small_series(tmp_path / "plain", blank_uids=True)
    mixed = _ct_small_series(tmp_path / "mixed", blank_uids=True)
    for name in ("rtstruct.dcm", "liver_1frame.dcm", "test-SR.dcm"):
        shutil.copy(TEST_FILES / name, mixed / name)
    parser: ConfigParser = get_workflow("liver").config_parser("inference")
    load = Compose(parser.get_parsed_content("load_transforms")[:1])  # LoadImaged
    a, b = load({"image": str(plain)})["image"], load({"image": str(mixed)})["image"]
    assert a.shape == b.shape == (1, 128, 128, 5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.affine.numpy(), b.affine.numpy())
    assert a.affine[2, 3] < a.affine[2, 3] + a.affine[2, 2]  # slices ascend along z as GDCM orders them

    _ct_small_series(mixed, n=3, blank_uids=True, series_number=7, prefix="other")  # a second, shorter series
    assert check_volume(mixed)[0].endswith("put each series in its own folder")  # the data checks refuse it
    with caplog.at_level("WARNING", logger="pipelines.io.dicom_reader"):
        c = load({"image": str(mixed)})["image"]  # read without them: the longest series, named
    np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert "2 image series; reading the one with most slices (5)" in caplog.text
    with pytest.raises(RuntimeError):  # MONAI's LoadImage: no reader could read a folder without images
        empty = tmp_path / "empty"
        empty.mkdir()
        shutil.copy(TEST_FILES / "rtstruct.dcm", empty / "rtstruct.dcm")
        load({"image": str(empty)})


def _mr_small_series(folder: Path, source: str, n: int = 3) -> Path:
    """``n`` copies of one of pydicom's MR_small encodings, stepped along the slice normal, pixel data as encoded."""
    folder.mkdir(parents=True)
    for i in range(n):
        ds = pydicom.dcmread(TEST_FILES / source)
        normal = np.cross(
            np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        )
        ds.ImagePositionPatient = [float(v) for v in np.asarray(ds.ImagePositionPatient, float) + i * SPACING * normal]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"im_{i:03d}.dcm")
    return folder


@pytest.mark.parametrize(
    "encoded",
    ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
     "MR_small_implicit.dcm", "MR_small_expb.dcm"],
)  # fmt: skip
def test_compressed_and_odd_encodings_decode_to_the_uncompressed_values(tmp_path, encoded):
    """RLE, JPEG 2000 and JPEG-LS lossless (GDCM's decoders, inside ITK), big endian and implicit VR: the bundles'
    loader gives the same voxels as from the uncompressed file."""
    from monai.transforms import Compose

    from pipelines.workflows import get_workflow

    load = Compose(get_workflow("brain").config_parser("inference").get_parsed_content("load_transforms")[:1])
    reference = load({"image": str(_mr_small_series(tmp_path / "plain", "MR_small.dcm"))})["image"]
    decoded = load({"image": str(_mr_small_series(tmp_path / "encoded", encoded))})["image"]
    assert decoded.shape == reference.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(decoded.numpy(), reference.numpy())
    assert dicom_series_problems(tmp_path / "encoded") == []


def test_a_deflated_series_decodes_to_the_same_values(tmp_path):
    from monai.transforms import Compose
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from pipelines.workflows import get_workflow

    plain = _mr_small_series(tmp_path / "plain", "MR_small.dcm")
    deflated = tmp_path / "deflated"
    deflated.mkdir()
    for path in sorted(plain.iterdir()):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(deflated / path.name, enforce_file_format=True)
    assert pydicom.dcmread(deflated / "im_000.dcm").file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert dicom_series_problems(deflated) == []
    load = Compose(get_workflow("brain").config_parser("inference").get_parsed_content("load_transforms")[:1])
    np.testing.assert_array_equal(load({"image": str(deflated)})["image"], load({"image": str(plain)})["image"])


def test_a_study_folder_of_several_series_becomes_one_case_per_series(tmp_path):
    """Inference on an export of a whole study: each image series is a case of its own (linked into series_dir),
    the non-image objects beside them are left out; without series_dir the folder is refused, its series listed."""
    from pipelines.inference.robust_inference import FailureReport, inference_inputs

    study = _ct_small_series(tmp_path / "study", n=5, blank_uids=True, series_number=2)
    _ct_small_series(study, n=3, blank_uids=True, series_number=3, prefix="other")
    shutil.copy(TEST_FILES / "rtstruct.dcm", study / "rtstruct.dcm")

    failures = FailureReport()
    items = inference_inputs(study, failures, series_dir=tmp_path / "series")
    assert [Path(i["image"]).name for i in items] == ["study_s1", "study_s2"]
    assert sorted(len(list(Path(i["image"]).iterdir())) for i in items) == [3, 5]
    assert all(check_volume(i["image"]) == [] for i in items)
    assert inference_inputs(study, FailureReport(), series_dir=tmp_path / "series") == items  # a rerun: same names

    refused = FailureReport()
    assert inference_inputs(study, refused) == []
    assert "2 image series in one folder" in refused.failures[0]["error"]
