"""The 3D bundles' reader (``pipelines.io.volume_reader``): the reader each path calls for, and one instance shared
by threads, as CacheDataset shares a LoadImaged."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import NibabelReader
from monai.transforms import LoadImage

from pipelines.io.array_order import c_ordered
from pipelines.io.volume_reader import ThreadSafeNibabelReader, VolumeReader, read_c_ordered
from tests.dicom_phantoms import write_ct_series

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _study(root, name: str, shape=(6, 7, 5)) -> list[str]:
    """Four sequence files of one study (each filled with its index + 1) and a label file; the sequence paths."""
    files = []
    for index, sequence in enumerate(("flair", "t1", "t1ce", "t2")):
        files.append(str(root / f"{name}_{sequence}.nii.gz"))
        nib.save(nib.Nifti1Image(np.full(shape, index + 1, np.float32), AFFINE), files[-1])
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), AFFINE), root / f"{name}_seg.nii.gz")
    return files


def _read_then_get(reader, first, second):
    """Thread A reads ``first``; thread B reads ``second`` (and gets its data); then A gets its data: the order of
    a race between CacheDataset's threads, made certain."""
    read_a, done_b, result = threading.Event(), threading.Event(), {}

    def a():
        image = reader.read(first)
        read_a.set()
        done_b.wait()
        result["a"] = reader.get_data(image)[0]

    def b():
        read_a.wait()
        reader.get_data(reader.read(second))
        done_b.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result["a"]


def test_monai_nibabel_reader_loses_sequences_when_threads_interleave(tmp_path):
    """The bug the reader exists for: MONAI's NibabelReader keeps the last read's names on the instance."""
    files = _study(tmp_path, "case")
    assert _read_then_get(NibabelReader(), files, str(tmp_path / "case_seg.nii.gz")).shape == (6, 7, 5)  # one
    safe = _read_then_get(ThreadSafeNibabelReader(), files, str(tmp_path / "case_seg.nii.gz"))
    assert safe.shape == (4, 6, 7, 5)
    np.testing.assert_array_equal(safe[:, 0, 0, 0], [1, 2, 3, 4])


def test_one_loader_shared_by_threads_reads_every_study_whole(tmp_path):
    load = LoadImage(reader=VolumeReader(), image_only=True, ensure_channel_first=True)
    studies = [_study(tmp_path, f"case{i}") for i in range(6)]
    jobs = [s for study in studies for s in (study, str(tmp_path / f"{study[0].split('/')[-1][:5]}_seg.nii.gz"))]
    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(lambda job: tuple(load(job).shape), jobs * 5))
    assert set(shapes[0::2]) == {(4, 6, 7, 5)} and set(shapes[1::2]) == {(1, 6, 7, 5)}


def test_each_path_gets_its_reader_and_no_refusals_are_logged(tmp_path, caplog):
    reader = VolumeReader()
    series = tmp_path / "series"
    write_ct_series(series, np.full((4, 6, 5), 40, np.int16))
    nrrd = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 7, 6), np.int16)), str(nrrd))
    nifti = _study(tmp_path, "mr")[0]
    assert reader.reader_for(series) is reader.dicom
    assert reader.reader_for(nifti) is reader.nifti and reader.reader_for([nifti, nifti]) is reader.nifti
    assert reader.reader_for(nrrd) is reader.itk
    load = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
    with caplog.at_level(logging.INFO):
        assert load(nifti).shape == (1, 6, 7, 5)
        assert load(str(nrrd)).shape == (1, 6, 7, 5)
        assert load(str(series)).shape == (1, 5, 6, 4)  # (columns, rows, slices) as ITK reads a series
    assert not [r for r in caplog.records if "unable to load" in r.getMessage()]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.uint8])
def test_c_ordered_copies_fortran_arrays_and_leaves_c_arrays(dtype):
    values = np.arange(4 * 5 * 6).reshape(4, 5, 6).astype(dtype)
    fortran = np.asfortranarray(values)
    out = c_ordered(fortran)
    assert out.flags.c_contiguous and out.dtype == values.dtype
    np.testing.assert_array_equal(out, values)
    assert c_ordered(values) is values


