"""Validation of images and datalists, run before any long work (training, evaluation, inference).

Every check collects all the problems it finds as strings that start with the file they concern, so a single
run reports everything wrong with a dataset. :class:`DataError` carries that list.

Command line::

    python -m pipelines.validation.checks data_manifests/liver_phantom.json --base-dir data/Task03_Liver_phantom
    python -m pipelines.validation.checks scan.nii.gz dicom_series_folder/ --modality CT
    python -m pipelines.validation.checks data_manifests/brain_phantom.json --base-dir data/BraTS_phantom
    --label-values 0 1 2 4

``radcascade validate <workflow>`` runs the same checks with the values a workflow's bundle sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.validation.dicom_checks import dicom_series_problems

__all__ = [
    "DataError",
    "read_datalist_json",
    "find_data_error",
    "intensity_problems",
    "label_value_problems",
    "check_volume",
    "check_pair",
    "validate_datalist",
    "main",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DEFAULT_KEYS = ("training", "validation", "test")
UNLABELLED_SECTIONS = ("test",)
_MAX_REASON = 160
CT_HU_RANGE = (-1100.0, 4000.0)  # where the body of a CT in Hounsfield units lies (metal and padding aside)
CT_AIR_BELOW = -900.0  # a CT shows some air (around the body, in the lungs or bowel) below this
_PERCENTILE_SAMPLE = 2_000_000  # voxels sampled for percentiles of a large volume


class DataError(ValueError):
    """One or more problems with input data; each problem is a line that names the file it concerns.

    Args:
        problems: the problems, or a single problem as a string.

    Attributes:
        problems: list of problem strings, in the order they were found.
    """

    def __init__(self, problems: Sequence[str] | str):
        self.problems = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        n = len(self.problems)
        head = f"{n} data problem{'s' if n != 1 else ''} found:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))

    def __reduce__(self):
        return (self.__class__, (self.problems,))


def find_data_error(error: BaseException | None) -> DataError | None:
    """The :class:`DataError` behind ``error``, following ``__cause__``/``__context__`` (MONAI's config parser
    wraps the errors of a failing expression in ``RuntimeError``); None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, DataError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


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


def _short(exc: BaseException) -> str:
    """One-line, bounded description of an exception from an image reader."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    itk_error = re.search(r"itk::ERROR: \w+\(0x[0-9a-fA-F]+\): (.*)", text)  # drop ITK's source-file preamble
    if itk_error:
        text = itk_error.group(1)
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _fmt(values) -> str:
    """Compact text of a few numbers: ``(1.5, 1.5, 2.5)``."""
    return "(" + ", ".join(f"{float(v):.5g}" for v in values) + ")"


def _unreadable(path: Path, exc: BaseException) -> str:
    return f"{path}: cannot be read as a NIfTI/NRRD/DICOM image: {_short(exc)}"


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
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    n = min(dim, 3)
    affine[:n, :n] = (direction * spacing[None, :])[:n, :n]
    affine[:n, 3] = origin[:n]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _read_sitk(path: Path, read_data: bool, problems: list[str]) -> tuple[_Volume, np.ndarray | None] | None:
    """Read an image file or DICOM series folder with SimpleITK; on failure append the problem, return None."""
    import SimpleITK as sitk

    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK prints to stderr; the problem list says it all
    try:
        if path.is_dir():
            series_problems = dicom_series_problems(path)  # headers first: GDCM reads a gappy series silently
            if series_problems:
                problems += series_problems
                return None
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                problems.append(f"{path}: folder holds no DICOM series")
                return None
            if len(series) > 1:
                problems.append(
                    f"{path}: folder holds {len(series)} DICOM series ({', '.join(series[:3])}...); "
                    "expected exactly one"
                )
                return None
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()  # a series has no cheap header-only read; read it whole
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
        problems.append(_unreadable(path, exc))
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
        result = _read_sitk(path, read_data, problems)
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


def _geometry_problems(image_path, label_path, image: _Volume, label: _Volume, atol: float) -> list[str]:
    problems = []
    if image.shape != label.shape:
        problems.append(f"{label_path}: shape {image.shape!r} of image {image_path} != label shape {label.shape!r}")
        return problems
    if image.affine is None or label.affine is None:
        return problems
    if not np.allclose(image.spacing, label.spacing, rtol=0, atol=atol):
        problems.append(
            f"{label_path}: spacing {_fmt(label.spacing)} != spacing {_fmt(image.spacing)} of image {image_path}"
        )
    elif not np.allclose(image.affine, label.affine, rtol=0, atol=atol):
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


# ---------------------------------------------------------------------------------------------------------------
# datalists
# ---------------------------------------------------------------------------------------------------------------
def _resolve(base_dir: Path, element: Any) -> list[str] | None:
    """Resolve an ``image``/``label`` value like ``monai.data.load_decathlon_datalist`` does (str or list)."""
    items = element if isinstance(element, list) else [element]
    if not items or not all(isinstance(e, (str, os.PathLike)) for e in items):
        return None
    return [os.path.normpath(os.path.join(base_dir, e)) for e in items]


def read_datalist_json(path: str | os.PathLike) -> dict:
    """The JSON object of a datalist file; ``DataError`` naming the file when it is missing, not JSON, or not an
    object."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: datalist file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: datalist is not valid JSON: {_short(exc)}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: datalist must be a JSON object with sections {list(DEFAULT_KEYS)}, got {type(data).__name__}"
        )
    return data


