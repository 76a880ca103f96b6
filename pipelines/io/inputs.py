"""Find the images an inference run should read: a file, a folder of files, DICOM series folders or a datalist.

Multi-sequence MRI (one file per sequence, as BraTS distributes it) is read as one multi-channel image per
patient folder when the bundle names its sequences' file suffixes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

__all__ = ["IMAGE_SUFFIXES", "case_name", "is_dicom_series_dir", "list_inference_inputs"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
# 2D images: stripped from case names too, never listed as volumes
_NAME_SUFFIXES = IMAGE_SUFFIXES + (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def case_name(path: str | os.PathLike) -> str:
    """A case's name: the base name of its file or DICOM folder without an image suffix (``ct_7.nii.gz``: ``ct_7``)."""
    base = os.path.basename(str(path).rstrip("/"))
    for suffix in _NAME_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def is_dicom_series_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding DICOM files (``*.dcm`` or files with the ``DICM`` preamble)."""
    path = Path(path)
    if not path.is_dir():
        return False
    for child in sorted(path.iterdir()):
        if not child.is_file():
            continue
        if child.suffix.lower() == ".dcm":
            return True
        with open(child, "rb") as f:
            head = f.read(132)
        if len(head) == 132 and head[128:] == b"DICM":
            return True
    return False


def _sequence_files(
    folder: Path, sequences: Sequence[str], allow_missing: bool = False
) -> tuple[list[str], list[str]] | None:
    """The files of ``folder`` named ``<case>_<sequence>`` / ``<case>-<sequence>`` (any image suffix), one per
    sequence found, in the order of ``sequences``, with the sequences they are; None when the folder holds none.

    Raises:
        ValueError: naming the folder, when a sequence is there twice, or when some sequences are missing and
            ``allow_missing`` is False.
    """
    files = [child for child in sorted(folder.iterdir()) if _is_image_file(child)]
    found: dict[str, list[Path]] = {seq: [] for seq in sequences}
    for child in files:
        name = case_name(child).lower()
        for seq in sequences:
            if name.endswith((f"_{seq.lower()}", f"-{seq.lower()}")):
                found[seq].append(child)
    if not any(found.values()):
        return None
    missing = [seq for seq, hits in found.items() if not hits]
    if missing and not allow_missing:
        raise ValueError(f"{folder}: no file for sequence(s) {missing} (expected <case>_<sequence>.nii.gz files)")
    twice = {seq: [p.name for p in hits] for seq, hits in found.items() if len(hits) > 1}
    if twice:
        raise ValueError(f"{folder}: more than one file per sequence: {twice}")
    present = [seq for seq in sequences if found[seq]]
    return [str(found[seq][0]) for seq in present], present


def list_inference_inputs(
    path: str | os.PathLike,
    section: str = "test",
    base_dir: str | os.PathLike | None = None,
    sequences: Sequence[str] | None = None,
    allow_missing_sequences: bool = False,
) -> list[dict[str, str | list[str]]]:
    """List ``{"image": ...}`` items for inference from ``path``.

    ``path`` may be an image file (NIfTI, NRRD, MetaImage), a DICOM series folder, a folder of image files and/or
    DICOM series folders, or a datalist JSON (its ``section`` list, relative paths resolved against ``base_dir``,
    or the JSON's folder when ``base_dir`` is None, as ``load_decathlon_datalist`` does).

    With ``sequences`` (file-name suffixes such as ``["flair", "t1", "t1ce", "t2"]``), a folder holding
    ``<case>_flair.nii.gz``, ``<case>_t1.nii.gz``... is one patient: one item whose ``image`` lists its files in
    the order of ``sequences`` (a ``_seg`` file beside them is ignored), and whose ``sequences`` names the suffixes
    found. With ``allow_missing_sequences``, a folder with only some of them (FLAIR alone) is a patient too; its
    missing sequences become zero channels when loaded (:class:`transforms.FillMissingSequencesd`). A folder of such
    patient folders gives one item per patient. A datalist entry keeps its ``sequences`` when it has one.

    Raises:
        ValueError: when ``path`` does not exist or holds no image, or a patient folder lacks a sequence, naming it.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: inference input does not exist")
    if sequences and path.is_dir():
        patient = _sequence_files(path, sequences, allow_missing_sequences)
        if patient is not None:
            return [{"image": patient[0], "sequences": patient[1]}]
        items = [
            {"image": found[0], "sequences": found[1]}
            for child in sorted(path.iterdir())
            if child.is_dir() and (found := _sequence_files(child, sequences, allow_missing_sequences)) is not None
        ]
        if not items:
            raise ValueError(f"{path}: no patient folder with <case>_<sequence> files for sequences {list(sequences)}")
        return items
    if path.is_file() and path.suffix.lower() == ".json":
        with open(path) as f:
            sections = json.load(f)
        if section not in sections:
            raise ValueError(f"{path}: datalist has no {section!r} section (it has {sorted(sections)})")
        items = load_decathlon_datalist(str(path), True, section, str(base_dir) if base_dir is not None else None)
        return [{k: item[k] for k in ("image", "sequences") if k in item} for item in items]
    if path.is_file():
        if not _is_image_file(path):
            raise ValueError(f"{path}: not an image file this pipeline reads (expected one of {IMAGE_SUFFIXES})")
        return [{"image": str(path)}]
    if is_dicom_series_dir(path):
        return [{"image": str(path)}]
    items = []
    for child in sorted(path.iterdir()):
        if _is_image_file(child) or is_dicom_series_dir(child):
            items.append({"image": str(child)})
    if not items:
        raise ValueError(f"{path}: folder holds no NIfTI/NRRD/MetaImage file and no DICOM series")
    return items