def test_nifti_volumes_load_in_c_order_with_the_files_values(tmp_path):
    values = np.random.default_rng(0).integers(-1000, 1000, (7, 6, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(values, AFFINE), tmp_path / "ct.nii.gz")
    image = LoadImage(reader=VolumeReader(), image_only=True, dtype=None, ensure_channel_first=True)(
        str(tmp_path / "ct.nii.gz")
    )
    assert image.is_contiguous() and image.dtype == torch.int16
    np.testing.assert_array_equal(image[0].numpy(), values)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("slab_bytes", [1, 200, 2**26])
def test_read_c_ordered_matches_nibabel_in_slabs(tmp_path, suffix, slab_bytes):
    """Slabs of the last axis (one index, a few, all at once) give nibabel's array, scaled as nibabel scales it
    (a slope makes floats), in C order; a 4D file too."""
    rng = np.random.default_rng(1)
    for name, values, slope in (
        ("ct", rng.integers(-1000, 1000, (7, 6, 5)).astype(np.int16), None),
        ("scaled", rng.integers(0, 500, (5, 4, 6)).astype(np.int16), 0.5),
        ("series", rng.random((4, 3, 5, 3)).astype(np.float32), None),
    ):
        image = nib.Nifti1Image(values, AFFINE)
        if slope is not None:
            image.header.set_slope_inter(slope, 10.0)
        path = tmp_path / f"{name}{suffix}"
        nib.save(image, path)
        expected = np.asanyarray(nib.load(path).dataobj)
        out = read_c_ordered(nib.load(path, keep_file_open=True).dataobj, slab_bytes=slab_bytes)
        assert out.flags.c_contiguous and out.dtype == expected.dtype and out.shape == expected.shape
        np.testing.assert_array_equal(out, expected)


def _open_descriptors() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_gzip_nifti_streams_are_closed_and_other_niftis_still_load(tmp_path):
    """``.nii.gz`` files stream through ISA-L (installed with the project) and the streams close with
    ``get_data``; a NIfTI-2 file, an uncompressed one and a four-file study read as nibabel reads them."""
    from pipelines.io.gzip_streams import HAVE_ISAL

    assert HAVE_ISAL  # a dependency of the project (setup.cfg)
    values = np.random.default_rng(2).integers(-1000, 1000, (7, 6, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(values, AFFINE), tmp_path / "one.nii.gz")
    nib.save(nib.Nifti2Image(values, AFFINE), tmp_path / "two.nii.gz")
    nib.save(nib.Nifti1Image(values, AFFINE), tmp_path / "plain.nii")
    load = LoadImage(reader=VolumeReader(), image_only=True, dtype=None, ensure_channel_first=True)
    before = _open_descriptors()
    for name in ("one.nii.gz", "two.nii.gz", "plain.nii"):
        image = load(str(tmp_path / name))
        np.testing.assert_array_equal(image[0].numpy(), values)
        np.testing.assert_allclose(image.affine.numpy(), AFFINE)
    study = load(_study(tmp_path, "s"))
    assert study.shape == (4, 6, 7, 5) and [float(study[c].max()) for c in range(4)] == [1.0, 2.0, 3.0, 4.0]
    assert _open_descriptors() == before


def test_truncated_gzip_nifti_is_an_error(tmp_path):
    values = np.random.default_rng(3).integers(-1000, 1000, (30, 30, 20)).astype(np.int16)
    nib.save(nib.Nifti1Image(values, AFFINE), tmp_path / "ct.nii.gz")
    data = (tmp_path / "ct.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="ended|EOF|truncated|end-of-stream"):
        LoadImage(reader=VolumeReader(), image_only=True)(str(tmp_path / "cut.nii.gz"))


def test_dicom_series_load_in_c_order_with_itks_values_and_geometry(tmp_path):
    pixels = np.random.default_rng(1).integers(-1000, 1000, (4, 6, 5)).astype(np.int16)
    write_ct_series(tmp_path / "series", pixels)
    ours = LoadImage(reader=VolumeReader(), image_only=True, dtype=None)(str(tmp_path / "series"))
    itks = LoadImage(reader="ITKReader", image_only=True, dtype=None)(str(tmp_path / "series"))
    assert ours.is_contiguous() and ours.dtype == torch.int16
    assert ours.shape == (5, 6, 4)  # (columns, rows, slices)
    # the files' voxels, slice k of the series at index k (the phantom's slices run along the normal)
    np.testing.assert_array_equal(ours.numpy(), pixels.transpose(2, 1, 0))
    np.testing.assert_array_equal(ours.numpy(), itks.numpy())
    np.testing.assert_allclose(ours.affine, itks.affine)


def test_c_ordered_tiles_cover_uneven_edges():
    values = np.random.default_rng(2).integers(0, 255, (7, 5, 9, 11)).astype(np.uint8)
    out = c_ordered(np.asfortranarray(values), tile=(3, 4))
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, values)


def _itk_series(folder) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's read of the whole series (its files in slice order): voxels (x, y, z) and the LPS affine."""
    from pipelines.validation.dicom_checks import image_series

    (files,) = image_series(folder).values()
    image = sitk.ReadImage([str(f) for f in files], imageIO="GDCMImageIO")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), affine


@pytest.mark.parametrize("chunk_slices", [2, 3, 4])
@pytest.mark.parametrize("reverse_indexing", [False, True])
def test_a_long_series_read_in_chunks_is_the_series_read_at_once(tmp_path, chunk_slices, reverse_indexing):
    from pipelines.io.dicom_reader import DicomSeriesFolderReader

    pixels = np.random.default_rng(4).integers(-1000, 1000, (9, 6, 5)).astype(np.int16)
    write_ct_series(tmp_path / "series", pixels)
    whole = DicomSeriesFolderReader(reverse_indexing=reverse_indexing, chunk_slices=100, affine_lps_to_ras=False)
    chunked = DicomSeriesFolderReader(reverse_indexing=reverse_indexing, chunk_slices=chunk_slices)
    chunked.affine_lps_to_ras = False
    expected, meta = whole.get_data(whole.read(str(tmp_path / "series")))
    assert whole.read(str(tmp_path / "series")).image is not None
    series = chunked.read(str(tmp_path / "series"))
    assert series.image is None  # only the geometry is read up front
    out, out_meta = chunked.get_data(series)
    assert out.flags.c_contiguous and out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out_meta["affine"], meta["affine"])
    np.testing.assert_array_equal(out_meta["spatial_shape"], meta["spatial_shape"])
    itk_voxels, itk_affine = _itk_series(tmp_path / "series")
    np.testing.assert_array_equal(out if not reverse_indexing else out.transpose(2, 1, 0), itk_voxels)
    np.testing.assert_allclose(out_meta["affine"] if not reverse_indexing else itk_affine, itk_affine)


