"""MONAI image saving that never leaves a half-written file under the final name.

``SaveImage`` hands the final file name to an ``ImageWriter`` (``NibabelWriter``, ``ITKWriter``, ``PILWriter``),
which writes it in place: a crash, a full disk or a killed job leaves a truncated ``case_seg.nii.gz`` that looks
like a prediction. The writers here write to a temporary file in the same folder (with the same suffixes, so the
format is still picked from the name) and rename it onto the final name (:func:`pipelines.io.atomic.atomic_write`).
:class:`AtomicSaveImage` / :class:`AtomicSaveImaged` take exactly ``SaveImage`` / ``SaveImaged``'s arguments::

    - _target_: pipelines.io.writers.AtomicSaveImaged    # instead of SaveImaged
      keys: pred
      output_dir: '@prediction_dir'
"""

from __future__ import annotations

import logging
import os
from functools import cache

import nibabel as nib
import numpy as np
import torch
from monai.data.image_writer import ImageWriter, ITKWriter, NibabelWriter, PILWriter
from monai.transforms import SaveImage, SaveImaged

from pipelines.io.atomic import atomic_write
from pipelines.io.gzip_streams import open_gzip

__all__ = [
    "fortran_ordered",
    "AtomicWriteMixin",
    "KeepVoxelsMixin",
    "AtomicNibabelWriter",
    "AtomicITKWriter",
    "AtomicPILWriter",
    "atomic_writer",
    "AtomicSaveImage",
    "AtomicSaveImaged",
]

logger = logging.getLogger(__name__)


class AtomicWriteMixin:
    """Mixin for a ``monai.data.ImageWriter``: ``write`` goes to a temporary file renamed onto ``filename``, then the
    writer lets go of the voxels it wrote.

    A file-like ``filename`` (no path) is written directly, as the wrapped writer would.
    """

    def write(self, filename, verbose: bool = True, **kwargs):
        if not isinstance(filename, (str, os.PathLike)):
            return super().write(filename, verbose=verbose, **kwargs)
        atomic_write(filename, lambda tmp: super(AtomicWriteMixin, self).write(tmp, verbose=False, **kwargs))
        # SaveImage keeps its last writer (``writer_obj``) until the next save: not the voxels it wrote (a full-size
        # prediction, held while the next scan of a folder is read)
        self.data_obj = None
        if verbose:
            logger.info("writing: %s", filename)


def fortran_ordered(array: np.ndarray) -> np.ndarray:
    """``array`` in Fortran order (first axis fastest, the order NIfTI stores voxels), reordered through torch
    where it has the dtype; unchanged when it already is in Fortran order."""
    if array.ndim < 2 or array.flags.f_contiguous:
        return array
    try:  # torch reads strided views as they are (a chunk of a volume is one)
        reversed_axes = torch.from_numpy(array).permute(*reversed(range(array.ndim)))
    except (TypeError, ValueError):  # a dtype torch lacks, or negative strides
        return np.asfortranarray(array)
    return reversed_axes.contiguous().numpy().T


class KeepVoxelsMixin:
    """Mixin for a ``monai.data.ImageWriter``: with no resampling asked (``SaveImage(resample=False)``, the
    bundles' setting), ``resample_if_needed`` returns the voxels as they are. MONAI's runs an identity
    ``SpatialResample`` that returns float32: a 0.6 GiB copy of a 512x512x600 uint8 mask, cast back to uint8 after
    (the inference stage's peak memory, docs/performance.md)."""

    def resample_if_needed(self, data_array, affine=None, target_affine=None, output_spatial_shape=None, **kwargs):
        if target_affine is None and output_spatial_shape is None:
            return data_array, affine
        return super().resample_if_needed(
            data_array, affine=affine, target_affine=target_affine, output_spatial_shape=output_spatial_shape, **kwargs
        )