def _load_datalist(datalist: str | os.PathLike | Mapping) -> tuple[dict, str, Path]:
    """The datalist as a dict, a name for messages, and its folder."""
    if isinstance(datalist, Mapping):
        return dict(datalist), "datalist", Path.cwd()
    path = Path(datalist)
    return read_datalist_json(path), str(path), path.parent


def _entry_file_problems(images, labels, check_intensity, label_values, modality) -> list[str]:
    """The problems of one datalist entry's files: each image with the first label, then the other labels."""
    problems = []
    if labels:
        for img in images:
            problems += check_pair(
                img, labels[0], check_intensity=check_intensity, label_values=label_values, modality=modality
            )
        for lab in labels[1:]:
            problems += check_volume(lab, check_intensity=check_intensity)
    else:
        for img in images:
            problems += check_volume(img, check_intensity=check_intensity, modality=modality)
    return list(dict.fromkeys(problems))  # a label shared by several images (MRI sequences) is reported once


def validate_datalist(
    datalist_path_or_dict: str | os.PathLike | Mapping,
    *,
    base_dir: str | os.PathLike | None = None,
    keys: Sequence[str] = DEFAULT_KEYS,
    label_required: bool = True,
    check_intensity: bool = True,
    allow_outside_root: bool | None = None,
    label_values: Sequence[int] | None = None,
    modality: str | None = None,
) -> dict[str, int]:
    """Check a MONAI (Decathlon-style) datalist and every file it lists, reporting all problems at once.

    Checks that the file exists and is JSON, that each section in ``keys`` is present and a list, that each
    entry is a dict with ``image`` (and ``label`` when required; the ``test`` section may lack labels, and
    may be a plain list of image paths as in MSD ``dataset.json``), that no image (or label) is listed twice
    within or across sections, that no path leads outside ``base_dir`` (symbolic links followed), and
    that each resolved image / label passes :func:`check_volume` / :func:`check_pair`. Paths resolve like
    ``monai.data.load_decathlon_datalist``: relative paths are joined to ``base_dir`` (the dataset root), else
    to the datalist's folder (the current folder for a dict).

    Args:
        datalist_path_or_dict: path of the JSON datalist, or the datalist already loaded.
        base_dir: folder relative paths start from.
        keys: sections to check.
        label_required: entries outside ``test`` must have a ``label``.
        check_intensity: read voxel data (slow on big datasets); ``False`` checks headers and geometry only.
        allow_outside_root: accept paths outside the dataset root (``base_dir``). None (the default) checks
            them only when ``base_dir`` is given: a datalist checked on its own (the builders check the
            absolute paths they write) has no root to stay in.
        label_values: the values the classes use on disk (``[0, 1, 2]``); None accepts any non-negative integer.
        modality: the images' modality (``"CT"``: Hounsfield units; any: not constant); None skips these checks.

    Returns:
        Number of entries per checked section.

    Raises:
        DataError: listing every problem found, each naming the datalist or the file concerned.
    """
    from pipelines.validation.path_safety import resolve_inside  # path_safety imports this module

    data, name, folder = _load_datalist(datalist_path_or_dict)
    base = Path(base_dir) if base_dir is not None else folder
    outside_ok = base_dir is None if allow_outside_root is None else allow_outside_root
    problems: list[str] = []
    counts: dict[str, int] = {}
    seen: dict[tuple[str, str], str] = {}  # (role, normalised path) -> first place it was listed
    if isinstance(keys, str):
        keys = (keys,)
    for key in keys:
        if key not in data:
            problems.append(f"{name}: section {key!r} is missing (found sections: {sorted(data)})")
            continue
        section = data[key]
        if not isinstance(section, list):
            problems.append(f"{name}: section {key!r} must be a list, got {type(section).__name__}")
            continue
        counts[key] = len(section)
        needs_label = label_required and key not in UNLABELLED_SECTIONS
        logger.info("checking %d entries of section %r of %s", len(section), key, name)
        for i, entry in enumerate(section):
            where = f"{key}[{i}]"
            if isinstance(entry, str) and not needs_label:
                entry = {"image": entry}
            if not isinstance(entry, dict):
                problems.append(f"{name}: {where} must be an object with 'image' and 'label', got {entry!r:.80}")
                continue
            if "image" not in entry:
                problems.append(f"{name}: {where} has no 'image'")
                continue
            if needs_label and "label" not in entry:
                problems.append(f"{name}: {where} ({entry['image']}) has no 'label'")
            images = _resolve(base, entry["image"])
            labels = _resolve(base, entry["label"]) if "label" in entry else []
            if images is None or labels is None:
                problems.append(f"{name}: {where} has an 'image' or 'label' that is not a path or list of paths")
                continue
            escaping = []
            for p in images + labels:
                try:
                    resolve_inside(base, p, allow_outside=outside_ok, entry=f"{name}: {where}")
                except DataError as exc:
                    escaping += exc.problems
            if escaping:
                problems += escaping
                continue
            duplicate = False
            for role, paths in (("image", images), ("label", labels)):
                for p in paths:
                    ident = (role, os.path.normcase(os.path.abspath(p)))
                    if ident in seen:
                        problems.append(f"{p}: listed more than once in {name} ({seen[ident]} and {where})")
                        duplicate = True
                    else:
                        seen[ident] = where
            if duplicate:
                continue
            problems += _entry_file_problems(images, labels, check_intensity, label_values, modality)
            if (i + 1) % 25 == 0:
                logger.info("  %s: %d/%d entries checked", key, i + 1, len(section))
    if problems:
        raise DataError(problems)
    logger.info("%s: all entries valid (%s)", name, ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check datalists (``*.json``), images and DICOM series folders; exit 1 on any problem."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.validation.checks",
        description="Check datalists (.json), images (NIfTI, NRRD, MetaImage) and DICOM series folders.",
    )
    parser.add_argument("paths", nargs="+", metavar="DATALIST_OR_IMAGE")
    parser.add_argument("--base-dir", default=None, help="folder datalist paths are relative to (default: its own)")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS), help="datalist sections to check")
    parser.add_argument("--no-label-required", action="store_true", help="accept entries without 'label'")
    parser.add_argument("--headers-only", action="store_true", help="skip reading voxel data (faster)")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        default=None,
        help="accept datalist paths outside --base-dir (checked only when --base-dir is given)",
    )
    parser.add_argument("--ndim", type=int, default=3, help="spatial dimensions expected of images (default 3)")
    parser.add_argument(
        "--label-values", type=int, nargs="+", default=None, help="the label values of the classes (e.g. 0 1 2)"
    )
    parser.add_argument("--modality", default=None, help="CT: check Hounsfield units; any: check images aren't blank")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    problems: list[str] = []
    for target in args.paths:
        if str(target).lower().endswith(".json"):
            try:
                counts = validate_datalist(
                    target,
                    base_dir=args.base_dir,
                    keys=args.keys,
                    label_required=not args.no_label_required,
                    check_intensity=not args.headers_only,
                    allow_outside_root=args.allow_outside_root,
                    label_values=args.label_values,
                    modality=args.modality,
                )
            except DataError as exc:
                problems += exc.problems
            else:
                print(f"ok {target}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        else:
            found = check_volume(
                target, expect_ndim=args.ndim, check_intensity=not args.headers_only, modality=args.modality
            )
            problems += found
            if not found:
                print(f"ok {target}")
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) found")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
