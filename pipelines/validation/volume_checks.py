"""Checks of single volumes and image / label pairs: readable, 3D, finite, plausible intensities, one grid.

Volumes are NIfTI, NRRD, MetaImage files or DICOM series folders. Every problem is a string that starts with the
file it concerns; :mod:`pipelines.validation.checks` runs these checks on every entry of a datalist.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.validation.dicom_checks import checked_series_files, dicom_file_problems
from pipelines.validation.errors import short_error

__all__ = [
    "count_channels",
    "intensity_problems",
    "label_value_problems",
    "check_volume",
    "check_pair",
    "canonical_grid",
    "same_grid",
    "sequence_grid_problems",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
CT_HU_RANGE = (-1100.0, 4000.0)  # where the body of a CT in Hounsfield units lies (metal and padding aside)
CT_AIR_BELOW = -900.0  # a CT shows some air (around the body, in the lungs or bowel) below this
_PERCENTILE_SAMPLE = 2_000_000  # voxels sampled for percentiles of a large volume


@dataclass
class _Volume:
    """What the checks learn about one readable volume: index-order shape and RAS+ affine."""

    shape: tuple[int, ...]
    affine: np.ndarray | None
    data: np.ndarray | None = None

    @property
    def spacing(self) -> np.ndarray | None:
        if self.affine is None:
            return None
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))


def _fmt(values) -> str:
    """Compact text of a few numbers: ``(1.5, 1.5, 2.5)``."""
    return "(" + ", ".join(f"{float(v):.5g}" for v in values) + ")"


def _unreadable(path: Path, exc: BaseException) -> str:
    return f"{path}: cannot be read as a NIfTI/NRRD/DICOM image: {short_error(exc)}"


# image formats SimpleITK reads that are not DICOM: such a file skips the DICOM header checks
_OTHER_FORMATS = (".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gz")


def _sitk_unreadable(path: Path, exc: BaseException, dicom: bool) -> str:
    """SimpleITK's failure in a user's words: no reader for the format, or pixel data it could not decode."""
    text = " ".join(str(exc).split())
    if "Unable to determine ImageIO reader" in text:
        return f"{path}: no image reader recognises this file (expected NIfTI, NRRD, MetaImage or DICOM)"
    if dicom:
        return f"{path}: the DICOM pixel data could not be decoded (a corrupt file, or a compression GDCM lacks)"
    return _unreadable(path, exc)


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _read_nifti(path: Path, read_data: bool, problems: list[str]) -> tuple[_Volume, np.ndarray | None] | None:
    """Read a NIfTI header (and data); on failure append the problem and return None."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib/gzip errors, ValueError...
        problems.append(_unreadable(path, exc))
        return None
    data = None
    if read_data:
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as exc:  # truncated or corrupt compressed data shows up only here
            problems.append(_unreadable(path, exc))
            return None
    return _Volume(shape, affine), data


def _sitk_affine(image) -> np.ndarray:
    """RAS+ 4x4 affine of a SimpleITK image or of an ``ImageFileReader`` (SimpleITK geometry is LPS+)."""
    return _ras_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())