class _StreamedNifti1Image(nib.Nifti1Image):
    """A ``Nifti1Image`` whose C-ordered voxels are written in chunks of the last axis, each reordered to NIfTI's
    Fortran order by torch as it is written: no Fortran-ordered copy of the whole volume (150 MiB for a 512x512x600
    mask; given the C-ordered array itself, nibabel gathers each slice element by element, 1.5-1.9 s).
    ``.nii.gz`` goes through :func:`~pipelines.io.gzip_streams.open_gzip` (ISA-L, level 1: nibabel's level, a few
    times zlib's speed). Voxels that need nibabel's scaling or another layout are written by nibabel itself."""

    def to_filename(self, filename, **kwargs) -> None:
        data = self.dataobj
        name = str(filename).lower()
        streamable = (
            isinstance(data, np.ndarray)
            and data.ndim >= 3
            and data.flags.c_contiguous
            and not data.flags.f_contiguous
            and data.dtype == self.header.get_data_dtype()
            and not kwargs
            and name.endswith((".nii", ".nii.gz"))
        )
        if not streamable:
            self._dataobj = fortran_ordered(np.asanyarray(data))
            if not name.endswith(".nii.gz"):
                return super().to_filename(filename, **kwargs)
            with open_gzip(filename, "wb", compresslevel=1) as stream:
                return self.to_file_map({"image": nib.FileHolder(filename=str(filename), fileobj=stream)}, **kwargs)
        with open_gzip(filename, "wb", compresslevel=1) if name.endswith(".gz") else open(filename, "wb") as stream:
            self._write_streamed(stream, data)

    def _write_streamed(self, stream, data: np.ndarray, chunk_bytes: int = 2**24) -> None:
        """nibabel's header for ``data`` (the one ``to_file_map`` writes: same dtype, so no scaling), then the
        voxels, ``chunk_bytes`` of them at a time, in Fortran order."""
        from nibabel.arraywriters import get_slope_inter, make_array_writer
        from nibabel.volumeutils import seek_tell

        self.update_header()
        header = self.header.copy()
        slope = header["scl_slope"].item() if header.has_data_slope else np.nan
        inter = header["scl_inter"].item() if header.has_data_intercept else np.nan
        if np.all(np.isnan((slope, inter))):  # as to_file_map decides whether to set them
            writer = make_array_writer(data, header.get_data_dtype(), header.has_data_slope, header.has_data_intercept)
            header.set_slope_inter(*get_slope_inter(writer))
        header.write_to(stream)
        seek_tell(stream, header.get_data_offset(), write0=True)
        step = max(1, chunk_bytes // max(1, data[..., :1].nbytes))
        for k in range(0, data.shape[-1], step):  # the last axis varies slowest in Fortran order
            stream.write(memoryview(fortran_ordered(data[..., k : k + step]).T).cast("B"))


class AtomicNibabelWriter(AtomicWriteMixin, KeepVoxelsMixin, NibabelWriter):
    """``NibabelWriter`` that writes atomically (NIfTI), without a float copy (:class:`KeepVoxelsMixin`), and writes
    C-ordered voxels in chunks reordered to NIfTI's order as they go (:class:`_StreamedNifti1Image`; given the
    C-ordered array, nibabel reorders it element by element: a 512x512x600 uint8 mask 1.5-1.9 s, 2 CPU cores),
    compressed through ISA-L where installed (:mod:`pipelines.io.gzip_streams`)."""

    @classmethod
    def create_backend_obj(cls, data_array, affine=None, dtype=None, **kwargs):
        image = super().create_backend_obj(data_array, affine=affine, dtype=dtype, **kwargs)
        return _StreamedNifti1Image(image.dataobj, image.affine, header=image.header, extra=image.extra)


class AtomicITKWriter(AtomicWriteMixin, KeepVoxelsMixin, ITKWriter):
    """``ITKWriter`` that writes atomically (NIfTI, NRRD, MetaImage...), without a float copy
    (:class:`KeepVoxelsMixin`)."""


class AtomicPILWriter(AtomicWriteMixin, PILWriter):
    """``PILWriter`` that writes atomically (PNG, JPEG)."""


_BUILT_IN = {NibabelWriter: AtomicNibabelWriter, ITKWriter: AtomicITKWriter, PILWriter: AtomicPILWriter}


@cache
def atomic_writer(writer: type[ImageWriter]) -> type[ImageWriter]:
    """The atomic version of the ``ImageWriter`` class ``writer`` (itself when it already is atomic)."""
    if issubclass(writer, AtomicWriteMixin):
        return writer
    if writer in _BUILT_IN:
        return _BUILT_IN[writer]
    return type(f"Atomic{writer.__name__}", (AtomicWriteMixin, writer), {"__module__": writer.__module__})


class AtomicSaveImage(SaveImage):
    """``monai.transforms.SaveImage`` whose files appear complete or not at all (same arguments).

    Each writer that ``SaveImage`` would try (chosen from ``output_ext`` or given as ``writer``) is replaced by its
    atomic version; a writer that fails leaves neither the final file nor its temporary file behind.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writers = tuple(atomic_writer(w) for w in self.writers)


class AtomicSaveImaged(SaveImaged):
    """``monai.transforms.SaveImaged`` whose files appear complete or not at all (same arguments)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saver.writers = tuple(atomic_writer(w) for w in self.saver.writers)
