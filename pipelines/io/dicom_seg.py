"""Write a label mask as a DICOM Segmentation (SEG) object that references the DICOM series it was predicted from.

PACS viewers show a SEG as an overlay on its source series; this module maps a NIfTI-style mask (RAS affine,
as MONAI's ITK reader loads a DICOM folder and as the bundles write their predictions) back onto the source
slices, one frame per source instance, row and column order as stored in the DICOM files::

    from pipelines.io.dicom_seg import write_dicom_seg
    write_dicom_seg("runs/liver/predictions/ct_seg.nii.gz", "dicom/ct", "ct_seg.dcm",
                    class_names=["background", "liver", "tumour"], anatomic_region="liver")

Each foreground class becomes one segment, coded with SNOMED CT from :data:`SEGMENT_CODES` (by class name).
The mapping is exact: the mask's voxel grid must be the series' own (same voxels, any axis order or flip);
a mask that was resampled, or belongs to another series, is refused with a ``ValueError``.

Anonymised exports often lack UIDs that a SEG references (present but empty): they are filled in on in-memory
copies, from the file meta header or generated from the series' content
(:func:`pipelines.io.dicom_source.complete_source_datasets`), with a warning. A source that no SEG can reference
raises :class:`pipelines.io.dicom_source.DicomSegSourceError`, which :class:`SaveDicomSeg` logs instead of failing
the case.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipelines.io.atomic import atomic_write
from pipelines.io.dicom_source import (
    LPS_FROM_RAS,
    DicomSegSourceError,
    complete_source_datasets,
    read_dicom_series,
    series_affine,
)
from pipelines.io.inputs import case_name, is_dicom_series_dir

__all__ = [
    "SegmentCode",
    "SEGMENT_CODES",
    "ANATOMIC_REGIONS",
    "mask_to_frames",
    "write_dicom_seg",
    "bundle_algorithm",
    "save_dicom_file",
    "SaveDicomSeg",
    "SaveDicomSegd",
]

logger = logging.getLogger(__name__)

# Largest position error (in voxels, summed along a slice's rows and columns) still taken for the same grid.
GRID_TOLERANCE = 0.25


@dataclass(frozen=True)
class SegmentCode:
    """What a segment is, in DICOM terms: Segmented Property Category and Type, and a display colour (RGB)."""

    category: Code
    type: Code
    color: tuple[int, int, int] = (128, 174, 128)
    abnormal: bool = False  # a lesion: the anatomic region of the bundle is recorded with it


_ANATOMY = codes.cid7150.AnatomicalStructure
_ABNORMAL = codes.cid7150.MorphologicallyAbnormalStructure

# Class names of the bundles (lower case) -> codes. Keys name what the bundles' class_names say.
SEGMENT_CODES: dict[str, SegmentCode] = {
    "liver": SegmentCode(_ANATOMY, codes.SCT.Liver, (221, 130, 101)),
    "lung": SegmentCode(_ANATOMY, codes.SCT.Lung, (197, 165, 145)),
    "brain": SegmentCode(_ANATOMY, codes.SCT.Brain, (250, 250, 225)),
    "tumour": SegmentCode(_ABNORMAL, codes.SCT.Neoplasm, (255, 255, 0), abnormal=True),
    "tumor": SegmentCode(_ABNORMAL, codes.SCT.Neoplasm, (255, 255, 0), abnormal=True),
    "lesion": SegmentCode(_ABNORMAL, codes.SCT.Lesion, (255, 0, 0), abnormal=True),
    "necrotic core": SegmentCode(_ABNORMAL, codes.SCT.Necrosis, (255, 0, 0), abnormal=True),
    "necrosis": SegmentCode(_ABNORMAL, codes.SCT.Necrosis, (255, 0, 0), abnormal=True),
    "oedema": SegmentCode(_ABNORMAL, codes.SCT.Edema, (0, 255, 0), abnormal=True),
    "edema": SegmentCode(_ABNORMAL, codes.SCT.Edema, (0, 255, 0), abnormal=True),
    # SNOMED CT has no "enhancing" neoplasm; the segment label says which part of the tumour it is
    "enhancing tumour": SegmentCode(_ABNORMAL, codes.SCT.Neoplasm, (0, 0, 255), abnormal=True),
    "enhancing tumor": SegmentCode(_ABNORMAL, codes.SCT.Neoplasm, (0, 0, 255), abnormal=True),
}
# For a class name not listed: generic "tissue" (a warning says so); pass segment_codes to name it properly.
FALLBACK_CODE = SegmentCode(codes.cid7150.Tissue, codes.SCT.Tissue)
ANATOMIC_REGIONS: dict[str, Code] = {"liver": codes.SCT.Liver, "lung": codes.SCT.Lung, "brain": codes.SCT.Brain}


def _as_volume(mask: Any, affine: Any, datasets: Sequence[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray, str]:
    """``mask`` as a 3D integer array, its RAS affine, and a name for messages."""
    name = "mask"
    if isinstance(mask, (str, os.PathLike)):
        name = str(mask)
        if not str(mask).lower().endswith((".nii", ".nii.gz")):
            raise ValueError(f"{mask}: expected a NIfTI mask (.nii or .nii.gz)")
        try:
            mask = nib.load(mask)
        except (OSError, nib.filebasedimages.ImageFileError) as err:
            raise ValueError(f"{name}: cannot read the mask ({err})") from None
    if hasattr(mask, "dataobj") and hasattr(mask, "affine"):  # a nibabel image
        array, affine = np.asanyarray(mask.dataobj), mask.affine
    elif isinstance(mask, MetaTensor):
        array = mask.detach().cpu().numpy()
        if affine is None:
            affine = mask.affine.detach().cpu().numpy()
            if str(mask.meta.get("space", "RAS")).upper() == "LPS":
                affine = LPS_FROM_RAS @ affine
    else:
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if affine is None:
        affine = series_affine(datasets)
    if array.ndim == 4 and array.shape[0] == 1:  # channel first (MONAI)
        array = array[0]
    elif array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a 3D mask, got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name}: the mask holds non-integer values (probabilities?); expected a label map")
        array = array.astype(np.int64)
    return array, np.asarray(affine, dtype=float).reshape(4, 4), name


def mask_to_frames(
    mask: np.ndarray, affine: np.ndarray, datasets: Sequence[pydicom.Dataset], name: str = "mask"
) -> np.ndarray:
    """Sample a 3D ``mask`` with RAS ``affine`` at the pixels of each source slice: ``(slices, rows, columns)``.

    Frame ``n``, pixel ``(r, c)`` is the mask voxel at the patient position of row ``r``, column ``c`` of
    ``datasets[n]`` (DICOM's ``ImagePositionPatient + c * column spacing * row direction + r * row spacing *
    column direction``). No interpolation: every pixel must fall on a voxel centre.

    Raises:
        ValueError: naming ``name`` and the slice's file, when the grids differ or the mask is larger than the
            series.
    """
    vox_from_lps = np.linalg.inv(affine) @ LPS_FROM_RAS
    frames = []
    for ds in datasets:
        where = Path(getattr(ds, "filename", "") or "?").name
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        rows, cols = int(ds.Rows), int(ds.Columns)
        origin = (vox_from_lps @ np.append(np.asarray(ds.ImagePositionPatient, dtype=float), 1.0))[:3]
        step_c = vox_from_lps[:3, :3] @ (iop[:3] * col_spacing)  # one column to the right
        step_r = vox_from_lps[:3, :3] @ (iop[3:] * row_spacing)  # one row down
        ints = [np.round(v) for v in (origin, step_r, step_c)]
        error = (
            np.abs(origin - ints[0]).max()
            + (rows - 1) * np.abs(step_r - ints[1]).max()
            + (cols - 1) * np.abs(step_c - ints[2]).max()
        )
        units = all(np.abs(v).sum() == 1 for v in ints[1:])
        if error > GRID_TOLERANCE or not units:
            raise ValueError(
                f"{name}: its voxel grid (affine {np.round(affine, 3).tolist()}) does not match the pixels of DICOM "
                f"slice {where}; was the mask resampled, or predicted from another series?"
            )
        r, c = np.arange(rows)[:, None], np.arange(cols)[None, :]
        index = [int(o) + int(sr) * r + int(sc) * c for o, sr, sc in zip(*ints, strict=True)]
        outside = [i.min() < 0 or i.max() >= n for i, n in zip(index, mask.shape, strict=True)]
        if any(outside):
            raise ValueError(
                f"{name}: mask of shape {tuple(mask.shape)} does not cover DICOM slice {where} "
                f"(voxel {[int(v) for v in ints[0]]} for its first pixel)"
            )
        frames.append(mask[index[0], index[1], index[2]])
    stacked = np.stack(frames)
    if stacked.size != mask.size:
        raise ValueError(
            f"{name}: mask of shape {tuple(mask.shape)} has {mask.size} voxels but the series has "
            f"{len(datasets)} slices of {stacked.shape[1]}x{stacked.shape[2]} pixels"
        )
    return stacked


def _segment_code(class_name: str, segment_codes: Mapping[str, SegmentCode] | None) -> SegmentCode:
    key = class_name.strip().lower()
    for table in (segment_codes or {}, SEGMENT_CODES):
        lowered = {k.lower(): v for k, v in table.items()}
        if key in lowered:
            return lowered[key]
    logger.warning(
        "DICOM SEG: no SNOMED CT code for class %r; coded as generic tissue (pass segment_codes to name it)",
        class_name,
    )
    return FALLBACK_CODE


def _region(anatomic_region: str | Code | None) -> Code | None:
    if anatomic_region is None or isinstance(anatomic_region, Code):
        return anatomic_region
    key = anatomic_region.strip().lower()
    if key not in ANATOMIC_REGIONS:
        raise ValueError(
            f"anatomic_region must be one of {sorted(ANATOMIC_REGIONS)} or a Code, got {anatomic_region!r}"
        )
    return ANATOMIC_REGIONS[key]


def _segmentation_type(value: str) -> str:
    text = str(value).strip().upper()
    if text not in ("BINARY", "LABELMAP"):
        raise ValueError(f"segmentation_type must be BINARY or LABELMAP, got {value!r}")
    if text not in {member.value for member in hd.seg.SegmentationTypeValues}:
        raise ValueError(
            f"segmentation_type {text} needs highdicom 0.23 or later (this environment has {hd.__version__}, as the "
            "MONAI Label environment pins it for pydicom 2); use BINARY"
        )
    return text


def write_dicom_seg(
    mask: Any,
    dicom_series_dir: str | os.PathLike,
    output_path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    label_values: Sequence[int] | None = None,
    affine: Any = None,
    anatomic_region: str | Code | None = None,
    algorithm_name: str = "radcascade",
    algorithm_version: str = "0",
    segment_codes: Mapping[str, SegmentCode] | None = None,
    segmentation_type: str = "BINARY",
    series_number: int = 1000,
    series_description: str | None = None,
    content_description: str | None = None,
) -> Path:
    """Write ``mask``, predicted from the DICOM series in ``dicom_series_dir``, as a DICOM SEG file (atomically).

    Args:
        mask: the label map: a NIfTI file path, a nibabel image, a ``MetaTensor`` (its affine), or an array
            (``(X, Y, Z)`` or channel-first ``(1, X, Y, Z)``) with ``affine``, or without one in the layout that
            MONAI's ``LoadImage`` gives the series (:func:`series_affine`).
        dicom_series_dir: the folder of the source series (one file per slice).
        output_path: the ``.dcm`` file to write.
        class_names: the name of each class (index 0 is background and gets no segment).
        label_values: the mask value of each class (default ``0, 1, 2, ...``; BraTS: ``0, 1, 2, 4``).
        affine: RAS affine of an array ``mask`` (default: the mask's own, else the series').
        anatomic_region: where lesion segments lie (``"liver"``, ``"lung"``, ``"brain"`` or a ``Code``).
        algorithm_name, algorithm_version: the model, recorded as the segments' algorithm identification and as
            the SEG's manufacturer model name and software version.
        segment_codes: codes for class names that :data:`SEGMENT_CODES` lacks (or to replace its codes).
        segmentation_type: ``"BINARY"`` (Segmentation Storage, which PACS viewers read) or ``"LABELMAP"``
            (the 2024 Label Map Segmentation Storage, smaller, read by fewer viewers so far).
        series_number, series_description, content_description: of the new SEG series.

    Returns:
        ``output_path``.

    Raises:
        DicomSegSourceError: a ``ValueError`` naming the folder or file, when the series cannot be read or no SEG
            can reference it (see :func:`read_dicom_series`, :func:`complete_source_datasets`).
        ValueError: naming the file, when the mask does not lie on the series' grid, or the mask holds values that
            ``label_values`` does not name.
    """
    if len(class_names) < 2:
        raise ValueError(f"class_names needs background and at least one class, got {list(class_names)}")
    segmentation_type = _segmentation_type(segmentation_type)
    values = list(range(len(class_names))) if label_values is None else [int(v) for v in label_values]
    if len(values) != len(class_names):
        raise ValueError(f"label_values {values} and class_names {list(class_names)} differ in length")
    datasets = complete_source_datasets(read_dicom_series(dicom_series_dir), dicom_series_dir)
    volume, affine, name = _as_volume(mask, affine, datasets)
    frames = mask_to_frames(volume, affine, datasets, name)

    unknown = sorted(set(np.unique(frames).tolist()) - set(values))
    if unknown:
        raise ValueError(f"{name}: the mask holds label value(s) {unknown} that label_values {values} does not name")
    segments = np.zeros(frames.shape, dtype=np.uint8 if len(values) < 256 else np.uint16)
    for number, value in enumerate(values[1:], start=1):
        segments[frames == value] = number

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    region = _region(anatomic_region)
    descriptions = []
    for number, class_name in enumerate(class_names[1:], start=1):
        code = _segment_code(class_name, segment_codes)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(class_name)[:64],
            segmented_property_category=code.category,
            segmented_property_type=code.type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[region] if region is not None and code.abnormal else None,
        )
        # Recommended Display CIELab Value, as highdicom 0.23+ writes it from display_color (0.22 has no argument)
        description.RecommendedDisplayCIELabValue = list(_display_color(code.color).value)
        descriptions.append(description)
    seg = _segmentation(
        datasets,
        pixel_array=segments,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="radcascade",
        manufacturer_model_name=algorithm_name[:64],
        software_versions=str(algorithm_version)[:64],
        device_serial_number="0",
        series_description=(series_description or f"{algorithm_name} segmentation")[:64],
        content_description=content_description[:64] if content_description else None,
        content_label="SEGMENTATION",
    )
    source = datasets[0]
    logger.debug("DICOM SEG of %s: %d frame(s) from series %s", name, seg.NumberOfFrames, source.SeriesInstanceUID)
    return atomic_write(output_path, lambda tmp: save_dicom_file(seg, tmp))


def _segmentation(datasets: Sequence[pydicom.Dataset], **kwargs: Any) -> hd.seg.Segmentation:
    """``highdicom.seg.Segmentation`` of the source slices ``datasets``; ``kwargs`` are its other arguments.

    Raises:
        DicomSegSourceError: naming the first slice's file and its SOP class, when highdicom cannot build a SEG
            that references these slices (a SOP class it does not know, an attribute it needs).
    """
    try:
        return hd.seg.Segmentation(source_images=datasets, **kwargs)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        first = datasets[0]
        identity = f"SOPClassUID {first.get('SOPClassUID', '')}, Modality {first.get('Modality', '')}"
        source = getattr(first, "filename", None) or "?"
        raise DicomSegSourceError(
            f"{source}: highdicom cannot make a DICOM SEG that references this series ({identity}): "
            f"{type(err).__name__}: {err}"
        ) from err


def _display_color(rgb: Sequence[int]) -> hd.color.CIELabColor:
    """A segment's display colour from RGB 0-255, as CIELab. ``CIELabColor.from_rgb`` exists from highdicom 0.23
    on; the MONAI Label environment has 0.22 (its pydicom < 3 rules out later ones), so convert here."""
    from skimage.color import rgb2lab

    lightness, a_star, b_star = rgb2lab(np.asarray(rgb, dtype=np.float64) / 255.0)
    return hd.color.CIELabColor(
        float(np.clip(lightness, 0, 100)), float(np.clip(a_star, -128, 127)), float(np.clip(b_star, -128, 127))
    )


def save_dicom_file(dataset: pydicom.Dataset, path: str | os.PathLike) -> None:
    """Save with the DICOM file meta header (pydicom 3's ``enforce_file_format``; pydicom 2's
    ``write_like_original=False``, in the MONAI Label environment)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.save_as(path, write_like_original=False)


