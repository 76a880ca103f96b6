import json

import nibabel as nib
import numpy as np
import pytest

from pipelines.io.inputs import is_dicom_series_dir, list_inference_inputs


def _nifti(path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), path)
    return str(path)


def _dicom_series(folder):
    import SimpleITK as sitk

    folder.mkdir()
    image = sitk.GetImageFromArray(np.zeros((2, 8, 8), np.int16))
    for z in range(2):
        sitk.WriteImage(image[:, :, z], str(folder / f"{z}.dcm"))
    return str(folder)


def test_single_file(tmp_path):
    path = _nifti(tmp_path / "ct.nii.gz")
    assert list_inference_inputs(path) == [{"image": path}]


def test_folder_with_files_and_a_dicom_series(tmp_path):
    a = _nifti(tmp_path / "a.nii.gz")
    series = _dicom_series(tmp_path / "b_series")
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_inference_inputs(tmp_path) == [{"image": a}, {"image": series}]
    assert is_dicom_series_dir(series) and not is_dicom_series_dir(tmp_path)


def test_dicom_series_folder_is_one_input(tmp_path):
    series = _dicom_series(tmp_path / "series")
    assert list_inference_inputs(series) == [{"image": series}]


def test_datalist_test_section_resolved_against_base_dir(tmp_path):
    _nifti(tmp_path / "x.nii.gz")
    datalist = tmp_path / "lists" / "d.json"
    datalist.parent.mkdir()
    datalist.write_text(json.dumps({"training": [], "test": [{"image": "x.nii.gz", "label": "y.nii.gz"}]}))
    assert list_inference_inputs(datalist, base_dir=tmp_path) == [{"image": str(tmp_path / "x.nii.gz")}]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.nii.gz", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no NIfTI"),
        (lambda p: (p / "a.txt").write_text("x") and p / "a.txt", "not an image file"),
    ],
)
def test_bad_inputs_name_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        list_inference_inputs(path)
    assert str(path) in str(err.value)


def test_datalist_without_section(tmp_path):
    datalist = tmp_path / "d.json"
    datalist.write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match="no 'test' section"):
        list_inference_inputs(datalist)


def _patient(folder, case, sequences=("flair", "t1", "t1ce", "t2", "seg")):
    folder.mkdir(parents=True)
    return [_nifti(folder / f"{case}_{seq}.nii.gz") for seq in sequences]


def test_patient_folder_becomes_one_multi_sequence_image_in_sequence_order(tmp_path):
    files = _patient(tmp_path / "BraTS20_001", "BraTS20_001")
    items = list_inference_inputs(tmp_path / "BraTS20_001", sequences=["flair", "t1", "t1ce", "t2"])
    # t1 and t1ce are told apart; the _seg file is ignored
    assert items == [{"image": files[:4], "sequences": ["flair", "t1", "t1ce", "t2"]}]


def test_folder_of_patient_folders_and_dash_separated_names(tmp_path):
    a = _patient(tmp_path / "root" / "a", "a")
    b = _patient(tmp_path / "root" / "b", "BraTS-GLI-0001", ("t2f", "t1n", "t1c", "t2w"))
    items = list_inference_inputs(tmp_path / "root", sequences=["flair", "t1", "t1ce", "t2"])
    assert items == [{"image": a[:4], "sequences": ["flair", "t1", "t1ce", "t2"]}]
    renamed = list_inference_inputs(tmp_path / "root" / "b", sequences=["t2f", "t1n", "t1c", "t2w"])
    assert renamed == [{"image": b, "sequences": ["t2f", "t1n", "t1c", "t2w"]}]


def test_patient_folder_missing_a_sequence_names_it(tmp_path):
    _patient(tmp_path / "p", "p", ("flair", "t1", "t2"))
    with pytest.raises(ValueError, match=r"p: no file for sequence\(s\) \['t1ce'\]"):
        list_inference_inputs(tmp_path / "p", sequences=["flair", "t1", "t1ce", "t2"])
    with pytest.raises(ValueError, match="no patient folder"):
        list_inference_inputs(tmp_path, sequences=["dwi"])


def test_patient_folder_with_some_sequences_lists_those_it_has_when_allowed(tmp_path):
    t1ce, flair = _patient(tmp_path / "root" / "p", "p", ("t1ce", "flair"))  # written out of the bundle's order
    full = _patient(tmp_path / "root" / "q", "q", ("flair", "t1", "t1ce", "t2"))
    items = list_inference_inputs(
        tmp_path / "root", sequences=["flair", "t1", "t1ce", "t2"], allow_missing_sequences=True
    )
    assert items == [
        {"image": [flair, t1ce], "sequences": ["flair", "t1ce"]},
        {"image": full, "sequences": ["flair", "t1", "t1ce", "t2"]},
    ]
    with pytest.raises(ValueError, match=r"p: no file for sequence\(s\) \['t1', 't2'\]"):
        list_inference_inputs(tmp_path / "root", sequences=["flair", "t1", "t1ce", "t2"])


def test_datalist_entry_keeps_the_sequences_it_names(tmp_path):
    image = _nifti(tmp_path / "p_flair.nii.gz")
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"test": [{"image": ["p_flair.nii.gz"], "sequences": ["FLAIR"]}]}))
    assert list_inference_inputs(datalist) == [{"image": [image], "sequences": ["FLAIR"]}]


def test_validate_reads_brain_patient_folders_with_some_sequences(tmp_path):
    """``radcascade validate brain FOLDER`` lists patient folders as inference does (FLAIR alone is a study) and
    checks every sequence file, naming the bad one."""
    import nibabel as nib
    import numpy as np

    from pipelines.cli.config_checks import validate_workflow

    patient = tmp_path / "studies" / "clinic_0001"
    patient.mkdir(parents=True)
    volume = np.random.default_rng(0).random((12, 12, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), patient / "clinic_0001_flair.nii.gz")
    problems, summary = validate_workflow("brain", [str(tmp_path / "studies")])
    assert problems == [] and "(1 image)" in summary
    volume[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), patient / "clinic_0001_t1ce.nii.gz")
    problems, _ = validate_workflow("brain", [str(tmp_path / "studies")])
    assert len(problems) == 1 and "clinic_0001_t1ce.nii.gz" in problems[0]
