"""Radiograph files for the X-ray reader's tests: DICOM CR/DX written with pydicom's Dataset API, PNGs of any depth."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SOP_CLASSES = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "OT": SecondaryCaptureImageStorage,
}


def radiograph_pixels(rows: int = 30, columns: int = 40, bits: int = 12) -> np.ndarray:
    """``(rows, columns)`` unsigned grey levels over the whole ``bits`` range, different along each axis and in
    each corner (a ramp plus a bright block near the top left), so that any flip or transposition shows."""
    top = 2**bits - 1
    ramp = np.add.outer(np.arange(rows) * 2.0, np.arange(columns) * 1.0)
    pixels = ramp / ramp.max() * (0.7 * top)
    pixels[2 : rows // 3, 3 : columns // 4] = top
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(pixels).astype(dtype)


def write_radiograph_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    syntax=None,
    **attributes,
) -> Path:
    """A single-frame DICOM radiograph of ``pixels`` ((rows, columns) grey or (rows, columns, 3) RGB).

    Args:
        modality: Modality, which also picks the SOP class (CR, DX, else secondary capture).
        photometric: Photometric Interpretation (MONOCHROME1, MONOCHROME2, RGB).
        bits_stored: default: the array's bit depth (8 or 16), 12 when the values fit.
        syntax: a transfer syntax to compress to (pydicom's encoders; JPEG baseline through Pillow).
        attributes: more attributes by keyword (ViewPosition="LL", PixelSpacing=[0.2, 0.1], WindowCenter=...).
    """
    if bits_stored is None:
        bits_stored = 8 if pixels.dtype == np.uint8 else (12 if pixels.max() < 4096 else 16)
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "PHANTOM"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if syntax == JPEGBaseline8Bit:  # pydicom has no JPEG baseline encoder: Pillow's, encapsulated
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        if ds.SamplesPerPixel == 3:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    elif syntax is not None:
        ds.compress(syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """``pixels`` (rows, columns[, channels]) as a PNG (uint16 grey is written as a 16-bit PNG, mode ``I;16``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(path)
    return path
