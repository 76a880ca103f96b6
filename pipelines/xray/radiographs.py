"""The Python behind the chest X-ray workflow (``bundles/lung/configs/*_xray.yaml``): 2D radiographs in PNG, JPEG,
TIFF or DICOM.

* reading: :class:`pipelines.xray.radiograph_reader.RadiographReader` (the configs' reader: any bit depth, DICOM
  LUTs, colour photographs and lateral views refused), :func:`to_grayscale` (a ``PILReader`` converter: RGB
  radiographs become one channel), :func:`list_xray_inputs` (what an inference run reads);
* the datalist: :func:`read_datalist_classes` (its ``"classes"``), :func:`class_weights` (for a class-weighted
  loss), :func:`check_radiograph` and :func:`validate_xray_datalist` (every problem, before any long run);
* the classifier: :class:`PrepareClassBatch` (the engines read the class index from ``"class"``, not the mask
  under ``"label"``), :class:`ClassificationResultsSaver` (CSV of probabilities, metrics JSON, confusion matrix
  and Grad-CAM overlays) and :func:`save_radiograph_gradcam_overlays`, both in
  :mod:`pipelines.xray.classifier_results` and importable from here.

The datalist (``data_manifests/chest_xray.py``) has the class names, sorted, under ``"classes"`` and sections
``training`` / ``validation`` / ``test`` of ``{"image": ..., "label": <lung mask>, "class": int, "class_name": str}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import load_decathlon_datalist
from monai.engines.utils import PrepareBatch
from PIL import Image

from pipelines.validation.checks import DataError, read_datalist_json
from pipelines.xray.radiograph_reader import (
    RADIOGRAPH_SUFFIXES,
    is_radiograph_file,
    radiograph_header_problems,
    read_radiograph,
)

# the classifier's results are re-exported: bundle configs name them from here
__all__ = [
    "RADIOGRAPH_SUFFIXES",
    "to_grayscale",
    "read_datalist_classes",
    "class_weights",
    "check_radiograph",
    "validate_xray_datalist",
    "list_xray_inputs",
    "xray_inference_inputs",
    "PrepareClassBatch",
]

logger = logging.getLogger(__name__)

# RADIOGRAPH_SUFFIXES (PNG, JPEG, TIFF, DICOM) lives in pipelines.xray.radiograph_reader and is re-exported here.
# PIL modes to_grayscale folds to one grey channel:
_COLOUR_MODES = ("RGB", "RGBA", "LA", "P", "CMYK", "YCbCr")
DATALIST_SECTIONS = ("training", "validation", "test")


def to_grayscale(image: Image.Image) -> Image.Image:
    """One grey channel from a PIL image: colour modes (RGB, RGBA, palette...) are converted with ITU-R 601-2 luma
    weights, which leaves a grey radiograph stored as RGB unchanged; grey modes (8 and 16 bit, float) are kept as
    they are, so 16-bit radiographs keep their depth.

    Use it as ``LoadImaged(..., reader="PILReader", converter=to_grayscale)``; the bundle reads with
    :class:`~pipelines.xray.radiograph_reader.RadiographReader` instead, which also reads DICOM and TIFF and
    refuses colour photographs.
    """
    return image.convert("L") if image.mode in _COLOUR_MODES else image


def read_datalist_classes(path: str | os.PathLike) -> list[str]:
    """The class names of a chest X-ray datalist: its ``"classes"`` list, index order (class ``k`` is ``[k]``).

    Raises:
        DataError: (a ``ValueError``) naming the file, when it is missing or not JSON, or when ``"classes"`` is
            absent, not a list of at least two distinct non-empty strings.
    """
    classes = read_datalist_json(path).get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise DataError(f"{path}: datalist needs a 'classes' list of at least two class names, got {classes!r:.80}")
    if not all(isinstance(name, str) and name.strip() for name in classes):
        raise DataError(f"{path}: 'classes' must hold non-empty strings, got {classes!r:.80}")
    if len(set(classes)) != len(classes):
        raise DataError(f"{path}: 'classes' lists a name twice: {classes}")
    return list(classes)


def class_weights(
    path: str | os.PathLike, num_classes: int, section: str = "training", key: str = "class"
) -> torch.Tensor:
    """Inverse-frequency class weights of a datalist section, for ``CrossEntropyLoss(weight=...)``.

    ``w_k = N / (K * n_k)``: 1 for every class of a balanced set; the real COVID-19 Radiography Database
    (10,192 normal, 6,012 lung opacity, 3,616 COVID, 1,345 viral pneumonia) gives about 0.52 / 0.88 / 1.47 / 3.94.

    Returns:
        float32 tensor of shape ``(num_classes,)``.

    Raises:
        DataError: naming the file, when the section is missing, an entry has no valid class index, or a class has
            no entry at all (its weight would be infinite).
    """
    data = read_datalist_json(path)
    entries = data.get(section)
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: datalist has no non-empty {section!r} section")
    counts = np.zeros(num_classes, dtype=np.int64)
    for i, entry in enumerate(entries):
        value = entry.get(key) if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
            raise DataError(f"{path}: {section}[{i}] has no class index in [0, {num_classes}) under {key!r}")
        counts[value] += 1
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise DataError(f"{path}: section {section!r} has no entry of class(es) {missing}; cannot weight them")
    weights = counts.sum() / (num_classes * counts.astype(np.float64))
    logger.info("class weights from %d %s entries of %s: %s", counts.sum(), section, path, np.round(weights, 3))
    return torch.as_tensor(weights, dtype=torch.float32)


def check_radiograph(
    path: str | os.PathLike, *, is_mask: bool = False, check_intensity: bool = True, allow_lateral: bool = False
) -> list[str]:
    """Problems that would stop the X-ray pipeline from using one PNG/JPEG/TIFF or DICOM file.

    Checks that the file exists and is not empty, then its header: a PIL grey or colour mode and no zero-sized
    side, or a DICOM header with pixel data, a radiograph's modality, one frame, a frontal view (see
    :mod:`pipelines.xray.radiograph_reader`). With ``check_intensity`` the file is decoded as the workflow reads it
    (:func:`~pipelines.xray.radiograph_reader.read_radiograph`): a truncated file, a colour photograph, a blank
    image, NaN or infinite pixels, and for a mask negative or non-integer values are found only then.

    ``allow_lateral`` accepts DICOM lateral views (the configs' ``allow_lateral_views``).

    Returns:
        the problems found, each a line starting with ``path``; empty when the file is usable.
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path}: file not found"]
    if path.stat().st_size == 0:
        return [f"{path}: file is empty (0 bytes)"]
    problems = radiograph_header_problems(path, is_mask=is_mask, allow_lateral=allow_lateral)
    if problems or not check_intensity:
        return problems
    try:
        read_radiograph(path, is_mask=is_mask, allow_lateral=allow_lateral)
    except DataError as error:
        return error.problems
    return []