def test_chunks_keep_itks_geometry_for_uneven_slices_and_its_type_for_rescaled_ones(tmp_path):
    # ITK spaces a series by its first and last slices; a slice rescaled differently (slope 0.5) changes the voxel
    # type of its chunk: the series is then read at once, as ITK types it
    import pydicom

    from pipelines.io.dicom_reader import DicomSeriesFolderReader

    pixels = np.random.default_rng(5).integers(-1000, 1000, (8, 6, 5)).astype(np.int16)
    datasets = write_ct_series(tmp_path / "uneven", pixels)
    moved = datasets[5]
    path = next(p for p in (tmp_path / "uneven").iterdir() if pydicom.dcmread(p).SOPInstanceUID == moved.SOPInstanceUID)
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [v + 0.7 * n for v, n in zip(ds.ImagePositionPatient, (1.0, 0.0, 0.0), strict=True)]
    ds.save_as(path)
    reader = DicomSeriesFolderReader(chunk_slices=3, affine_lps_to_ras=False)
    out, meta = reader.get_data(reader.read(str(tmp_path / "uneven")))
    itk_voxels, itk_affine = _itk_series(tmp_path / "uneven")
    np.testing.assert_array_equal(out, itk_voxels)
    np.testing.assert_allclose(meta["affine"], itk_affine, rtol=0, atol=1e-9)

    datasets = write_ct_series(tmp_path / "rescaled", pixels)
    path = next(
        p for p in (tmp_path / "rescaled").iterdir() if pydicom.dcmread(p).SOPInstanceUID == datasets[5].SOPInstanceUID
    )
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = 0.5  # slice 5 opens the third chunk (slices 0-1, 2-4, 5-7): that chunk reads as floats
    ds.save_as(path)
    assert reader._read_in_chunks(reader.read(str(tmp_path / "rescaled"))) is None
    out, _ = reader.get_data(reader.read(str(tmp_path / "rescaled")))
    itk_voxels, _ = _itk_series(tmp_path / "rescaled")
    assert out.dtype == itk_voxels.dtype
    np.testing.assert_array_equal(out, itk_voxels)


def test_the_input_check_places_a_long_series_where_itk_does_without_reading_it(tmp_path, monkeypatch):
    # more slices than one chunk: the check reads the first and last slices only, and gets ITK's geometry
    import SimpleITK

    from pipelines.io.dicom_reader import CHUNK_SLICES
    from pipelines.validation.volume_checks import _inspect

    pixels = np.random.default_rng(6).integers(-1000, 1000, (CHUNK_SLICES + 6, 4, 3)).astype(np.int16)
    write_ct_series(tmp_path / "series", pixels)
    itk_voxels, itk_affine = _itk_series(tmp_path / "series")
    read = []
    original = SimpleITK.ReadImage
    monkeypatch.setattr(
        SimpleITK, "ReadImage", lambda files, *a, **k: read.append(len(files)) or original(files, *a, **k)
    )
    problems, volume = _inspect(tmp_path / "series", expect_ndim=3, read_data=False, keep_data=False)
    assert problems == [] and read == [2]
    assert volume.shape == itk_voxels.shape
    np.testing.assert_allclose(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ itk_affine, rtol=0, atol=1e-9)