def _ras_affine(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]) -> np.ndarray:
    """RAS+ 4x4 affine of SimpleITK's LPS+ geometry (``direction`` row-major, ``spacing``, ``origin``; x first)."""
    dim = len(spacing)
    direction = np.asarray(direction, dtype=np.float64).reshape(dim, dim)
    affine = np.eye(4)
    n = min(dim, 3)
    affine[:n, :n] = (direction * np.asarray(spacing, dtype=np.float64)[None, :])[:n, :n]
    affine[:n, 3] = np.asarray(origin, dtype=np.float64)[:n]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _read_sitk(
    path: Path, read_data: bool, problems: list[str], expect_ndim: int = 3
) -> tuple[_Volume, np.ndarray | None] | None:
    """Read an image file or DICOM series folder with SimpleITK; on failure append the problem, return None.

    A single DICOM file's header is checked first (:func:`dicom_file_problems`: a non-image object, a single slice
    where a volume is expected...); a folder is read as the one image series it holds, sorted along the slice
    normal, leaving out non-image objects beside the slices.
    """
    import SimpleITK as sitk

    dicom = False
    if path.is_file() and not path.name.lower().endswith(_OTHER_FORMATS):
        file_problems = dicom_file_problems(path, expect_ndim)
        if file_problems:
            problems += file_problems
            return None
        dicom = file_problems is not None

    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK prints to stderr; the problem list says it all
    try:
        if path.is_dir():
            # headers first: GDCM reads a gappy series silently
            series_problems, files = checked_series_files(path, expect_volume=expect_ndim == 3)
            if series_problems:
                problems += series_problems
                return None
            dicom = True
            if not read_data:  # the geometry ITK gives the series, from its first and last slices
                from pipelines.io.dicom_reader import read_series

                series = read_series([str(f) for f in files])
                if series.components > 1:
                    problems.append(f"{path}: has {series.components} components per voxel; expected a scalar image")
                affine = _ras_affine(series.direction, series.spacing, series.origin)
                return _Volume(tuple(int(s) for s in series.size), affine), None
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in files])
            image = reader.Execute()
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            if not read_data:
                components = reader.GetNumberOfComponents()
                if components > 1:
                    problems.append(f"{path}: has {components} components per voxel; expected a scalar image")
                return _Volume(tuple(int(s) for s in reader.GetSize()), _sitk_affine(reader)), None
            image = reader.Execute()
    except RuntimeError as exc:
        problems.append(_sitk_unreadable(path, exc, dicom))
        return None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    shape = tuple(int(s) for s in image.GetSize())
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        problems.append(f"{path}: has {components} components per voxel; expected a scalar image")
    data = None
    if read_data:
        data = sitk.GetArrayFromImage(image)  # (z, y, x[, c]): reorder the spatial axes to (x, y, z[, c])
        dim = image.GetDimension()
        data = np.transpose(data, (*range(dim - 1, -1, -1), *range(dim, data.ndim)))
    return _Volume(shape, _sitk_affine(image)), data


def _inspect(
    path: str | os.PathLike, expect_ndim: int, read_data: bool, keep_data: bool
) -> tuple[list[str], _Volume | None]:
    """Check one volume; return its problems and, when it could be read, what was learnt about it."""
    path = Path(path)
    problems: list[str] = []
    if not path.exists():
        return [f"{path}: file not found"], None
    if path.is_file() and path.stat().st_size == 0:
        return [f"{path}: file is empty (0 bytes)"], None
    if path.is_file() and _is_nifti(path):
        result = _read_nifti(path, read_data, problems)
    else:
        result = _read_sitk(path, read_data, problems, expect_ndim)
    if result is None:
        return problems, None
    volume, data = result

    shape = list(volume.shape)
    while len(shape) > expect_ndim and shape[-1] == 1:  # (x, y, z, 1) is a 3D volume
        shape.pop()
    volume.shape = tuple(shape)
    if len(shape) != expect_ndim:
        problems.append(
            f"{path}: is {len(shape)}D (shape {tuple(volume.shape)}); expected a {expect_ndim}D "
            f"{'volume' if expect_ndim == 3 else 'image'}"
        )
    if any(s == 0 for s in shape):
        problems.append(f"{path}: has a zero-sized dimension (shape {tuple(shape)})")
    affine = volume.affine
    if affine is not None:
        if not np.all(np.isfinite(affine)):
            problems.append(f"{path}: has a non-finite affine (spacing/origin/direction)")
        elif np.any(volume.spacing[: min(len(shape), 3)] <= 0):
            problems.append(f"{path}: has a zero voxel spacing {_fmt(volume.spacing)}")
    if data is not None and data.size and np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(data.size - finite.sum()) - n_nan
            problems.append(f"{path}: has {n_nan} NaN and {n_inf} infinite voxels")
    if keep_data and data is not None:
        volume.data = data.reshape(volume.shape) if data.size == int(np.prod(volume.shape)) else data
    return problems, volume


def _finite_values(data: np.ndarray) -> np.ndarray:
    values = np.asarray(data)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        values = values[np.isfinite(values)]
    return values


