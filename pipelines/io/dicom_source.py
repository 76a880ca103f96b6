"""The source series a DICOM SEG references: read from its folder, and completed where an export left it short.

:func:`read_dicom_series` reads the one image series of a folder as the checks group it
(:func:`pipelines.validation.dicom_checks.image_series`: non-image objects left out, blank series UIDs stood in
for), headers only, sorted along the slice normal. :func:`complete_source_datasets` fills the UIDs and attributes a
SEG needs on in-memory copies (never in the files): SOP class and instance UIDs from the file meta header, study,
series and frame-of-reference UIDs generated from the series' content so that reruns give the same ones, with one
warning. :func:`series_affine` is the RAS affine MONAI's ITK reader gives the series.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

from pipelines.validation.dicom_checks import image_series

__all__ = ["DicomSegSourceError", "LPS_FROM_RAS", "read_dicom_series", "complete_source_datasets", "series_affine"]

logger = logging.getLogger(__name__)

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
# SOP class of a slice that has none, by modality
_IMAGE_STORAGE_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}
# Type 2 attributes (present, may be empty) that highdicom reads from the first source image
_TYPE2_SOURCE_ATTRIBUTES = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
# Series-level UIDs that all slices share: filled from the other slices, else generated from the series' content
_SERIES_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
# Header values that, with the file names and slice positions, identify a series' content for generated UIDs
_CONTENT_KEYWORDS = (
    "PatientID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDateTime",
    "SeriesNumber",
    "SeriesDescription",
    *_SERIES_UIDS,
)


class DicomSegSourceError(ValueError):
    """The source series cannot be referenced by a DICOM SEG (the message names the folder or file, and what is
    missing or wrong). :class:`SaveDicomSeg` logs it and writes no SEG rather than failing the case."""


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return np.cross(iop[:3], iop[3:])


def _is_missing(ds: pydicom.Dataset, keyword: str) -> bool:
    """True when ``keyword`` is absent from ``ds`` or present without a value (``''``, an empty list, ``None``)."""
    value = ds.get(keyword)
    if value is None:
        return True
    if isinstance(value, (list, tuple, MultiValue, DicomSequence)):
        return len(value) == 0
    return not str(value).strip()


def _sop_class_uid(ds: pydicom.Dataset) -> str:
    """The SOP Class UID of ``ds``: its own, else its file meta header's; ``''`` when neither has one."""
    if not _is_missing(ds, "SOPClassUID"):
        return str(ds.SOPClassUID)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and not _is_missing(meta, "MediaStorageSOPClassUID"):
        return str(meta.MediaStorageSOPClassUID)
    return ""


