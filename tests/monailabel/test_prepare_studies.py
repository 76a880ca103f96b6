"""``apps/radcascade_label/prepare_studies.py``: BraTS patient folders, DICOM series, files -> a NIfTI per study."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tests.monailabel.app_modules import load_app_module

prepare = load_app_module("prepare_studies.py")
AFFINE = np.array([[-1.0, 0, 0, 80], [0, -1.0, 0, 100], [0, 0, 1.0, -70], [0, 0, 0, 1]])
SEQUENCES = ("flair", "t1", "t1ce", "t2")


def _brats_patient(root, case, shape=(6, 7, 5)):
    folder = root / case
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(case))
    volumes = {}
    for seq in SEQUENCES:
        volumes[seq] = rng.random(shape).astype(np.float32)
        nib.save(nib.Nifti1Image(volumes[seq], AFFINE), folder / f"{case}_{seq}.nii.gz")
    label = (rng.random(shape) * 3).astype(np.uint8)
    nib.save(nib.Nifti1Image(label, AFFINE), folder / f"{case}_seg.nii.gz")
    return volumes, label


def test_brats_patient_folders_become_4d_studies_with_their_labels(tmp_path):
    volumes, label = _brats_patient(tmp_path / "brats", "BraTS_0001")
    _brats_patient(tmp_path / "brats", "BraTS_0002")
    studies = tmp_path / "studies"
    written = prepare.prepare_studies(tmp_path / "brats", studies, workflow="brain")
    assert [p.name for p in written] == ["BraTS_0001.nii.gz", "BraTS_0002.nii.gz"]
    image = nib.load(studies / "BraTS_0001.nii.gz")
    assert image.shape == (6, 7, 5, 4)
    np.testing.assert_allclose(image.affine, AFFINE, atol=1e-5)
    for c, seq in enumerate(SEQUENCES):  # the bundle's sequence order
        np.testing.assert_allclose(np.asarray(image.dataobj)[..., c], volumes[seq], atol=1e-6)
    copied = nib.load(studies / "labels" / "final" / "BraTS_0001.nii.gz")
    np.testing.assert_array_equal(np.asarray(copied.dataobj), label)


def test_dicom_series_and_files_become_3d_studies(tmp_path):
    source = tmp_path / "source"
    series = source / "ct_series"
    series.mkdir(parents=True)
    volume = sitk.GetImageFromArray(np.arange(4 * 8 * 6, dtype=np.int16).reshape(4, 8, 6))
    volume.SetSpacing((0.7, 0.7, 2.5))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume.GetDepth()):
        slice_ = volume[:, :, z]
        slice_.SetMetaData("0008|0060", "CT")
        slice_.SetMetaData("0020|0013", str(z + 1))
        slice_.SetMetaData("0020|0032", "\\".join(map(str, volume.TransformIndexToPhysicalPoint((0, 0, z)))))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2")
        writer.SetFileName(str(series / f"slice_{z:03d}.dcm"))
        writer.Execute(slice_)
    nib.save(nib.Nifti1Image(np.ones((5, 5, 3), np.int16), AFFINE), source / "other.nii.gz")
    studies = tmp_path / "studies"
    assert [p.name for p in prepare.prepare_studies(source, studies)] == ["ct_series.nii.gz", "other.nii.gz"]
    ct = nib.load(studies / "ct_series.nii.gz")
    assert ct.shape == (6, 8, 4)
    np.testing.assert_allclose(np.abs(np.diag(ct.affine))[:3], [0.7, 0.7, 2.5], atol=1e-4)
    np.testing.assert_allclose(nib.load(studies / "other.nii.gz").affine, AFFINE)


def test_patient_folder_with_some_sequences_gets_zero_channels(tmp_path):
    """FLAIR and T1ce only: a 4-channel study, T1 and T2 all zero, which the bundle reads as missing sequences."""
    volumes, _ = _brats_patient(tmp_path / "brats", "BraTS_0004")
    for seq in ("t1", "t2"):
        (tmp_path / "brats" / "BraTS_0004" / f"BraTS_0004_{seq}.nii.gz").unlink()
    prepare.prepare_studies(tmp_path / "brats", tmp_path / "studies", workflow="brain")
    data = np.asarray(nib.load(tmp_path / "studies" / "BraTS_0004.nii.gz").dataobj)
    assert data.shape == (6, 7, 5, 4)
    for c, seq in enumerate(SEQUENCES):
        expected = volumes[seq] if seq in ("flair", "t1ce") else np.zeros_like(volumes[seq])
        np.testing.assert_allclose(data[..., c], expected, atol=1e-6)


def test_main_reports_a_sequence_given_twice(tmp_path, caplog):
    _brats_patient(tmp_path / "brats", "BraTS_0003")
    folder = tmp_path / "brats" / "BraTS_0003"
    (folder / "BraTS_0003-FLAIR.nii.gz").write_bytes((folder / "BraTS_0003_flair.nii.gz").read_bytes())
    assert prepare.main([str(tmp_path / "brats"), str(tmp_path / "studies"), "--workflow", "brain"]) == 1
    assert "more than one file per sequence" in caplog.text and "BraTS_0003" in caplog.text


@pytest.mark.parametrize("workflow", ["liver", "lung"])
def test_single_channel_workflows_read_plain_files(tmp_path, workflow):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), AFFINE), tmp_path / "scan.nii.gz")
    written = prepare.prepare_studies(tmp_path / "scan.nii.gz", tmp_path / "studies", workflow=workflow)
    assert nib.load(written[0]).shape == (4, 4, 3)