def bundle_algorithm(metadata_file: str | os.PathLike) -> dict[str, str]:
    """``name``, ``version`` and ``intended_use`` of a bundle, from its ``metadata.json``.

    Raises:
        ValueError: naming the file, when it cannot be read or lacks ``name`` or ``version``.
    """
    try:
        with open(metadata_file, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{metadata_file}: cannot read the bundle metadata ({err})") from None
    missing = [key for key in ("name", "version") if not isinstance(meta, dict) or not meta.get(key)]
    if missing:
        raise ValueError(f"{metadata_file}: bundle metadata lacks {missing}")
    return {"name": str(meta["name"]), "version": str(meta["version"]), "intended_use": meta.get("intended_use")}


class SaveDicomSeg(Transform):
    """Write a prediction as ``<output_dir>/<case>_<output_postfix>.dcm`` when its source is a DICOM series folder.

    The source is the prediction's ``filename_or_obj`` metadata (the input folder, kept by ``ResampleToSourced``) unless
    given. Any other source (a NIfTI file): a warning, and nothing is written. A source series that no SEG can
    reference (:class:`DicomSegSourceError`: several series in the folder, a slice of unknown SOP class): a warning
    naming the file and what it lacks, and nothing is written; the case goes on. A mask that is not on the series'
    grid, or holds unknown label values, still raises. The image is returned unchanged.

    Args:
        output_dir: folder of the SEG files.
        class_names, label_values, anatomic_region, segmentation_type: see :func:`write_dicom_seg`.
        metadata_file: the bundle's ``metadata.json``: its name and version identify the algorithm.
        output_postfix: appended to the case name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        label_values: Sequence[int] | None = None,
        metadata_file: str | os.PathLike | None = None,
        anatomic_region: str | None = None,
        segmentation_type: str = "BINARY",
        output_postfix: str = "seg",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.label_values = label_values
        meta = bundle_algorithm(metadata_file) if metadata_file is not None else {}
        self.algorithm_name = meta.get("name", "radcascade")
        self.algorithm_version = meta.get("version", "0")
        self.content_description = meta.get("intended_use")
        self.anatomic_region = _region(anatomic_region)
        self.segmentation_type = _segmentation_type(segmentation_type)
        self.output_postfix = output_postfix

    def __call__(self, img: torch.Tensor, source: str | os.PathLike | None = None) -> torch.Tensor:
        if source is None and isinstance(img, MetaTensor):
            source = img.meta.get("filename_or_obj")
        if not isinstance(source, (str, os.PathLike)) or not is_dicom_series_dir(source):
            logger.warning("DICOM SEG needs a DICOM series input; %s is not one: wrote no .dcm for it", source)
            return img
        path = self.output_dir / f"{case_name(source)}_{self.output_postfix}.dcm"
        try:
            write_dicom_seg(
                img,
                source,
                path,
                self.class_names,
                label_values=self.label_values,
                anatomic_region=self.anatomic_region,
                algorithm_name=self.algorithm_name,
                algorithm_version=self.algorithm_version,
                segmentation_type=self.segmentation_type,
                content_description=self.content_description,
            )
        except DicomSegSourceError as err:
            logger.warning("DICOM SEG of %s: %s; wrote no .dcm for this case, its other outputs stand", source, err)
            return img
        logger.info("writing: %s", path)
        return img


class SaveDicomSegd(MapTransform):
    """Dictionary version of :class:`SaveDicomSeg`: writes the DICOM SEG of each of ``keys`` (a prediction whose
    ``filename_or_obj`` is its input); the data pass through unchanged. Arguments: see :class:`SaveDicomSeg`."""

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        label_values: Sequence[int] | None = None,
        metadata_file: str | os.PathLike | None = None,
        anatomic_region: str | None = None,
        segmentation_type: str = "BINARY",
        output_postfix: str = "seg",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveDicomSeg(
            output_dir, class_names, label_values, metadata_file, anatomic_region, segmentation_type, output_postfix
        )

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            self.saver(d[key])
        return d
