"""MONAI's ITK reader for DICOM series folders, reading the folder's one image series as the project's checks see it.

``ITKReader`` hands a folder to GDCM's series helper and reads the first series it reports. A folder as it arrives
from the field may also hold a DICOM SEG, an RTSTRUCT or a report beside the slices, or slices whose UIDs an
anonymiser blanked; GDCM may then report several "series", and which comes first is an accident of their UIDs.
This reader reads exactly the files :func:`pipelines.validation.dicom_checks.image_series` finds (the image
slices, non-image objects left out, sorted along the slice normal). A folder with several image series is refused
by the data checks that run before it (``validate_data``, the inference input check); read without them, it gives
the series with the most slices and a warning naming it. Files (NIfTI, NRRD...) are left to MONAI's other readers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ITKReader
from monai.data.utils import orientation_ras_lps
from monai.utils import ensure_tuple

from pipelines.io.array_order import c_ordered
from pipelines.validation.dicom_checks import dicom_series_problems, image_series
from pipelines.validation.errors import DataError

__all__ = ["DicomSeriesFolderReader", "split_image_series"]

logger = logging.getLogger(__name__)


class DicomSeriesFolderReader(ITKReader):
    """``ITKReader`` for DICOM series folders only (``LoadImage(reader=DicomSeriesFolderReader())`` keeps MONAI's
    default readers for files), reading through SimpleITK (see :meth:`read`). Takes ``ITKReader``'s arguments."""

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        """True for folders: a DICOM series; files go to the other readers."""
        return all(os.path.isdir(f) for f in ensure_tuple(filename))

    def read(self, data, **kwargs):
        """Read each folder's image series: its sorted slice files through SimpleITK's GDCM reader, the ITK image
        reader ``ITKReader`` itself uses (the same voxels and geometry; SimpleITK loads in 0.1 s where ``itk``'s
        lazy modules take about 3 s of a process's first DICOM read). Arguments are ``ITKReader``'s; ``itk.imread``
        keywords do not apply.

        Raises:
            DataError: naming the folder, when it holds no image series (MONAI's ``LoadImage`` then tries its other
                readers).
        """
        import SimpleITK as sitk

        images = []
        folders = ensure_tuple(data)
        for folder in folders:
            series = image_series(folder)
            if not series:
                problems = dicom_series_problems(folder) or [f"{folder}: folder holds no DICOM image series"]
                raise DataError(problems[0])
            key, paths = max(series.items(), key=lambda item: len(item[1]))
            if len(series) > 1:
                logger.warning(
                    "%s: %d image series; reading the one with most slices (%d): %s",
                    folder,
                    len(series),
                    len(paths),
                    key,
                )
            files = [str(p) for p in paths]
            images.append(sitk.ReadImage(files[0] if len(files) == 1 else files, imageIO="GDCMImageIO"))
        return images if len(folders) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """``ITKReader.get_data`` on the SimpleITK image(s) :meth:`read` returned (its array, metadata and affine
        come from the four methods below)."""
        return super().get_data(list(img) if isinstance(img, (list, tuple)) else [img])  # an Image is iterable

    def _get_array_data(self, img):
        """The voxels as ``ITKReader`` gives them (``(x, y, z)``, or ``(z, y, x)`` with ``reverse_indexing``;
        components last), in C order through torch's copy (:func:`pipelines.io.array_order.c_ordered`), not
        ``LoadImage``'s numpy copy: 1.0 s against 3.1 s for a 512x512x600 int16 series on 2 CPU cores."""
        import SimpleITK as sitk

        data = sitk.GetArrayViewFromImage(img)  # (z, y, x[, components])
        if not self.reverse_indexing:
            data = data.T if img.GetNumberOfComponentsPerPixel() == 1 else np.moveaxis(data.T, 0, -1)
        if data.flags.f_contiguous and not data.flags.c_contiguous:
            return c_ordered(data)  # a copy
        return np.array(data, order="C")  # a copy too: the view dies with the SimpleITK image

    def _get_meta_dict(self, img) -> dict:
        return {"spacing": np.asarray(img.GetSpacing())}

    def _get_affine(self, img, lps_to_ras: bool = True) -> np.ndarray:
        rank = img.GetDimension()
        direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(rank, rank)
        spatial = min(max(rank, 1), 3)
        affine = np.eye(spatial + 1)
        affine[:spatial, :spatial] = direction[:spatial, :spatial] @ np.diag(np.asarray(img.GetSpacing())[:spatial])
        affine[:spatial, -1] = np.asarray(img.GetOrigin())[:spatial]
        return orientation_ras_lps(affine) if lps_to_ras else affine

    def _get_spatial_shape(self, img) -> np.ndarray:
        size = list(img.GetSize())
        if isinstance(self.channel_dim, int):
            size.pop(self.channel_dim)
        return np.asarray(size[: min(max(img.GetDimension(), 1), 3)])


def split_image_series(folder: str | os.PathLike, out_root: str | os.PathLike) -> list[Path]:
    """One folder per image series of ``folder``, under ``out_root``, holding links to that series' files (copies
    where the file system has no links); ``[folder]`` itself when it holds one series or none.

    The folders are named ``<folder name>_s<k>``, ``k`` counting the series in the order of their first file's
    name, so a rerun gives the same names; each is a clean series folder for the readers and the checks.
    """
    import shutil

    folder = Path(folder)
    series = image_series(folder)
    if len(series) < 2:
        return [folder]
    out_root = Path(out_root)
    folders = []
    for k, (key, paths) in enumerate(sorted(series.items(), key=lambda item: item[1][0].name), start=1):
        target = out_root / f"{folder.name}_s{k}"
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            link = target / path.name
            if not link.exists():
                try:
                    link.symlink_to(path.resolve())
                except OSError:
                    shutil.copy2(path, link)
        logger.info("%s: series %d of %d (%d slices, %s) -> %s", folder, k, len(series), len(paths), key, target)
        folders.append(target)
    return folders