def _entry_problems(
    name: str, where: str, entry: Any, base: Path, require: Sequence[str], classes: list[str] | None
) -> tuple[list[str], list[tuple[str, Path]]]:
    """Problems of one datalist entry (without reading files) and the files it names, as (role, path)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        return [f"{name}: {where} must be an object with an 'image' path, got {entry!r:.80}"], []
    problems = []
    files = [("image", base / entry["image"])]
    if "label" in entry and isinstance(entry["label"], str):
        files.append(("label", base / entry["label"]))
    elif "label" in require:
        problems.append(f"{name}: {where} ({entry['image']}) has no 'label' (lung mask path)")
    if "class" in entry or "class" in require:
        value = entry.get("class")
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name}: {where} ({entry['image']}) has no integer 'class', got {value!r:.40}")
        elif classes is not None and not 0 <= value < len(classes):
            problems.append(f"{name}: {where} ({entry['image']}) has class {value}, outside [0, {len(classes)})")
        elif classes is not None and "class_name" in entry and entry["class_name"] != classes[value]:
            problems.append(
                f"{name}: {where} ({entry['image']}) has class {value} = {classes[value]!r} but class_name "
                f"{entry['class_name']!r}"
            )
    return problems, files


def validate_xray_datalist(
    datalist: str | os.PathLike,
    *,
    base_dir: str | os.PathLike | None = None,
    keys: Sequence[str] = DATALIST_SECTIONS,
    require: Sequence[str] = ("label", "class"),
    check_intensity: bool = True,
    allow_lateral: bool = False,
) -> dict[str, int]:
    """Check a chest X-ray datalist and every file it lists, reporting all problems at once.

    Unlike :func:`pipelines.validation.checks.validate_datalist` (3D volumes, image and label on one grid), the image
    and
    its mask may differ in size: the database stores 299 px radiographs with 256 px masks, and both are resized
    to ``image_size``.

    Args:
        datalist: the JSON datalist.
        base_dir: folder relative paths start from (default: the datalist's folder).
        keys: sections to check.
        require: keys each entry must have: ``"label"`` (lung mask, for segmentation) and/or ``"class"`` (class
            index, for classification; then the datalist must have ``"classes"`` and each index be in range).
        check_intensity: decode every file (finds truncated files); ``False`` reads headers only.
        allow_lateral: accept DICOM lateral views.

    Returns:
        the number of entries per checked section.

    Raises:
        DataError: listing every problem, each naming the datalist or the file concerned.
    """
    data = read_datalist_json(datalist)
    name = str(datalist)
    base = Path(base_dir) if base_dir is not None else Path(datalist).parent
    problems: list[str] = []
    classes = None
    if "class" in require:
        try:
            classes = read_datalist_classes(datalist)
        except DataError as error:
            problems += error.problems
    counts: dict[str, int] = {}
    seen: dict[tuple[str, str], str] = {}
    for key in (keys,) if isinstance(keys, str) else keys:
        section = data.get(key)
        if not isinstance(section, list):
            problems.append(f"{name}: section {key!r} is missing or not a list (sections: {sorted(data)})")
            continue
        counts[key] = len(section)
        for i, entry in enumerate(section):
            where = f"{key}[{i}]"
            found, files = _entry_problems(name, where, entry, base, require, classes)
            problems += found
            for role, path in files:
                ident = (role, os.path.normcase(os.path.abspath(path)))
                if ident in seen:
                    problems.append(f"{path}: listed more than once in {name} ({seen[ident]} and {where})")
                    continue
                seen[ident] = where
                problems += check_radiograph(
                    path, is_mask=role == "label", check_intensity=check_intensity, allow_lateral=allow_lateral
                )
    if problems:
        raise DataError(problems)
    logger.info("%s: all entries valid (%s)", name, ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def list_xray_inputs(
    path: str | os.PathLike, section: str = "test", base_dir: str | os.PathLike | None = None
) -> list[dict[str, str]]:
    """``{"image": ...}`` items for inference from a radiograph file, a folder of them, or a datalist's section.

    A folder's radiographs are its :data:`RADIOGRAPH_SUFFIXES` files and its DICOM files of any name (recognised
    by their ``DICM`` preamble: ``IM0001``, ``1.2.840...``), in name order; hidden files and ``DICOMDIR`` are
    skipped.

    Raises:
        ValueError: naming ``path``, when it does not exist, is not a radiograph file, or holds none.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: inference input does not exist")
    if path.is_file() and path.suffix.lower() == ".json":
        if section not in read_datalist_json(path):
            raise ValueError(f"{path}: datalist has no {section!r} section")
        items = load_decathlon_datalist(str(path), True, section, str(base_dir) if base_dir is not None else None)
        return [{"image": item["image"]} for item in items]
    if path.is_file():
        if not is_radiograph_file(path):
            raise ValueError(f"{path}: not a radiograph file this workflow reads (expected {RADIOGRAPH_SUFFIXES})")
        return [{"image": str(path)}]
    items = [
        {"image": str(child)}
        for child in sorted(path.iterdir())
        if child.is_file() and not child.name.startswith(".") and is_radiograph_file(child)
    ]
    if not items:
        raise ValueError(f"{path}: folder holds no {'/'.join(RADIOGRAPH_SUFFIXES)} or DICOM file")
    return items


