"""Helpers for the datalist builder tests: tiny NIfTI, TIFF and PNG files, and checks every builder shares."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SECTIONS = ("training", "validation", "test")
SHAPE = (16, 16, 8)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI (``.nii`` or ``.nii.gz`` from the name), creating folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def write_image(path: Path, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> Path:
    """A random int16 CT-like volume."""
    rng = np.random.default_rng(seed)
    return write_nifti(path, rng.integers(-100, 200, size=shape, dtype=np.int16))


def write_label(path: Path, positive: Iterable[int], value: int = 1, shape: tuple[int, ...] = SHAPE) -> Path:
    """A uint8 label with a small blob of ``value`` in each slice (last axis) listed in ``positive``."""
    data = np.zeros(shape, dtype=np.uint8)
    for z in positive:
        data[4:8, 5:9, z] = value
    return write_nifti(path, data)


def write_tif(path: Path, data: np.ndarray) -> Path:
    """Save a uint8 array (H, W) or (H, W, 3) as TIFF with PIL, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(data)).save(path, format="TIFF")
    return path


def write_png(path: Path, data: np.ndarray) -> Path:
    """Save a uint8 array (H, W) or (H, W, 3) as PNG with PIL, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(data)).save(path, format="PNG")
    return path


def patients_by_section(datalist: Mapping, patient_of=lambda e: e["patient"]) -> dict[str, set]:
    """The patients of each section."""
    return {k: {patient_of(e) for e in datalist[k]} for k in SECTIONS}


def assert_patient_level(datalist: Mapping, patient_of=lambda e: e["patient"]) -> None:
    """No patient is in two sections."""
    by_section = patients_by_section(datalist, patient_of)
    for i, a in enumerate(SECTIONS):
        for b in SECTIONS[i + 1 :]:
            assert not by_section[a] & by_section[b], f"patients in {a} and {b}: {by_section[a] & by_section[b]}"


def assert_written_and_resolvable(out: Path, written: Mapping) -> None:
    """The file holds ``written``; its relative paths resolve with ``monai.data.load_decathlon_datalist``."""
    from monai.data import load_decathlon_datalist

    on_disk = json.loads(Path(out).read_text())
    assert on_disk == written
    assert not [p for p in Path(out).parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    for section in SECTIONS:
        if not on_disk[section]:
            continue
        for item in on_disk[section]:
            paths = item["image"] if isinstance(item["image"], list) else [item["image"]]
            assert not any(os.path.isabs(p) for p in paths)
        loaded = load_decathlon_datalist(out, is_segmentation=True, data_list_key=section)
        assert len(loaded) == len(on_disk[section])
        for item in loaded:
            paths = item["image"] if isinstance(item["image"], list) else [item["image"]]
            assert paths and all(os.path.isfile(p) for p in paths)
            if "label" in item:
                assert os.path.isfile(item["label"])
