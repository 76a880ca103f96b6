"""Tests of pipelines.io.dicom_seg: a mask in MONAI's (RAS) geometry goes back onto the right DICOM pixels."""

import logging

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage

from pipelines.io.dicom_seg import SaveDicomSeg, read_dicom_series, series_affine, write_dicom_seg
from tests.dicom_phantoms import LABEL_HU, PIXEL_SPACING, SLICE_SPACING, phantom_labels, write_ct_series

CLASSES = ["background", "liver", "tumour"]


@pytest.fixture
def series(tmp_path):
    """``(folder, labels, datasets)``: a phantom CT series whose pixel values encode the known labels."""
    labels = phantom_labels()
    folder = tmp_path / "ct_series"
    datasets = write_ct_series(folder, labels.astype(np.int16) * LABEL_HU)
    return folder, labels, datasets


def _mask_as_monai_loads_it(folder):
    """The label map as the bundles see the series: MONAI's ITK reader, RAS affine; labels from the intensities
    alone, so this does not share any geometry code with pipelines.io.dicom_seg."""
    image = LoadImage(image_only=True)(str(folder))
    return np.rint(image.numpy() / LABEL_HU).astype(np.uint8), image.affine.numpy()


def _frames_by_position(seg, datasets):
    """The SEG read back as a label map per source slice (``(slices, rows, columns)``, slice order of datasets)."""
    uids = [ds.SOPInstanceUID for ds in datasets]
    return seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)


def test_series_affine_is_the_one_monai_loads(series):
    folder, _, _ = series
    _, affine = _mask_as_monai_loads_it(folder)
    np.testing.assert_allclose(series_affine(read_dicom_series(folder)), affine, atol=1e-4)


def test_written_seg_has_the_source_geometry_and_the_mask(series, tmp_path):
    folder, labels, datasets = series
    mask, affine = _mask_as_monai_loads_it(folder)
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "ct_seg.nii.gz")
    out = write_dicom_seg(
        tmp_path / "ct_seg.nii.gz",
        folder,
        tmp_path / "out" / "ct_seg.dcm",
        CLASSES,
        anatomic_region="liver",
        algorithm_name="Liver CT segmentation",
        algorithm_version="0.1.0",
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["ct_seg.dcm"]

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert ds.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    np.testing.assert_allclose([float(v) for v in measures.PixelSpacing], PIXEL_SPACING)
    assert float(measures.SliceThickness) == SLICE_SPACING
    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in orientation], datasets[0].ImageOrientationPatient)
    # one frame per (slice, segment) holding that segment: empty frames are left out
    expected_frames = sum(int((labels[k] == v).any()) for k in range(len(labels)) for v in (1, 2))
    assert ds.NumberOfFrames == expected_frames
    by_uid = {d.SOPInstanceUID: d for d in datasets}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose([float(v) for v in position], by_uid[source_uid].ImagePositionPatient)

    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    liver, tumour = seg.SegmentSequence
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT liver
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # neoplasm
    assert tumour.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumour.AnatomicRegionSequence[0].CodeValue == "10200004"
    algorithm = liver.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("Liver CT segmentation", "0.1.0")
    np.testing.assert_array_equal(_frames_by_position(seg, datasets), labels)


def test_array_without_affine_and_labelmap_type(series, tmp_path):
    folder, labels, datasets = series
    mask, _ = _mask_as_monai_loads_it(folder)
    if "LABELMAP" not in {member.value for member in hd.seg.SegmentationTypeValues}:  # the MONAI Label env's 0.22
        with pytest.raises(ValueError, match="LABELMAP needs highdicom 0.23 or later"):
            write_dicom_seg(mask[None], folder, tmp_path / "lm.dcm", CLASSES, segmentation_type="LABELMAP")
        return
    out = write_dicom_seg(mask[None], folder, tmp_path / "lm.dcm", CLASSES, segmentation_type="LABELMAP")
    seg = hd.seg.segread(out)
    assert seg.SegmentationType == "LABELMAP"
    np.testing.assert_array_equal(_frames_by_position(seg, datasets), labels)


def test_label_values_name_the_segments(series, tmp_path):
    folder, labels, datasets = series
    mask, affine = _mask_as_monai_loads_it(folder)
    brats = np.where(mask == 2, 4, mask)  # BraTS stores enhancing tumour as 4
    names = ["background", "necrotic core", "enhancing tumour"]
    out = write_dicom_seg(brats, folder, tmp_path / "b.dcm", names, label_values=[0, 1, 4], affine=affine)
    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == names[1:]
    np.testing.assert_array_equal(_frames_by_position(seg, datasets), labels)  # segment numbers 1, 2
    with pytest.raises(ValueError, match=r"label value\(s\) \[4\]"):
        write_dicom_seg(brats, folder, tmp_path / "c.dcm", CLASSES, affine=affine)
    assert not (tmp_path / "c.dcm").exists()


def test_mask_off_the_series_grid_is_refused(series, tmp_path):
    folder, _, _ = series
    mask, affine = _mask_as_monai_loads_it(folder)
    shifted = affine.copy()
    shifted[:3, 3] += 0.5 * affine[:3, 0]  # half a voxel
    with pytest.raises(ValueError, match="does not match the pixels of DICOM slice"):
        write_dicom_seg(mask, folder, tmp_path / "x.dcm", CLASSES, affine=shifted)
    with pytest.raises(ValueError, match=r"does not cover DICOM slice|has \d+ voxels"):
        write_dicom_seg(mask[:, :, :-1], folder, tmp_path / "x.dcm", CLASSES, affine=affine)
    with pytest.raises(ValueError, match="non-integer values"):
        write_dicom_seg(mask * 0.5, folder, tmp_path / "x.dcm", CLASSES, affine=affine)
    assert not (tmp_path / "x.dcm").exists()


def test_folder_without_dicom_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(ValueError, match=f"{tmp_path}: no DICOM image"):
        write_dicom_seg(np.zeros((2, 2, 2)), tmp_path, tmp_path / "x.dcm", CLASSES)


def test_transform_skips_non_dicom_sources_with_a_warning(series, tmp_path, caplog):
    folder, labels, datasets = series
    image = LoadImage(image_only=True)(str(folder))
    mask = (image / LABEL_HU).round()[None]
    saver = SaveDicomSeg(tmp_path / "preds", CLASSES, anatomic_region="liver")
    assert saver(mask) is mask
    assert hd.seg.segread(tmp_path / "preds" / "ct_series_seg.dcm").NumberOfFrames > 0
    with caplog.at_level(logging.WARNING, logger="pipelines.io.dicom_seg"):
        saver(mask, source=str(tmp_path / "ct.nii.gz"))
    assert "needs a DICOM series input" in caplog.text
    assert sorted(p.name for p in (tmp_path / "preds").iterdir()) == ["ct_series_seg.dcm"]
