"""Header-level checks of a DICOM series folder, run before the pixels are read.

A folder read as one volume must hold one series whose slices are evenly spaced along the slice normal. SimpleITK
(GDCM) reads a folder with a missing slice, two copies of a slice or uneven spacing without an error, and the
volume it returns has the wrong geometry. These checks read each file's header only (pydicom, pixel data
deferred), so they cost little even on a large series.

Files are grouped into series as dcm2niix and SimpleITK group them: by SeriesInstanceUID where it has a value, else
(anonymisers often blank the UIDs) by study, series number, frame of reference, orientation and image size.
Objects that are not images (SEG, RTSTRUCT, SR, presentation states...: :mod:`pipelines.validation.dicom_objects`)
are skipped, not counted as slices or as another series.

``z`` in the messages is the position along the slice normal (the cross product of the row and column directions
of ``ImageOrientationPatient``), in mm: the patient's z for an axial series.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.validation.dicom_objects import describe_dataset

__all__ = [
    "SliceGaps",
    "find_slice_gaps",
    "missing_slice_positions",
    "dicom_series_problems",
    "checked_series_files",
    "dicom_file_problems",
    "image_series",
]

logger = logging.getLogger(__name__)

SKIPPED_FILES = ("DICOMDIR", "Thumbs.db", "desktop.ini")  # files a DICOM export or a file browser leaves behind
POSITION_ATOL = 0.01  # mm: positions closer than this are the same position
SPACING_RTOL = 0.01  # steps within 1% (and POSITION_ATOL) of the slice spacing are regular
MAX_LISTED = 5  # gaps / uneven steps listed one by one; the rest are counted
MAX_TILT_DEGREES = 0.5  # slices stepping further than this off their normal: a tilted gantry
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class SliceGaps:
    """What :func:`find_slice_gaps` found in a set of slice positions (sorted ascending).

    Attributes:
        positions: the positions, sorted, duplicates kept.
        spacing: the regular slice spacing: the most common step between neighbours (0 when fewer than 2 positions).
        gaps: ``(i, missing)`` for each step from ``positions[i]`` to ``positions[i + 1]`` that spans a whole number
            of spacings: the positions of the missing slices.
        uneven: indices ``i`` of the steps from ``positions[i]`` that are not a whole number of spacings.
    """

    positions: np.ndarray
    spacing: float
    gaps: list[tuple[int, list[float]]]
    uneven: list[int]


def _tolerance(spacing: float) -> float:
    return max(POSITION_ATOL, SPACING_RTOL * spacing)


def _regular_spacing(steps: np.ndarray) -> float:
    """The most common step (steps within tolerance count as one), ties to the smallest; refined by its median."""
    tol = np.maximum(POSITION_ATOL, SPACING_RTOL * steps)[:, None]
    close = np.abs(steps[:, None] - steps[None, :]) <= tol
    counts = close.sum(axis=1)
    best = np.flatnonzero(counts == counts.max())
    anchor = best[np.argmin(steps[best])]
    return float(np.median(steps[close[anchor]]))


def find_slice_gaps(positions: Sequence[float]) -> SliceGaps:
    """Find missing slices and uneven steps in slice positions along the normal.

    Positions closer than ``POSITION_ATOL`` count as one (duplicates are the caller's to report). The regular
    spacing is the most common step; a step of ``k`` spacings (``k >= 2``) means ``k - 1`` missing slices, and a
    step that is no whole number of spacings is uneven. A slice missing at either end of the series cannot be seen.

    Args:
        positions: slice positions in mm, in any order.

    Returns:
        The sorted positions, the spacing, the gaps and the uneven steps.
    """
    ordered = np.sort(np.asarray(positions, dtype=np.float64))
    unique = ordered[np.concatenate([[True], np.diff(ordered) > POSITION_ATOL])] if ordered.size else ordered
    if unique.size < 2:
        return SliceGaps(unique, 0.0, [], [])
    steps = np.diff(unique)
    spacing = _regular_spacing(steps)
    gaps, uneven = [], []
    for i, step in enumerate(steps):
        k = int(round(step / spacing))
        if k >= 1 and abs(step - k * spacing) <= k * _tolerance(spacing):
            if k > 1:
                gaps.append((i, [float(unique[i] + j * step / k) for j in range(1, k)]))
        else:
            uneven.append(i)
    return SliceGaps(unique, spacing, gaps, uneven)


def missing_slice_positions(positions: Sequence[float]) -> list[float]:
    """Positions (mm, ascending) of the slices missing between the first and the last of ``positions``."""
    return [z for _, missing in find_slice_gaps(positions).gaps for z in missing]


# ---------------------------------------------------------------------------------------------------------------
# reading headers
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Header:
    """The header fields the series checks use, from one file."""

    path: Path
    series: str  # the series' key: its SeriesInstanceUID, or the attributes that stand in for a blank one
    orientation: np.ndarray | None
    position: np.ndarray | None
    size: tuple[int, int]
    frames: int
    description: str = ""
    tilt: str = ""  # GantryDetectorTilt as written, when not 0


def _series_files(folder: Path) -> list[Path]:
    """Files a DICOM reader would consider: not hidden, not a DICOMDIR or a file browser's index; no sub-folders."""
    return [
        child
        for child in sorted(folder.iterdir())
        if child.is_file() and not child.name.startswith(".") and child.name not in SKIPPED_FILES
    ]


def _read_header(path: Path):
    """The dataset of ``path`` with its pixel data deferred; raises ``InvalidDicomError`` for a non-DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:  # no "DICM" preamble: old files may still be DICOM; garbage has no SOP class
        dataset = pydicom.dcmread(path, defer_size=1024, force=True)
        if "SOPClassUID" not in dataset and "SeriesInstanceUID" not in dataset:
            raise
        return dataset


def _pixel_problem(path: Path, dataset) -> str | None:
    """A problem with the pixel data element of ``dataset``: absent, or longer than what the file holds."""
    element = dataset.get_item("PixelData")
    if element is None:
        return f"{path}: has no pixel data (the file is truncated, or it is not an image)"
    value_tell = getattr(element, "value_tell", None)
    length = getattr(element, "length", None)
    if value_tell is not None and length not in (None, _UNDEFINED_LENGTH):
        available = os.path.getsize(path) - value_tell
        if available < length:
            return f"{path}: is truncated: its pixel data needs {length} bytes, the file holds {max(available, 0)}"
    return None


def _floats(dataset, keyword: str, count: int) -> np.ndarray | None:
    value = dataset.get(keyword)
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError):
        return None
    return array if array is not None and array.size == count and np.all(np.isfinite(array)) else None


def _corrupt_header(path: Path, exc: BaseException) -> str:
    return f"{path}: the DICOM header cannot be read: the file is truncated or corrupt ({type(exc).__name__})"


def _series_key(dataset, orientation: np.ndarray | None, size: tuple[int, int]) -> str:
    """SeriesInstanceUID, or, when it is blank, what dcm2niix and GDCM group such files by."""
    uid = str(dataset.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid
    parts = [
        f"study {dataset.get('StudyInstanceUID', '') or '(blank)'}",
        f"series number {dataset.get('SeriesNumber', '') or '(blank)'}",
        f"frame of reference {dataset.get('FrameOfReferenceUID', '') or '(blank)'}",
        f"orientation {_fmt(np.round(orientation, 3)) if orientation is not None else '(none)'}",
        f"{size[0]}x{size[1]}",
    ]
    return "no SeriesInstanceUID: " + ", ".join(parts)


def _header(path: Path, problems: list[str], skipped: list[tuple[Path, str]] | None = None) -> _Header | None:
    """Read one file's header. A non-image object goes to ``skipped`` as ``(path, what it is)``; on a problem, the
    problem goes to ``problems``; both return None."""
    from pydicom.errors import InvalidDicomError

    try:
        dataset = _read_header(path)
        info = describe_dataset(dataset)
        if info.kind is not None:
            if skipped is not None:
                skipped.append((path, info.kind))
            return None
        pixel_problem = _pixel_problem(path, dataset)
        orientation = _floats(dataset, "ImageOrientationPatient", 6)
        size = (int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0))
        tilt = str(dataset.get("GantryDetectorTilt", "") or "")
        header = _Header(
            path=path,
            series=_series_key(dataset, orientation, size),
            orientation=orientation,
            position=_floats(dataset, "ImagePositionPatient", 3),
            size=size,
            frames=int(dataset.get("NumberOfFrames", 1) or 1),
            description=str(dataset.get("SeriesDescription", "") or ""),
            tilt="" if tilt in ("0", "0.0", "-0") else tilt,
        )
    except InvalidDicomError:
        problems.append(f"{path}: is not a DICOM file; a series folder must hold only the series' files")
        return None
    except Exception as exc:  # pydicom raises EOFError, struct.error, ValueError, OSError... on broken files
        problems.append(_corrupt_header(path, exc))
        return None
    if pixel_problem:
        problems.append(pixel_problem)
        return None
    return header


_SCANS: OrderedDict[tuple, tuple[list[_Header], list[str], list[tuple[Path, str]]]] = OrderedDict()
_SCANS_KEPT = 4  # folders whose scans are kept (600 slices: well under 1 MB of headers)
_SCANS_LOCK = threading.Lock()


def _scan(folder: Path) -> tuple[list[_Header], list[str], list[tuple[Path, str]]]:
    """The image headers of ``folder``'s files, the problems met reading them, and the non-image objects skipped.

    The input check, the reader and the DICOM SEG writer each need this of the same folder: a scan is kept for
    as long as every file keeps its name, size, modification time and first 16 KiB (:func:`_stamp`), so the
    headers are parsed once per inference, not three times (0.4-0.6 s each for 600 slices on 2 CPU cores).
    """
    files = _series_files(folder)
    try:
        key = (str(Path(folder).resolve()), tuple((f.name, *_stamp(f)) for f in files))
    except OSError:  # a file vanished between the listing and its stat: read what is there, uncached
        key = None
    with _SCANS_LOCK:
        kept = _SCANS.get(key) if key is not None else None
        if kept is not None:
            _SCANS.move_to_end(key)
    if kept is not None:
        return list(kept[0]), list(kept[1]), list(kept[2])
    problems: list[str] = []
    skipped: list[tuple[Path, str]] = []
    headers = [h for h in (_header(path, problems, skipped) for path in files) if h is not None]
    if skipped:
        kinds = Counter(kind for _, kind in skipped)
        logger.info("%s: skipped %s", folder, ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    if key is not None:
        with _SCANS_LOCK:
            _SCANS[key] = (list(headers), list(problems), list(skipped))
            while len(_SCANS) > _SCANS_KEPT:
                _SCANS.popitem(last=False)
    return headers, problems, skipped


def _stamp(path: Path) -> tuple[int, int, int, int]:
    """What tells a file rewritten since: size, modification time, inode, and a checksum of its first 16 KiB (where
    the header is: timestamps are only as fine as the kernel's clock tick, a few milliseconds)."""
    stat = path.stat()
    with open(path, "rb") as stream:
        head = zlib.crc32(stream.read(16384))
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, head


def dicom_file_problems(path: str | os.PathLike, expect_ndim: int = 3) -> list[str] | None:
    """Problems of a single DICOM file given as an image; None when ``path`` is not a DICOM file.

    Names what a non-image object is (a DICOM SEG, RTSTRUCT, SR...), a file without pixel data, truncated pixel
    data, a colour image, and a single slice given where a volume is expected (``expect_ndim`` 3).
    """
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        dataset = _read_header(path)
    except InvalidDicomError:
        return None
    except Exception as exc:  # EOFError, struct.error, ValueError, OSError... on broken files
        return [_corrupt_header(path, exc)]
    info = describe_dataset(dataset)
    if info.kind is not None:
        return [f"{path}: is {info.kind}, not an image; give the image series it refers to"]
    if not info.has_pixels:
        what = f"SOP class {info.sop_class_uid}" if info.sop_class_uid else "no SOP class"
        return [f"{path}: holds no pixel data ({what}): not an image"]
    pixel_problem = _pixel_problem(path, dataset)
    if pixel_problem:
        return [pixel_problem]
    if not info.rows or not info.columns:
        return [f"{path}: has pixel data but no image size (Rows, Columns): not a readable image"]
    if info.samples_per_pixel > 1:
        modality = f"{info.modality} " if info.modality else ""
        return [
            f"{path}: is a colour {modality}image ({info.photometric or 'colour'}, {info.samples_per_pixel} samples "
            "per pixel); expected a greyscale image such as a CT or MR"
        ]
    if expect_ndim == 3 and info.frames == 1:
        return [
            f"{path}: is a single {info.rows}x{info.columns} slice, not a volume; give the folder that holds the "
            "whole series (one file per slice)"
        ]
    return []


# ---------------------------------------------------------------------------------------------------------------
# series checks
# ---------------------------------------------------------------------------------------------------------------
def _names(headers: Sequence[_Header], limit: int = 3) -> str:
    names = [h.path.name for h in headers[:limit]]
    return ", ".join(names) + (f" and {len(headers) - limit} more" if len(headers) > limit else "")


def _mixed_series_problem(folder: Path, headers: list[_Header]) -> str | None:
    counts = Counter(h.series for h in headers)
    if len(counts) < 2:
        return None
    described = {h.series: h.description for h in headers}

    def name(key: str) -> str:
        return f'"{described[key]}" ' if described[key] else ""

    listed = "; ".join(f"{name(key)}{key} ({n} file{'s' if n != 1 else ''})" for key, n in counts.most_common())
    return f"{folder}: {len(counts)} image series in one folder: {listed}; put each series in its own folder"


def _consistency_problems(folder: Path, headers: list[_Header]) -> list[str]:
    """Slices of one series must share their size and orientation, and each needs a position and orientation."""
    problems = []
    unplaced = [h for h in headers if h.position is None or h.orientation is None]
    if unplaced:
        problems.append(
            f"{folder}: {len(unplaced)} file(s) without a valid ImagePositionPatient/ImageOrientationPatient "
            f"({_names(unplaced)}); expected both in every slice"
        )
    sizes = Counter(h.size for h in headers)
    if len(sizes) > 1:
        (common, _), *_ = sizes.most_common()
        odd = [h for h in headers if h.size != common]
        problems.append(
            f"{folder}: slices differ in size: {common[0]}x{common[1]} in most, other sizes in {_names(odd)}"
        )
    placed = [h for h in headers if h.orientation is not None]
    if placed:
        odd = [h for h in placed if not np.allclose(h.orientation, placed[0].orientation, atol=1e-3)]
        if odd:
            problems.append(
                f"{folder}: slices differ in orientation (ImageOrientationPatient): {_fmt(placed[0].orientation)} "
                f"in {placed[0].path.name}, other orientations in {_names(odd)}"
            )
    return problems


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _z(value: float) -> str:
    return f"z={value:.4g} mm"


def _position_problems(folder: Path, headers: list[_Header]) -> list[str]:
    """Duplicated, missing and unevenly spaced slices of one series whose slices share one orientation."""
    orientation = headers[0].orientation
    normal = np.cross(orientation[:3], orientation[3:])
    z = np.array([float(np.dot(h.position, normal)) for h in headers])
    order = np.argsort(z, kind="stable")
    z, headers = z[order], [headers[i] for i in order]
    problems = []
    start = 0
    for i in range(1, len(z) + 1):  # runs of files at the same position
        if i == len(z) or z[i] - z[start] > POSITION_ATOL:
            if i - start > 1:
                problems.append(
                    f"{folder}: {i - start} files at the same position {_z(z[start])}: {_names(headers[start:i])}; "
                    "expected one slice per position (a duplicated slice?)"
                )
            start = i
    tilt = _tilt_problem(folder, headers, normal)
    if tilt:
        return [*problems, tilt]
    keep = np.concatenate([[True], np.diff(z) > POSITION_ATOL])
    z, headers = z[keep], [h for h, k in zip(headers, keep, strict=True) if k]
    found = find_slice_gaps(z)
    for n, (i, missing) in enumerate(found.gaps):
        if n == MAX_LISTED:
            problems.append(f"{folder}: and {len(found.gaps) - MAX_LISTED} more gaps")
            break
        what = f"slice at {_z(missing[0])}" if len(missing) == 1 else f"{len(missing)} slices ({_z(missing[0])}...)"
        problems.append(
            f"{folder}: {what} missing between {headers[i].path.name} ({_z(z[i])}) and {headers[i + 1].path.name} "
            f"({_z(z[i + 1])}); expected a slice every {found.spacing:.4g} mm"
        )
    if found.uneven:
        listed = ", ".join(f"{z[i + 1] - z[i]:.4g} mm after {headers[i].path.name}" for i in found.uneven[:MAX_LISTED])
        more = f" and {len(found.uneven) - MAX_LISTED} more" if len(found.uneven) > MAX_LISTED else ""
        problems.append(
            f"{folder}: uneven slice spacing: most steps are {found.spacing:.4g} mm, but {listed}{more}; "
            "expected evenly spaced slices"
        )
    return problems


def _tilt_problem(folder: Path, headers: list[_Header], normal: np.ndarray) -> str | None:
    """A series whose slices step off their normal (acquired with a tilted gantry): the grid is sheared."""
    step = headers[-1].position - headers[0].position
    length = float(np.linalg.norm(step))
    if len(headers) < 2 or length <= POSITION_ATOL:
        return None
    cosine = abs(float(np.dot(step, normal))) / length
    angle = float(np.degrees(np.arccos(min(1.0, cosine))))
    if angle <= MAX_TILT_DEGREES:
        return None
    stated = f" (GantryDetectorTilt {headers[0].tilt})" if headers[0].tilt else ""
    return (
        f"{folder}: gantry tilt: the slices step {angle:.1f} degrees off their normal{stated}, so the voxel grid is "
        "sheared and readers that assume a right-angled grid (ITK, MONAI) misplace them; resample the series first "
        "(dcm2niix corrects gantry tilt)"
    )


def image_series(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """The image series in ``folder``: each series' key (its SeriesInstanceUID, or what stands in for a blank one)
    and its files, sorted along the slice normal; non-image objects (SEG, RTSTRUCT, SR...) and unreadable files
    left out."""
    headers, _, _ = _scan(Path(folder))
    groups: dict[str, list[_Header]] = {}
    for header in headers:
        groups.setdefault(header.series, []).append(header)
    return {key: _sorted_paths(members) for key, members in groups.items()}


def _sorted_paths(headers: list[_Header]) -> list[Path]:
    placed = [h for h in headers if h.position is not None and h.orientation is not None]
    if len(placed) != len(headers):
        return [h.path for h in headers]
    normal = np.cross(placed[0].orientation[:3], placed[0].orientation[3:])
    return [h.path for h in sorted(placed, key=lambda h: float(np.dot(h.position, normal)))]


def checked_series_files(folder: str | os.PathLike, expect_volume: bool = True) -> tuple[list[str], list[Path]]:
    """Problems with a folder meant to hold one DICOM series, found from the files' headers, and the series'
    files sorted along the slice normal (empty when there are problems): one read of the headers for both.

    Reports files that are not DICOM or are truncated; a folder with no image, or with several image series;
    a single slice where a volume is expected; slices that differ in size or orientation or lack a position; a
    tilted gantry; two files at one position; missing slices (gaps in the positions along the slice normal) and
    uneven slice spacing. Non-image objects beside the slices (SEG, RTSTRUCT, SR...) are skipped, and files
    with a blank SeriesInstanceUID are grouped by the attributes that stand in for it.

    Args:
        folder: the series folder; its sub-folders and hidden files are ignored.
        expect_volume: a single slice is a problem (True), or acceptable (a 2D image).

    Returns:
        The problems found, each starting with the folder or the file it concerns (empty when the series is
        sound), and the series' files.
    """
    folder = Path(folder)
    if not _series_files(folder):
        return [f"{folder}: folder holds no DICOM series (no files)"], []
    headers, problems, skipped = _scan(folder)
    if not headers:
        if skipped and not problems:
            kinds = ", ".join(sorted({kind for _, kind in skipped}))
            return [f"{folder}: folder holds no image series, only non-image DICOM objects: {kinds}"], []
        return [*problems, f"{folder}: folder holds no DICOM series"], []
    mixed = _mixed_series_problem(folder, headers)
    if mixed:
        return [*problems, mixed], []
    if any(h.frames > 1 for h in headers):  # multi-frame files: their frames carry the geometry
        return problems, [] if problems else _sorted_paths(headers)
    if len(headers) == 1:
        if expect_volume:
            h = headers[0]
            problems.append(
                f"{folder}: holds a single slice ({h.path.name}, {h.size[0]}x{h.size[1]}), not a volume; expected "
                "the whole series, one file per slice"
            )
        return problems, [] if problems else _sorted_paths(headers)
    consistency = _consistency_problems(folder, headers)
    problems += consistency
    if not consistency:
        problems += _position_problems(folder, headers)
    return problems, [] if problems else _sorted_paths(headers)


def dicom_series_problems(folder: str | os.PathLike, expect_volume: bool = True) -> list[str]:
    """The problems of :func:`checked_series_files`: empty when ``folder`` holds one sound series."""
    return checked_series_files(folder, expect_volume)[0]
