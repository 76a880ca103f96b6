"""Tests of the DICOM series folder checks, on small CT series written with pydicom."""

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pipelines.validation.dicom_checks import dicom_series_problems, find_slice_gaps, missing_slice_positions
from pipelines.validation.volume_checks import check_volume

ROWS, COLUMNS = 8, 10
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _slice(z: float, series_uid: str, orientation=AXIAL, rows: int = ROWS) -> Dataset:
    """A CT slice at height ``z`` mm: stored values 0..2000 with intercept -1024 give -1024..976 HU."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", "phantom"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1", series_uid
    ds.ImageOrientationPatient = list(orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    ds.ImagePositionPatient = [float(v) for v in np.array([-40.0, -40.0, 0.0]) + z * normal]
    ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.5
    ds.Rows, ds.Columns = rows, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    pixels = np.linspace(0, 2000, rows * COLUMNS).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


def _series(folder: Path, zs, series_uid: str | None = None, prefix: str = "slice", **kw) -> Path:
    """Write one file per position of ``zs`` into ``folder``."""
    folder.mkdir(exist_ok=True)
    uid = series_uid or generate_uid()
    for i, z in enumerate(zs):
        ds = _slice(z, uid, **kw)
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"{prefix}_{i:03d}.dcm", enforce_file_format=True)
    return folder


def _grid(n: int = 6, spacing: float = 2.5) -> list[float]:
    return [i * spacing for i in range(n)]


def test_sound_series_passes_and_reads(tmp_path):
    folder = _series(tmp_path / "ct", _grid())
    assert dicom_series_problems(folder) == []
    assert check_volume(folder, modality="CT") == []


def test_missing_slice_names_the_position_and_its_neighbours(tmp_path):
    zs = _grid(8)
    folder = _series(tmp_path / "ct", zs[:3] + zs[4:])
    problems = dicom_series_problems(folder)
    assert problems == [
        f"{folder}: slice at z=7.5 mm missing between slice_002.dcm (z=5 mm) and slice_003.dcm (z=10 mm); "
        "expected a slice every 2.5 mm"
    ]
    assert check_volume(folder) == problems  # check_volume reports it instead of reading a wrong volume


def test_several_missing_slices_in_one_gap(tmp_path):
    zs = _grid(10)
    problems = dicom_series_problems(_series(tmp_path / "ct", zs[:3] + zs[6:]))
    assert len(problems) == 1 and "3 slices (z=7.5 mm...) missing" in problems[0]


def test_duplicated_slice(tmp_path):
    folder = _series(tmp_path / "ct", _grid(5))
    copy = folder / "copy_of_slice_002.dcm"
    copy.write_bytes((folder / "slice_002.dcm").read_bytes())
    problems = dicom_series_problems(folder)
    assert len(problems) == 1
    assert problems[0].startswith(f"{folder}: 2 files at the same position z=5 mm: ")
    assert "copy_of_slice_002.dcm" in problems[0] and "slice_002.dcm" in problems[0]


def test_uneven_spacing(tmp_path):
    problems = dicom_series_problems(_series(tmp_path / "ct", [0.0, 2.5, 5.0, 7.5, 11.0, 13.5]))
    assert len(problems) == 1
    assert "uneven slice spacing: most steps are 2.5 mm, but 3.5 mm after slice_003.dcm" in problems[0]


def test_mixed_series(tmp_path):
    folder = _series(tmp_path / "ct", _grid(4), series_uid="1.2.3.4")
    _series(folder, _grid(2), series_uid="1.2.3.5", prefix="scout")
    problems = dicom_series_problems(folder)
    assert problems == [
        f"{folder}: 2 image series in one folder: 1.2.3.4 (4 files); 1.2.3.5 (2 files); put each series in its own "
        "folder"
    ]


def test_non_dicom_and_truncated_files(tmp_path):
    folder = _series(tmp_path / "ct", _grid(5))
    (folder / "notes.txt").write_text("scanned on Tuesday")
    (folder / ".DS_Store").write_bytes(b"\0" * 50)  # hidden: ignored, as DICOM readers do
    raw = (folder / "slice_004.dcm").read_bytes()
    (folder / "slice_004.dcm").write_bytes(raw[:-40])
    problems = dicom_series_problems(folder)
    assert f"{folder / 'notes.txt'}: is not a DICOM file; a series folder must hold only the series' files" in problems
    assert f"{folder / 'slice_004.dcm'}: is truncated: its pixel data needs 160 bytes, the file holds 120" in problems
    assert len(problems) == 2


def test_header_cut_short(tmp_path):
    folder = _series(tmp_path / "ct", _grid(3))
    raw = (folder / "slice_001.dcm").read_bytes()
    (folder / "slice_001.dcm").write_bytes(raw[:300])
    problems = dicom_series_problems(folder)
    assert problems and problems[0].startswith(str(folder / "slice_001.dcm"))


def test_orientation_and_size_must_agree(tmp_path):
    folder = _series(tmp_path / "ct", _grid(3))
    _series(folder, [7.5], prefix="tilted", orientation=(1.0, 0.0, 0.0, 0.0, 0.8, 0.6), series_uid=None)
    for path in folder.glob("tilted_*"):  # same series, other orientation
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = pydicom.dcmread(folder / "slice_000.dcm").SeriesInstanceUID
        ds.save_as(path)
    problems = dicom_series_problems(folder)
    assert len(problems) == 1 and "differ in orientation" in problems[0] and "tilted_000.dcm" in problems[0]


def test_sagittal_series_positions_along_the_normal(tmp_path):
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    zs = _grid(6, 1.2)
    folder = _series(tmp_path / "sag", zs[:2] + zs[3:], orientation=sagittal)
    problems = dicom_series_problems(folder)
    assert len(problems) == 1 and "slice at z=42.4 mm missing" in problems[0]  # the first slice is at x=-40


def test_empty_folder_and_folder_without_dicom(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert dicom_series_problems(empty) == [f"{empty}: folder holds no DICOM series (no files)"]
    (empty / "readme.txt").write_text("nothing here")
    assert dicom_series_problems(empty)[-1] == f"{empty}: folder holds no DICOM series"


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_positions_to_judge(n):
    assert missing_slice_positions(_grid(n)) == []


def test_unsorted_positions_and_duplicates_count_once():
    found = find_slice_gaps([10.0, 0.0, 5.0, 5.0, 2.5])
    assert found.spacing == pytest.approx(2.5)
    assert [z for _, m in found.gaps for z in m] == [pytest.approx(7.5)]
    assert found.uneven == []


# ---- property: the gap finder finds exactly the slices taken out ------------------------------------------------
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    n=st.integers(3, 80),
    start=st.floats(-800.0, 800.0, allow_nan=False),
    spacing=st.floats(0.3, 10.0, allow_nan=False),
    data=st.data(),
)
def test_missing_slice_positions_finds_exactly_the_removed_ones(n, start, spacing, data):
    removed = data.draw(st.sets(st.integers(1, n - 2), max_size=n - 2), label="removed interior slices")
    kept = [i for i in range(n) if i not in removed]
    steps = Counter(np.diff(kept).tolist())
    assume(steps[1] > max((c for k, c in steps.items() if k != 1), default=0))  # the spacing is the commonest step
    positions = [round(start + i * spacing, 4) for i in kept]  # DICOM stores positions as decimal strings
    order = data.draw(st.permutations(positions), label="file order")
    found = missing_slice_positions(order)
    expected = [start + i * spacing for i in sorted(removed)]
    assert len(found) == len(expected)
    np.testing.assert_allclose(found, expected, atol=1e-3)
    assert find_slice_gaps(order).uneven == []


def test_a_folder_is_read_once_until_a_file_changes(tmp_path, monkeypatch):
    import os

    import pipelines.validation.dicom_checks as checks

    folder = _series(tmp_path / "ct", _grid())
    reads = Counter()
    read_header = checks._read_header
    monkeypatch.setattr(checks, "_read_header", lambda path: reads.update([path.name]) or read_header(path))
    assert dicom_series_problems(folder) == []
    assert len(checks.image_series(folder)) == 1  # the reader's call: no second pass
    assert sum(reads.values()) == 6
    (folder / "slice_002.dcm").unlink()  # a file gone: read again, and the gap is found
    assert "missing" in " ".join(dicom_series_problems(folder)) and sum(reads.values()) == 11
    stamp = os.stat(folder / "slice_003.dcm")
    os.utime(folder / "slice_003.dcm", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))  # rewritten: read again
    dicom_series_problems(folder)
    assert sum(reads.values()) == 16
    path = folder / "slice_004.dcm"  # rewritten within the clock's tick: same size and times, another header
    stamp = os.stat(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"phantom", b"phantoM"))
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    dicom_series_problems(folder)
    assert sum(reads.values()) == 21
