"""What a DICOM file holds, from its header: an image to read, or an object that only rides along with images.

Exports from PACS and research tools put segmentations (SEG), contours (RTSTRUCT), reports (SR), presentation
states, plans, dose grids and key-object notes beside the image slices. None of them is an image to segment: the
checks name them in a user's words and skip them, instead of failing on them or, worse, reading them as a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DicomFileInfo", "describe_dataset", "non_image_kind", "transfer_syntax_name"]

# SOP classes that are not images to segment, by UID prefix (the SR and presentation-state families share one).
_NON_IMAGE_CLASSES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.5.1.4.1.1.66.4", "a DICOM SEG (a segmentation object)"),
    ("1.2.840.10008.5.1.4.1.1.66.7", "a label map DICOM SEG (a segmentation object)"),
    ("1.2.840.10008.5.1.4.1.1.66.", "a raw data or spatial registration object"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "an RTSTRUCT (contours of structures)"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "an RT dose grid"),
    ("1.2.840.10008.5.1.4.1.1.481.", "a radiotherapy plan or record"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "a key object selection note"),
    ("1.2.840.10008.5.1.4.1.1.88.", "a structured report (SR)"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a waveform (ECG or another signal)"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF, CDA, STL...)"),
    ("1.2.840.10008.1.3.10", "a DICOMDIR (a media directory)"),
)
_RT_IMAGE = "1.2.840.10008.5.1.4.1.1.481.1"  # RT Image: a (2D portal) image, not a non-image object

_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit VR little endian",
    "1.2.840.10008.1.2.1": "explicit VR little endian",
    "1.2.840.10008.1.2.1.99": "deflated explicit VR little endian",
    "1.2.840.10008.1.2.2": "explicit VR big endian",
    "1.2.840.10008.1.2.4.50": "JPEG baseline (lossy)",
    "1.2.840.10008.1.2.4.51": "JPEG extended (lossy, 12-bit)",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless (first-order prediction)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE lossless",
}


def transfer_syntax_name(uid: str | None) -> str:
    """The common name of a transfer syntax UID (``JPEG 2000 lossless``), or the UID itself when unknown."""
    if not uid:
        return "unknown transfer syntax (no file meta information)"
    return _TRANSFER_SYNTAXES.get(str(uid), f"transfer syntax {uid}")


def non_image_kind(sop_class_uid: str | None) -> str | None:
    """What a non-image object of SOP class ``sop_class_uid`` is (``"an RTSTRUCT (contours of structures)"``);
    None for image classes and unknown or empty UIDs."""
    uid = str(sop_class_uid or "")
    if not uid or uid == _RT_IMAGE:
        return None
    for prefix, kind in _NON_IMAGE_CLASSES:
        if uid == prefix or (prefix.endswith(".") and uid.startswith(prefix)):
            return kind
    return None


@dataclass(frozen=True)
class DicomFileInfo:
    """The header facts the checks use to describe one DICOM file.

    Attributes:
        sop_class_uid: SOPClassUID (or the file meta's MediaStorageSOPClassUID when the dataset's is empty).
        kind: for a non-image object, what it is (:func:`non_image_kind`); None for an image.
        modality: Modality, or "".
        has_pixels: the dataset holds PixelData (or float/double pixel data).
        frames: NumberOfFrames (1 when absent).
        rows, columns: the image size (0 when absent).
        samples_per_pixel: 1 for greyscale, 3 for colour.
        photometric: PhotometricInterpretation, or "".
        transfer_syntax: the transfer syntax's common name.
    """

    sop_class_uid: str
    kind: str | None
    modality: str
    has_pixels: bool
    frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    photometric: str
    transfer_syntax: str


def _int(dataset, keyword: str, default: int) -> int:
    try:
        return int(dataset.get(keyword, default) or default)
    except (TypeError, ValueError):
        return default


def describe_dataset(dataset) -> DicomFileInfo:
    """Describe a pydicom dataset (its header is enough; the pixel data may be deferred)."""
    meta = getattr(dataset, "file_meta", None)
    sop_class = str(dataset.get("SOPClassUID", "") or "")
    if not sop_class and meta is not None:
        sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    return DicomFileInfo(
        sop_class_uid=sop_class,
        kind=non_image_kind(sop_class),
        modality=str(dataset.get("Modality", "") or ""),
        has_pixels=any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")),
        frames=_int(dataset, "NumberOfFrames", 1),
        rows=_int(dataset, "Rows", 0),
        columns=_int(dataset, "Columns", 0),
        samples_per_pixel=_int(dataset, "SamplesPerPixel", 1),
        photometric=str(dataset.get("PhotometricInterpretation", "") or ""),
        transfer_syntax=transfer_syntax_name(syntax),
    )
