"""Tests of pipelines.io.dicom_seg: a mask in MONAI's (RAS) geometry goes back onto the right DICOM pixels."""

import copy
import logging
import re
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from pipelines.io.dicom_seg import SaveDicomSeg, save_dicom_file, write_dicom_seg
from pipelines.io.dicom_source import read_dicom_series, series_affine
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


def _edit_series_files(folder, edit):
    """Rewrite every DICOM file of ``folder`` with ``edit(dataset)`` applied, its file meta header kept as it is (as
    anonymisers leave it)."""
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        edit(ds)
        pydicom.dcmwrite(path, ds)  # like the original: no UID is copied between the file meta and the dataset


def _blank_uids(ds):
    """What the anonymised TotalSegmentator example CT holds: these UIDs present but empty, no series number."""
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(ds, keyword, "")
    ds.SeriesNumber = None


def _warnings(caplog):
    """The warnings that the DICOM SEG modules (dicom_seg, dicom_source) logged, as text."""
    names = ("pipelines.io.dicom_seg", "pipelines.io.dicom_source")
    return [r.getMessage() for r in caplog.records if r.name in names and r.levelno == logging.WARNING]


def _referenced_uids(seg):
    """``(study, referenced series, frame of reference, referenced (SOP class, SOP instance) pairs)`` of a SEG."""
    (series,) = seg.ReferencedSeriesSequence
    instances = [(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in series.ReferencedInstanceSequence]
    return seg.StudyInstanceUID, series.SeriesInstanceUID, seg.FrameOfReferenceUID, instances


def test_series_with_empty_uids_gets_a_seg_referencing_generated_uids(series, tmp_path, caplog):
    folder, labels, datasets = series
    mask, affine = _mask_as_monai_loads_it(folder)
    _edit_series_files(folder, _blank_uids)
    with caplog.at_level(logging.WARNING, logger="pipelines.io.dicom_source"):
        first = write_dicom_seg(mask, folder, tmp_path / "first.dcm", CLASSES, affine=affine)
    (warning,) = _warnings(caplog)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert keyword in warning
    assert "PACS cannot link it" in warning and str(folder) in warning

    seg = hd.seg.segread(first)
    study, series_uid, frame, instances = _referenced_uids(seg)
    assert pydicom.uid.UID(study).is_valid and pydicom.uid.UID(series_uid).is_valid
    assert series_uid not in ("", datasets[0].SeriesInstanceUID) and study != datasets[0].StudyInstanceUID
    assert frame == datasets[0].FrameOfReferenceUID  # the files hold it
    # SOP class and instance from the file meta headers: the original slices' own UIDs
    assert sorted(instances) == sorted((CTImageStorage, ds.SOPInstanceUID) for ds in datasets)
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert (source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID) in instances
    np.testing.assert_array_equal(_frames_by_position(seg, datasets), labels)

    second = write_dicom_seg(mask, folder, tmp_path / "second.dcm", CLASSES, affine=affine)
    assert _referenced_uids(hd.seg.segread(second)) == (study, series_uid, frame, instances)
    assert all(pydicom.dcmread(path).SOPClassUID == "" for path in folder.iterdir())  # the files are unchanged


def _ct_small_series(folder, num_slices, edit):
    """A series of ``num_slices`` copies of pydicom's CT_small.dcm (a real CT slice, 128 x 128) stacked 5 mm
    apart along its normal, each with ``edit(dataset)`` applied. Returns the datasets in slice order."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir()
    datasets = []
    for k in range(num_slices):
        ds = copy.deepcopy(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [
            float(v) + (5.0 * k if axis == 2 else 0.0) for axis, v in enumerate(source.ImagePositionPatient)
        ]
        ds.InstanceNumber = k + 1
        edit(ds)
        pydicom.dcmwrite(folder / f"slice{k}.dcm", ds)
        datasets.append(ds)
    return datasets


def _strip_uids_and_file_meta(ds):
    """No UID but the ones a SEG can do without, in the dataset or its file meta header; no PatientID either."""
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
        delattr(ds.file_meta, keyword)
    for keyword in ("SOPClassUID", "SOPInstanceUID", "FrameOfReferenceUID", "PatientID"):
        delattr(ds, keyword)
    ds.StudyInstanceUID = ds.SeriesInstanceUID = ""


def test_uids_missing_from_files_and_file_meta_are_generated_the_same_every_time(tmp_path, caplog):
    folder = tmp_path / "ct_small"
    datasets = _ct_small_series(folder, 3, _strip_uids_and_file_meta)
    mask = np.zeros((128, 128, 3), np.uint8)  # the layout of series_affine: column, row, slice
    mask[40:60, 50:90, 1:] = 1
    with caplog.at_level(logging.WARNING, logger="pipelines.io.dicom_source"):
        first = write_dicom_seg(mask, folder, tmp_path / "first.dcm", CLASSES[:2])
        second = write_dicom_seg(mask, folder, tmp_path / "second.dcm", CLASSES[:2])
    warning = _warnings(caplog)[0]
    assert len(_warnings(caplog)) == 2  # one per series and write
    assert "SOPClassUID (from Modality CT)" in warning and "FrameOfReferenceUID (generated)" in warning
    assert "PatientID (added empty)" in warning and "SOPInstanceUID (generated)" in warning

    seg = hd.seg.segread(first)
    study, series_uid, frame, instances = _referenced_uids(seg)
    assert len({uid for _, uid in instances}) == len(datasets) and {cls for cls, _ in instances} == {CTImageStorage}
    assert all(pydicom.uid.UID(uid).is_valid for uid in (study, series_uid, frame, *(u for _, u in instances)))
    assert _referenced_uids(hd.seg.segread(second)) == (study, series_uid, frame, instances)
    by_position = [uid for _, uid in instances]  # referenced in slice order
    frames = seg.get_pixels_by_source_instance(by_position, combine_segments=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(frames, mask.transpose(2, 1, 0))


def test_read_dicom_series_skips_objects_that_are_not_image_slices(series, tmp_path):
    folder, labels, datasets = series
    mask, affine = _mask_as_monai_loads_it(folder)
    write_dicom_seg(mask, folder, folder / "ct_seg.dcm", CLASSES, affine=affine)  # a SEG beside its slices
    shutil.copy(get_testdata_file("test-SR.dcm"), folder / "report.dcm")
    rtstruct = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    rtstruct.file_meta = FileMetaDataset()
    rtstruct.file_meta.MediaStorageSOPClassUID = rtstruct.SOPClassUID
    rtstruct.file_meta.MediaStorageSOPInstanceUID = rtstruct.SOPInstanceUID
    rtstruct.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    save_dicom_file(rtstruct, folder / "contours.dcm")
    header_only = pydicom.dcmread(next(p for p in sorted(folder.iterdir()) if p.name.startswith("im")))
    del header_only.PixelData  # same series and position as its slice: read, it would be a duplicate
    pydicom.dcmwrite(folder / "header_only.dcm", header_only)
    (folder / "notes.txt").write_text("not dicom")

    read = read_dicom_series(folder)
    assert [ds.SOPInstanceUID for ds in read] == [ds.SOPInstanceUID for ds in datasets]
    out = write_dicom_seg(mask, folder, tmp_path / "again.dcm", CLASSES, affine=affine)
    np.testing.assert_array_equal(_frames_by_position(hd.seg.segread(out), datasets), labels)


def _merge_series(folder, sources):
    """Copy the files of the series folders ``sources`` into ``folder``, prefixed by their folder's name."""
    folder.mkdir()
    for source in sources:
        for path in source.iterdir():
            shutil.copy(path, folder / f"{source.name}_{path.name}")


def test_series_are_told_apart_with_or_without_series_uid(tmp_path):
    pixels = np.zeros((3, 4, 5), np.int16)  # tiny: only the headers matter
    first, second = tmp_path / "first", tmp_path / "second"
    write_ct_series(first, pixels)
    write_ct_series(second, pixels)  # another study and series, same geometry
    _merge_series(tmp_path / "two", [first, second])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'two'}: holds 2 DICOM series")):
        read_dicom_series(tmp_path / "two")

    for folder in (first, second):
        _edit_series_files(folder, _blank_uids)
    assert len(read_dicom_series(first)) == 3  # empty SeriesInstanceUID: still one series
    _merge_series(tmp_path / "two_unnamed", [first, second])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'two_unnamed'}: holds 2 DICOM series (no Series")):
        read_dicom_series(tmp_path / "two_unnamed")


def _unknown_sop_class(ds):
    """Neither the dataset nor its file meta header says what the slice is, nor does its modality."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ""
    ds.Modality = "OT"


def test_transform_writes_no_seg_when_the_source_cannot_have_one(series, tmp_path, caplog):
    folder, _, _ = series
    image = LoadImage(image_only=True)(str(folder))
    mask = (image / LABEL_HU).round()[None]
    _edit_series_files(folder, _unknown_sop_class)
    saver = SaveDicomSeg(tmp_path / "preds", CLASSES, anatomic_region="liver")
    with caplog.at_level(logging.WARNING, logger="pipelines.io.dicom_seg"):
        assert saver(mask) is mask  # the case goes on
    (warning,) = _warnings(caplog)
    assert "no SOPClassUID" in warning and "Modality OT" in warning and "wrote no .dcm" in warning
    assert any(str(path) in warning for path in folder.iterdir())
    assert not (tmp_path / "preds" / "ct_series_seg.dcm").exists()