def _read_slice_header(path: Path) -> pydicom.Dataset | None:
    """The header of the image slice ``path`` (``filename`` set); None when it lacks position or orientation."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if any(_is_missing(ds, name) for name in _GEOMETRY):
        logger.debug("%s: no position and orientation; skipped", path)
        return None
    ds.filename = str(path)
    return ds


def read_dicom_series(folder: str | os.PathLike) -> list[pydicom.Dataset]:
    """The instances of the single-frame DICOM series in ``folder`` (headers only), sorted along the slice normal.

    Files that are not DICOM images are skipped: non-DICOM files, DICOM files without pixel data or position and
    orientation (a DICOMDIR), and SEG, RTSTRUCT, SR or presentation state objects kept beside the slices. Slices
    whose SeriesInstanceUID is empty are taken for one series when they agree on study, series number, frame of
    reference, orientation and size.

    Raises:
        ValueError: naming the folder (a :class:`DicomSegSourceError`), when it holds no DICOM image, more than one
            series, multi-frame images, slices of different orientation, or two slices at the same position.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSegSourceError(f"{folder}: not a DICOM series folder")
    series = image_series(folder)  # the checks' grouping: non-image objects out, blank UIDs stood in for
    if len(series) > 1:
        raise DicomSegSourceError(f"{folder}: holds {len(series)} DICOM series ({'; '.join(series)}); expected one")
    paths = next(iter(series.values())) if series else []
    datasets = [ds for ds in (_read_slice_header(path) for path in paths) if ds is not None]
    if not datasets:
        raise DicomSegSourceError(f"{folder}: no DICOM image with position and orientation in this folder")
    frames = [ds.filename for ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if frames:
        raise DicomSegSourceError(f"{folder}: multi-frame DICOM images are not supported ({Path(frames[0]).name})")
    normal = _normal(datasets[0])
    orientations = {tuple(np.round(np.asarray(ds.ImageOrientationPatient, float), 4)) for ds in datasets}
    if len(orientations) > 1:
        raise DicomSegSourceError(f"{folder}: slices of {len(orientations)} different orientations; expected one stack")
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    positions = np.array([np.dot(np.asarray(ds.ImagePositionPatient, float), normal) for ds in datasets])
    same = np.flatnonzero(np.diff(positions) < 1e-3)
    if same.size:
        first, second = datasets[same[0]], datasets[same[0] + 1]
        raise DicomSegSourceError(
            f"{folder}: {Path(first.filename).name} and {Path(second.filename).name} are at the same slice position"
        )
    return datasets


def _file_path(ds: pydicom.Dataset) -> str:
    """The file ``ds`` was read from, for messages."""
    return str(getattr(ds, "filename", None) or "?")


def _file_name(ds: pydicom.Dataset) -> str:
    """The name of the file ``ds`` was read from, without its folder."""
    return Path(_file_path(ds)).name


def _content_entropy(datasets: Sequence[pydicom.Dataset]) -> list[str]:
    """What identifies the content of a series, for generated UIDs that are the same on every run and differ
    between series: some header values of its first slice, and every slice's file name and position."""
    first = datasets[0]
    header = [f"{keyword}={first.get(keyword, '')}" for keyword in _CONTENT_KEYWORDS]
    positions = [",".join(f"{float(v):.4f}" for v in ds.ImagePositionPatient) for ds in datasets]
    return header + [f"{_file_name(ds)}@{position}" for ds, position in zip(datasets, positions, strict=True)]


def _fill_sop_class_uid(ds: pydicom.Dataset) -> str:
    """Give ``ds`` the SOPClassUID of its file meta header, else that of its modality; returns where it came from.

    Raises:
        DicomSegSourceError: naming the file, when neither says which SOP class the slice is.
    """
    meta = getattr(ds, "file_meta", pydicom.Dataset())
    if not _is_missing(meta, "MediaStorageSOPClassUID"):
        ds.SOPClassUID = str(meta.MediaStorageSOPClassUID)
        return "from the file meta header"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in _IMAGE_STORAGE_BY_MODALITY:
        ds.SOPClassUID = _IMAGE_STORAGE_BY_MODALITY[modality]
        return f"from Modality {modality}"
    raise DicomSegSourceError(
        f"{_file_path(ds)}: no SOPClassUID, none in the file meta header (MediaStorageSOPClassUID), and Modality "
        f"{modality or '(empty)'} names no image storage class"
    )


def _fill_sop_instance_uid(ds: pydicom.Dataset, entropy: Sequence[str]) -> str:
    """Give ``ds`` the SOPInstanceUID of its file meta header, else one generated from the series' content and
    the slice's file; returns where it came from."""
    meta = getattr(ds, "file_meta", pydicom.Dataset())
    if not _is_missing(meta, "MediaStorageSOPInstanceUID"):
        ds.SOPInstanceUID = str(meta.MediaStorageSOPInstanceUID)
        return "from the file meta header"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["SOPInstanceUID", *entropy, _file_name(ds)])
    return "generated"


def _fill_series_uid(datasets: Sequence[pydicom.Dataset], keyword: str, entropy: Sequence[str]) -> str | None:
    """Give the slices of ``datasets`` that lack the series-level UID ``keyword`` the one the other slices hold,
    else one generated from the series' content (all slices agree); returns where it came from, None when no slice
    lacks it.

    Raises:
        DicomSegSourceError: naming a file, when the other slices disagree on it.
    """
    lacking = [ds for ds in datasets if _is_missing(ds, keyword)]
    if not lacking:
        return None
    values = sorted({str(ds.get(keyword)) for ds in datasets if not _is_missing(ds, keyword)})
    if len(values) > 1:
        raise DicomSegSourceError(
            f"{_file_path(lacking[0])}: no {keyword}, and the other slices of its series hold "
            f"{len(values)} different ones"
        )
    value, source = (values[0], "from the other slices") if values else (None, "generated")
    value = value or generate_uid(entropy_srcs=[keyword, *entropy])
    for ds in lacking:
        setattr(ds, keyword, value)
    return source


