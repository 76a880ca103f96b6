"""A small CT DICOM series written with pydicom, whose pixel values say where each pixel is, for DICOM SEG tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pipelines.io.dicom_seg import save_dicom_file

# Sagittal slices (rows run head to feet), non-square pixels, the slice normal pointing to patient right:
# nothing lines up with the RAS axes that NIfTI and MONAI use.
ROW_DIRECTION = (0.0, 1.0, 0.0)  # along a row (increasing column index): posterior
COLUMN_DIRECTION = (0.0, 0.0, -1.0)  # down a column (increasing row index): inferior
PIXEL_SPACING = (0.7, 0.9)  # between rows, between columns (DICOM order)
SLICE_SPACING = 2.5
ORIGIN = (30.0, -20.0, 40.0)
LABEL_HU = 500  # a pixel of label n holds n * LABEL_HU


def phantom_labels(num_slices: int = 12, rows: int = 20, columns: int = 24) -> np.ndarray:
    """The label of every pixel, ``(slice, row, column)``, slices in order along the normal: an asymmetric box of
    1 over several slices and a small box of 2 on one slice, so any flip or transposition shows."""
    labels = np.zeros((num_slices, rows, columns), np.uint8)
    labels[2:9, 3:11, 5:16] = 1
    labels[5, 6:9, 17:21] = 2
    labels[7, 0, 0] = 2  # a corner pixel
    return labels


def write_ct_series(
    folder: Path,
    pixels: np.ndarray,
    pixel_spacing: tuple[float, float] = PIXEL_SPACING,
    slice_spacing: float = SLICE_SPACING,
    seed: int = 0,
) -> list[pydicom.Dataset]:
    """Write ``pixels`` ``(slice, row, column)``, in HU, as a CT series to ``folder``: one file per slice, slice ``k``
    at ``ORIGIN + k * slice_spacing * normal``, files in shuffled order, instance numbers decreasing along the
    normal. Returns the datasets in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    num_slices, rows, columns = pixels.shape
    normal = np.cross(ROW_DIRECTION, COLUMN_DIRECTION)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(seed).permutation(num_slices)
    datasets = []
    for k in range(num_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^CT", "PH001", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, num_slices - k
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [float(v) for v in np.add(ORIGIN, normal * slice_spacing * k)]
        ds.ImageOrientationPatient = [*ROW_DIRECTION, *COLUMN_DIRECTION]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_spacing
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = pixels[k].astype(np.int16).tobytes()
        save_dicom_file(ds, folder / f"im{order[k]:03d}")  # no suffix: found by the preamble
        datasets.append(ds)
    return datasets