def xray_inference_inputs(
    input_path: str | os.PathLike,
    failures,
    base_dir: str | os.PathLike | None = None,
    section: str = "test",
    check_intensity: bool = True,
    allow_lateral: bool = False,
) -> list[dict[str, str]]:
    """The radiographs to process from ``input_path`` (see :func:`list_xray_inputs`), each checked first with
    :func:`check_radiograph`; the bad ones are recorded in ``failures`` (a
    :class:`pipelines.inference.robust_inference.FailureReport`) at the ``input check`` stage and left out.

    Raises:
        DataError: when ``input_path`` does not exist or holds no radiograph (nothing to do at all).
    """
    try:
        items = list_xray_inputs(input_path, section=section, base_dir=base_dir)
    except ValueError as err:
        raise DataError(str(err)) from err
    from pipelines.inference.robust_inference import checked_inputs

    return checked_inputs(
        items,
        lambda item: check_radiograph(item["image"], check_intensity=check_intensity, allow_lateral=allow_lateral),
        failures,
        "radiograph",
    )


class PrepareClassBatch(PrepareBatch):
    """``prepare_batch`` of MONAI engines for classification: ``(batch[image_key], batch[class_key])``.

    The datalist keeps the lung mask under ``"label"`` (the segmenter's target) and the class index under
    ``"class"``; MONAI's default reads ``"label"``. A batch without ``class_key`` (inference) gives no target.
    """

    def __init__(self, image_key: str = "image", class_key: str = "class") -> None:
        self.image_key = image_key
        self.class_key = class_key

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        target = batchdata.get(self.class_key)
        if target is None:
            return image, None
        return image, torch.as_tensor(target).long().to(device=device, non_blocking=non_blocking)