def _hounsfield_problems(values: np.ndarray, low: float, high: float) -> list[str]:
    """Why ``values`` (finite, not constant) do not look like a CT in Hounsfield units; empty when they do."""
    span = f"values span [{low:g}, {high:g}]"
    if low >= 0 and high > 1000:
        return [
            f"{span}, none negative: stored pixel values without the DICOM rescale (RescaleSlope/RescaleIntercept)? "
            "expected Hounsfield units, with air near -1000"
        ]
    if high - low <= 20:
        return [f"{span}: a normalised or windowed image? expected Hounsfield units, from air near -1000 to bone"]
    if low > CT_AIR_BELOW:
        return [
            f"lowest value is {low:g}: no air; expected a CT in Hounsfield units to show air near -1000 "
            f"(some voxels below {CT_AIR_BELOW:g})"
        ]
    sample = values.ravel()[:: max(1, values.size // _PERCENTILE_SAMPLE)]
    padding = low < CT_HU_RANGE[0]  # scanners fill outside the field of view with one value (-2048, -3024)
    if padding:
        sample = sample[sample > low]
    if sample.size == 0:
        return []
    p_low, p_high = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    if p_low < CT_HU_RANGE[0] or p_high > CT_HU_RANGE[1]:
        left_out = f", padding value {low:g} left out" if padding else ""
        return [
            f"values span [{p_low:g}, {p_high:g}] (0.1st to 99.9th percentile{left_out}); expected Hounsfield units "
            f"within about [{CT_HU_RANGE[0]:g}, {CT_HU_RANGE[1]:g}]"
        ]
    return []


def count_channels(path: str | os.PathLike) -> int:
    """Channels of the image file ``path`` from its header: 1 for a 3D volume, C for a 4D ``(X, Y, Z, C)`` NIfTI.

    Raises:
        ValueError: when the file cannot be read as an image.
    """
    import nibabel as nib
    import SimpleITK as sitk

    path = str(path)
    try:
        if path.lower().endswith(NIFTI_SUFFIXES):
            shape = nib.load(path).shape
            return int(np.prod(shape[3:])) if len(shape) > 3 else 1
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        size = reader.GetSize()
        return int(reader.GetNumberOfComponents() * (np.prod(size[3:]) if len(size) > 3 else 1))
    except Exception as e:  # nibabel and SimpleITK raise their own types
        raise ValueError(f"{path}: cannot read the image header ({e})") from e


def intensity_problems(data, modality: str | None) -> list[str]:
    """Implausible intensities of an image of ``modality``, as phrases without the file name.

    Any modality: the image is not constant (a blank export). ``"CT"`` also: the values are Hounsfield units, i.e.
    not all non-negative with a maximum in the thousands (stored values without the DICOM rescale), not squeezed
    into a narrow range (a normalised image), some air below -900, and the body (the 0.1st to 99.9th
    percentile, leaving out a padding value below -1100) within about [-1100, 4000]. NaN and infinite voxels are
    left out here (:func:`check_volume` counts them).

    Args:
        data: the voxel values (numpy array or tensor).
        modality: ``"CT"``, ``"MR"``, ...; None checks nothing.

    Returns:
        The problems found, each a short phrase; empty when the intensities are plausible.
    """
    if modality is None:
        return []
    values = _finite_values(np.asarray(data))
    if values.size == 0:
        return []
    low, high = float(values.min()), float(values.max())
    if low == high:
        return [f"all voxels are {low:g}: a blank image; expected an image with contrast"]
    if modality.upper() != "CT":
        return []
    return _hounsfield_problems(values, low, high)


def check_volume(
    path: str | os.PathLike,
    *,
    expect_ndim: int = 3,
    check_intensity: bool = True,
    modality: str | None = None,
) -> list[str]:
    """Problems that would stop a MONAI pipeline from using one image.

    NIfTI files (``.nii``, ``.nii.gz``) are read with nibabel (header, then data); other files (NRRD, MetaImage,
    a single DICOM file) and DICOM series folders are read with SimpleITK, after checking a series folder's
    headers (:func:`pipelines.validation.dicom_checks.dicom_series_problems`: one series, no missing or
    duplicated slice).

    Args:
        path: an image file, or a folder holding one DICOM series.
        expect_ndim: number of spatial dimensions expected; trailing singleton dimensions are ignored.
        check_intensity: read the voxel data too (finds truncated files, NaN and infinite voxels). ``False``
            reads headers only (much faster, but a truncated compressed file can pass).
        modality: with voxel data read, also check that the intensities fit the modality
            (:func:`intensity_problems`: not constant; Hounsfield units for ``"CT"``). None skips this.

    Returns:
        The problems found, each a line starting with ``path``; empty when the image is usable.
    """
    keep = check_intensity and modality is not None
    problems, volume = _inspect(path, expect_ndim, read_data=check_intensity, keep_data=keep)
    if volume is not None and volume.data is not None and not problems:
        problems += [f"{path}: {p}" for p in intensity_problems(volume.data, modality)]
    return problems


def canonical_grid(affine, shape: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The affine and shape of the grid ``(affine, shape)`` with its voxel axes reordered and flipped to RAS+, as
    ``Orientationd(axcodes="RAS")`` reorders them: the same voxel centres, whatever order a file stores them in."""
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    spatial = tuple(int(s) for s in shape[:3])
    ornt = nib.orientations.io_orientation(affine)
    canonical = affine @ nib.orientations.inv_ornt_aff(ornt, spatial)
    reordered = [0] * len(spatial)
    for axis, (target, _) in enumerate(ornt):
        reordered[int(target)] = spatial[axis]
    return canonical, tuple(reordered)


def same_grid(affine_a, shape_a: Sequence[int], affine_b, shape_b: Sequence[int], atol: float = 1e-3) -> bool:
    """True when two grids hold the same voxel centres (within ``atol`` mm), their axes stored in any order and
    direction: a label saved with its rows flipped (dicom2nifti, some viewers) lies on its image's grid."""
    if len(shape_a) != len(shape_b) or len(shape_a) < 3:
        return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, rtol=0, atol=atol)
    (ca, sa), (cb, sb) = canonical_grid(affine_a, shape_a), canonical_grid(affine_b, shape_b)
    return sa == sb and tuple(shape_a[3:]) == tuple(shape_b[3:]) and np.allclose(ca, cb, rtol=0, atol=atol)


def sequence_grid_problems(paths: Sequence[str | os.PathLike], atol: float = 1e-3, expect_ndim: int = 3) -> list[str]:
    """Problems of the sequences of one multi-sequence study (one file each) not sharing one grid: every file is
    compared with the first (headers only). Files that cannot be read are left to :func:`check_volume`."""
    volumes = []
    for path in paths:
        _, volume = _inspect(path, expect_ndim, read_data=False, keep_data=False)
        volumes.append((Path(path), volume))
    (first, ref), problems = volumes[0], []
    for path, volume in volumes[1:]:
        if ref is None or volume is None or ref.affine is None or volume.affine is None:
            continue
        if same_grid(ref.affine, ref.shape, volume.affine, volume.shape, atol):
            continue
        if ref.shape != volume.shape:
            how = f"shape {volume.shape} against {ref.shape}"
        elif not np.allclose(ref.spacing, volume.spacing, rtol=0, atol=atol):
            how = f"spacing {_fmt(volume.spacing)} against {_fmt(ref.spacing)}"
        else:
            how = f"origin/direction differ by up to {float(np.abs(ref.affine - volume.affine).max()):.4g} mm"
        problems.append(
            f"{path}: not on the grid of {first.name} ({how}): the sequences of a study must be co-registered on "
            "one grid; register them first"
        )
    return problems


def _geometry_problems(image_path, label_path, image: _Volume, label: _Volume, atol: float) -> list[str]:
    problems = []
    if image.affine is not None and label.affine is not None and image.shape != label.shape:
        if same_grid(image.affine, image.shape, label.affine, label.shape, atol):
            return problems  # the same grid, its axes stored in another order
    if image.shape != label.shape:
        problems.append(f"{label_path}: shape {image.shape!r} of image {image_path} != label shape {label.shape!r}")
        return problems
    if image.affine is None or label.affine is None:
        return problems
    if not np.allclose(image.spacing, label.spacing, rtol=0, atol=atol):
        problems.append(
            f"{label_path}: spacing {_fmt(label.spacing)} != spacing {_fmt(image.spacing)} of image {image_path}"
        )
    elif not np.allclose(image.affine, label.affine, rtol=0, atol=atol) and not same_grid(
        image.affine, image.shape, label.affine, label.shape, atol
    ):
        diff = float(np.abs(image.affine - label.affine).max())
        problems.append(
            f"{label_path}: affine (origin/direction) differs from image {image_path} by up to {diff:.4g} "
            f"(tolerance {atol:g})"
        )
    return problems


def label_value_problems(label_path, data: np.ndarray, label_values: Sequence[int] | None = None) -> list[str]:
    """Problems with the voxel values of a segmentation label.

    Args:
        label_path: the label's file, for the messages.
        data: its voxel values.
        label_values: the values the bundle's classes use on disk (``[0, 1, 2]``; BraTS: ``[0, 1, 2, 4]``).
            None accepts any non-negative integer.

    Returns:
        The problems found (non-numeric type, non-integer values, values outside ``label_values`` or negative
        ones), each a line starting with ``label_path``.
    """
    problems = []
    if data.size == 0:
        return problems
    if np.issubdtype(data.dtype, np.floating):
        finite = _finite_values(data)
        if finite.size and not np.array_equal(finite, np.round(finite)):
            bad = finite[finite != np.round(finite)].ravel()[0]
            problems.append(f"{label_path}: label has non-integer values (e.g. {float(bad):g})")
    elif not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        problems.append(f"{label_path}: label has non-numeric voxel type {data.dtype}")
        return problems
    if label_values is None:
        if data.dtype != bool and np.nanmin(data) < 0:
            problems.append(f"{label_path}: label has negative values (min {float(np.nanmin(data)):g})")
        return problems
    found = np.unique(_finite_values(data)).astype(np.int64)
    allowed = sorted(int(v) for v in label_values)
    extra = np.setdiff1d(found, allowed)
    if extra.size:
        problems.append(
            f"{label_path}: label has value(s) {_values(extra)} outside the classes' values {allowed} "
            f"(values found: {_values(found)})"
        )
    return problems


def _values(values: np.ndarray, limit: int = 10) -> str:
    text = ", ".join(str(int(v)) for v in values[:limit])
    return "[" + text + (f", ... ({len(values)} values)" if len(values) > limit else "") + "]"


def check_pair(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    *,
    atol: float = 1e-3,
    expect_ndim: int = 3,
    check_intensity: bool = True,
    label_values: Sequence[int] | None = None,
    modality: str | None = None,
) -> list[str]:
    """Problems with an image and its segmentation label used together.

    Runs :func:`check_volume` on both, then checks that they have the same shape, voxel spacing and
    affine (origin and direction) within ``atol`` mm, and that label values are non-negative integers (and
    among ``label_values`` when given).

    Args:
        image_path: the image file or DICOM series folder.
        label_path: its label file.
        atol: absolute tolerance on spacing and affine entries, in mm.
        expect_ndim: number of spatial dimensions expected.
        check_intensity: read voxel data (NaN / infinite voxels, label values); ``False`` checks headers only.
        label_values: the values the classes use on disk; None accepts any non-negative integer.
        modality: the image's modality, for :func:`intensity_problems` (None: no intensity plausibility check).

    Returns:
        The problems found, each naming the file it concerns; empty when the pair is usable.
    """
    keep_image = check_intensity and modality is not None
    img_problems, image = _inspect(image_path, expect_ndim, read_data=check_intensity, keep_data=keep_image)
    lab_problems, label = _inspect(label_path, expect_ndim, read_data=check_intensity, keep_data=True)
    if image is not None and image.data is not None and not img_problems:
        img_problems += [f"{image_path}: {p}" for p in intensity_problems(image.data, modality)]
    problems = img_problems + lab_problems
    if label is not None and label.data is not None:
        problems += label_value_problems(label_path, label.data, label_values)
    if image is not None and label is not None and not img_problems and not lab_problems:
        problems += _geometry_problems(image_path, label_path, image, label, atol)
    return problems
