"""Header-level checks of a DICOM series folder, run before the pixels are read.

A folder read as one volume must hold one series whose slices are evenly spaced along the slice normal. SimpleITK
(GDCM) reads a folder with a missing slice, two copies of a slice or uneven spacing without an error, and the
volume it returns has the wrong geometry. These checks read each file's header only (pydicom, pixel data
deferred), so they cost little even on a large series.

``z`` in the messages is the position along the slice normal (the cross product of the row and column directions
of ``ImageOrientationPatient``), in mm: the patient's z for an axial series.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SliceGaps", "find_slice_gaps", "missing_slice_positions", "dicom_series_problems"]

SKIPPED_FILES = ("DICOMDIR", "Thumbs.db", "desktop.ini")  # files a DICOM export or a file browser leaves behind
POSITION_ATOL = 0.01  # mm: positions closer than this are the same position
SPACING_RTOL = 0.01  # steps within 1% (and POSITION_ATOL) of the slice spacing are regular
MAX_LISTED = 5  # gaps / uneven steps listed one by one; the rest are counted
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
@dataclass
class _Header:
    """The header fields the series checks use, from one file."""

    path: Path
    series: str
    orientation: np.ndarray | None
    position: np.ndarray | None
    size: tuple[int, int]
    frames: int


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


def _header(path: Path, problems: list[str]) -> _Header | None:
    """Read one file's header; on failure append the problem and return None."""
    from pydicom.errors import InvalidDicomError

    try:
        dataset = _read_header(path)
        pixel_problem = _pixel_problem(path, dataset)
        series = str(dataset.get("SeriesInstanceUID", "") or "")
        header = _Header(
            path=path,
            series=series,
            orientation=_floats(dataset, "ImageOrientationPatient", 6),
            position=_floats(dataset, "ImagePositionPatient", 3),
            size=(int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)),
            frames=int(dataset.get("NumberOfFrames", 1) or 1),
        )
    except InvalidDicomError:
        problems.append(f"{path}: is not a DICOM file; a series folder must hold only the series' files")
        return None
    except Exception as exc:  # pydicom raises EOFError, struct.error, ValueError, OSError... on broken files
        problems.append(f"{path}: cannot be read as DICOM: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
        return None
    if pixel_problem:
        problems.append(pixel_problem)
        return None
    if not series:
        problems.append(f"{path}: has no SeriesInstanceUID")
        return None
    return header


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
    listed = ", ".join(f"{uid} ({n} file{'s' if n != 1 else ''})" for uid, n in counts.most_common())
    return f"{folder}: {len(counts)} series in one folder: {listed}; put each series in its own folder"


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


def dicom_series_problems(folder: str | os.PathLike) -> list[str]:
    """Problems with a folder meant to hold one DICOM series, found from the files' headers.

    Reports files that are not DICOM, are truncated or lack a SeriesInstanceUID; several series in one folder;
    slices that differ in size or orientation or lack a position; two files at one position; missing slices
    (gaps in the positions along the slice normal) and uneven slice spacing.

    Args:
        folder: the series folder; its sub-folders and hidden files are ignored.

    Returns:
        The problems found, each starting with the folder or the file it concerns; empty when the series is sound.
    """
    folder = Path(folder)
    files = _series_files(folder)
    if not files:
        return [f"{folder}: folder holds no DICOM series (no files)"]
    problems: list[str] = []
    headers = [h for h in (_header(path, problems) for path in files) if h is not None]
    if not headers:
        return [*problems, f"{folder}: folder holds no DICOM series"]
    mixed = _mixed_series_problem(folder, headers)
    if mixed:
        return [*problems, mixed]
    if len(headers) == 1 or any(h.frames > 1 for h in headers):  # one slice, or multi-frame files
        return problems
    consistency = _consistency_problems(folder, headers)
    problems += consistency
    if not consistency:
        problems += _position_problems(folder, headers)
    return problems
