"""Tests of pipelines.io.writers: atomic SaveImage(d) write what SaveImage(d) writes, or nothing at all."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor, NibabelWriter
from monai.transforms import SaveImage, SaveImaged

from pipelines.io.writers import AtomicNibabelWriter, AtomicSaveImage, AtomicSaveImaged, atomic_writer

AFFINE = torch.tensor([[-0.8, 0, 0, 10.0], [0, 1.2, 0, -5.0], [0, 0, 3.0, 2.0], [0, 0, 0, 1]], dtype=torch.float64)
SETTINGS = {
    "output_postfix": "seg",
    "output_ext": ".nii.gz",
    "output_dtype": np.uint8,
    "resample": False,
    "separate_folder": False,
    "print_log": False,
}


def _prediction(name="case_3.nii.gz"):
    data = torch.zeros(1, 9, 7, 5)
    data[0, 2:5, 1:4, 1:3] = 1
    data[0, 6, 5, 4] = 2
    return MetaTensor(data, affine=AFFINE.clone(), meta={"filename_or_obj": f"/data/{name}"})


class HalfWriter(NibabelWriter):
    """Writes the first bytes of a file, then fails, like a full disk or a killed process."""

    def write(self, filename, verbose=True, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x1f\x8b partial")
        raise OSError("disk full")


@pytest.mark.parametrize(("atomic", "plain"), [(AtomicSaveImaged, SaveImaged), (AtomicSaveImage, SaveImage)])
def test_same_file_as_monai_saveimage(tmp_path, atomic, plain):
    for cls, folder in ((atomic, "atomic"), (plain, "plain")):
        if cls in (SaveImaged, AtomicSaveImaged):
            cls(keys="pred", output_dir=tmp_path / folder, **SETTINGS)({"pred": _prediction()})
        else:
            cls(output_dir=tmp_path / folder, **SETTINGS)(_prediction())
    ours, theirs = (
        nib.load(tmp_path / "atomic" / "case_3_seg.nii.gz"),
        nib.load(tmp_path / "plain" / "case_3_seg.nii.gz"),
    )
    assert ours.shape == theirs.shape == (9, 7, 5)
    assert ours.get_data_dtype() == theirs.get_data_dtype() == np.uint8
    np.testing.assert_allclose(ours.affine, theirs.affine)
    np.testing.assert_allclose(ours.affine, AFFINE.numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj))
    assert sorted(p.name for p in (tmp_path / "atomic").iterdir()) == ["case_3_seg.nii.gz"]


def test_png_and_itk_writers_are_atomic_too(tmp_path):
    saver = AtomicSaveImage(output_dir=tmp_path, output_postfix="mask", output_ext=".png", scale=255,
                            output_dtype=np.uint8, separate_folder=False, print_log=False)  # fmt: skip
    saver(MetaTensor(torch.ones(1, 6, 4), meta={"filename_or_obj": "xray.png"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xray_mask.png"]
    assert all(w.__name__.startswith("Atomic") for w in saver.writers)
    assert (
        atomic_writer(NibabelWriter) is AtomicNibabelWriter
        and atomic_writer(AtomicNibabelWriter) is AtomicNibabelWriter
    )


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    saver = AtomicSaveImaged(keys="pred", output_dir=tmp_path, writer=HalfWriter, **SETTINGS)
    assert saver.saver.writers[0].__name__ == "AtomicHalfWriter"
    with pytest.raises(RuntimeError, match="cannot find a suitable writer"):  # how SaveImage reports a failed write
        saver({"pred": _prediction()})
    assert list(tmp_path.iterdir()) == []
    # the same failure without the atomic writer leaves a broken file under the final name
    with pytest.raises(RuntimeError):
        SaveImaged(keys="pred", output_dir=tmp_path, writer=HalfWriter, **SETTINGS)({"pred": _prediction()})
    assert [p.name for p in tmp_path.iterdir()] == ["case_3_seg.nii.gz"]


def test_failed_write_keeps_the_previous_prediction(tmp_path):
    AtomicSaveImaged(keys="pred", output_dir=tmp_path, **SETTINGS)({"pred": _prediction()})
    before = (tmp_path / "case_3_seg.nii.gz").read_bytes()
    with pytest.raises(RuntimeError):
        AtomicSaveImaged(keys="pred", output_dir=tmp_path, writer=HalfWriter, **SETTINGS)({"pred": _prediction()})
    assert (tmp_path / "case_3_seg.nii.gz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["case_3_seg.nii.gz"]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float32])
def test_written_voxels_never_pass_through_a_float_copy(tmp_path, dtype):
    """Without resampling, the mask goes to nibabel as it is (MONAI's writer makes a float32 copy of the whole
    volume first), in Fortran order, and the file holds the same voxels and affine as MONAI's writer gives."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    values = torch.zeros(1, 30, 28, 20, dtype=dtype)
    values[0, 5:20, 4:15, 3:12] = 1
    values[0, 8:10, 6:9, 5:7] = 2
    prediction = MetaTensor(values, affine=AFFINE.clone(), meta={"filename_or_obj": "/data/big.nii.gz"})
    seen = []

    class RecordFloatCopies(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() >= values.numel():
                    seen.append(str(func))
            return out

    settings = {**SETTINGS, "output_dtype": None}
    with RecordFloatCopies():
        AtomicSaveImage(output_dir=str(tmp_path / "ours"), **settings)(prediction.clone())
    if dtype != torch.float32:
        assert not seen, seen
    SaveImage(output_dir=str(tmp_path / "monai"), **settings)(prediction.clone())
    ours, monai = nib.load(tmp_path / "ours" / "big_seg.nii.gz"), nib.load(tmp_path / "monai" / "big_seg.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(monai.dataobj))
    np.testing.assert_allclose(ours.affine, monai.affine)
    assert ours.get_data_dtype() == monai.get_data_dtype()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("shape", [(9, 7, 5), (6, 5, 4, 3)])
@pytest.mark.parametrize("chunk_bytes", [1, 100, 2**24])
def test_streamed_nifti_holds_the_bytes_nibabel_writes(tmp_path, dtype, shape, chunk_bytes):
    # C-ordered voxels written in chunks of the last axis, reordered as they go: byte for byte nibabel's own file
    import gzip

    from pipelines.io.writers import _StreamedNifti1Image

    values = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    affine = np.diag([0.8, 1.2, 3.0, 1.0])
    nib.Nifti1Image(values, affine).to_filename(tmp_path / "nibabel.nii")
    streamed = _StreamedNifti1Image(values, affine)
    with open(tmp_path / "ours.nii", "wb") as stream:
        streamed._write_streamed(stream, values, chunk_bytes=chunk_bytes)
    assert (tmp_path / "ours.nii").read_bytes() == (tmp_path / "nibabel.nii").read_bytes()
    _StreamedNifti1Image(values, affine).to_filename(tmp_path / "ours.nii.gz")
    assert gzip.decompress((tmp_path / "ours.nii.gz").read_bytes()) == (tmp_path / "nibabel.nii").read_bytes()
    fortran = np.asfortranarray(values)  # not C-ordered: nibabel writes it
    _StreamedNifti1Image(fortran, affine).to_filename(tmp_path / "fortran.nii")
    assert (tmp_path / "fortran.nii").read_bytes() == (tmp_path / "nibabel.nii").read_bytes()


def test_the_saver_keeps_its_last_writer_but_not_the_voxels(tmp_path):
    # MONAI's SaveImage keeps the last writer (writer_obj) until the next save; it must not keep the prediction
    saver = AtomicSaveImage(output_dir=tmp_path, **SETTINGS)
    saver(_prediction())
    assert saver.writer_obj is not None and saver.writer_obj.data_obj is None
    plain = SaveImage(output_dir=tmp_path / "plain", **SETTINGS)
    plain(_prediction())
    assert plain.writer_obj.data_obj is not None  # what MONAI's own writer keeps
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(tmp_path / "case_3_seg.nii.gz").dataobj),
        np.asanyarray(nib.load(tmp_path / "plain" / "case_3_seg.nii.gz").dataobj),
    )