def _warn_filled(folder: str | os.PathLike, filled: Mapping[str, set[str]]) -> None:
    """The one warning of a series whose DICOM SEG needed attributes that the files lack."""
    what = ", ".join(f"{keyword} ({' / '.join(sorted(sources))})" for keyword, sources in filled.items())
    generated = [keyword for keyword, sources in filled.items() if "generated" in sources]
    consequence = (
        f"the DICOM SEG references generated {', '.join(generated)} (the same on every run): a PACS cannot link it "
        "to the original images"
        if generated
        else "filled in for the DICOM SEG only (the files are unchanged)"
    )
    logger.warning("DICOM series %s lacks attributes that a DICOM SEG needs: %s; %s", folder, what, consequence)


def complete_source_datasets(
    datasets: Sequence[pydicom.Dataset], folder: str | os.PathLike | None = None
) -> list[pydicom.Dataset]:
    """Copies of a sorted series (:func:`read_dicom_series`) with what a DICOM SEG needs of its source filled in
    where the files lack it (absent or empty); the datasets and the files are left as they are.

    - SOPClassUID: from the file meta header (MediaStorageSOPClassUID), else from the modality (CT, MR).
    - SOPInstanceUID: from the file meta header (MediaStorageSOPInstanceUID), else generated.
    - StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID: from the other slices, else generated.
    - Patient and study attributes that highdicom copies (PatientID, StudyDate, ...): added empty.

    Generated UIDs derive from the series' content (file names, positions, header values): the same on every run,
    the same on every slice. One warning per series (``folder``, default: the first slice's folder) names what was
    missing.

    Raises:
        DicomSegSourceError: naming the file and the attribute, when a slice's SOP class is unknown or its series'
            slices disagree on a UID that some of them lack.
    """
    copies = [copy.deepcopy(ds) for ds in datasets]
    entropy = _content_entropy(datasets)
    filled: dict[str, set[str]] = {}
    for ds in copies:
        if _is_missing(ds, "SOPClassUID"):
            filled.setdefault("SOPClassUID", set()).add(_fill_sop_class_uid(ds))
        if _is_missing(ds, "SOPInstanceUID"):
            filled.setdefault("SOPInstanceUID", set()).add(_fill_sop_instance_uid(ds, entropy))
        for keyword in _TYPE2_SOURCE_ATTRIBUTES:
            if keyword not in ds:
                setattr(ds, keyword, "")
                filled.setdefault(keyword, set()).add("added empty")
    for keyword in _SERIES_UIDS:
        source = _fill_series_uid(copies, keyword, entropy)
        if source is not None:
            filled[keyword] = {source}
    if filled:
        _warn_filled(folder if folder is not None else Path(_file_path(datasets[0])).parent, filled)
    return copies


def series_affine(datasets: Sequence[pydicom.Dataset]) -> np.ndarray:
    """The RAS affine of a sorted series (:func:`read_dicom_series`) loaded as MONAI's ITK reader loads it.

    Voxel ``(i, j, k)`` is column ``i``, row ``j`` of the ``k``-th slice along the normal (row direction x
    column direction): the layout of ``LoadImage()(folder)`` and of the bundles' predictions of a DICOM input.
    """
    first = datasets[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    normal = _normal(first)
    if len(datasets) > 1:
        step = float(np.dot(np.subtract(datasets[1].ImagePositionPatient, first.ImagePositionPatient), normal))
    else:
        step = float(first.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing
    lps[:3, 1] = iop[3:] * row_spacing
    lps[:3, 2] = normal * step
    lps[:3, 3] = np.asarray(first.ImagePositionPatient, dtype=float)
    return LPS_FROM_RAS @ lps
