"""Shared pieces of the slice transforms (:mod:`transforms.slices`, :mod:`transforms.slice_samples`): the keys
they write, argument checks that name the source file, and the stacking of 2.5-D slices."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.utils import convert_to_tensor

from pipelines.validation.errors import DataError

__all__ = [
    "INDEX_KEY",
    "VOLUME_KEY",
    "SPATIAL_DIMS",
    "source_name",
    "filename",
    "check_axis",
    "check_context",
    "check_slice_volume",
    "as_indices",
    "as_slice_labels",
    "stack_slices",
    "with_meta",
]

logger = logging.getLogger(__name__)

INDEX_KEY = "slice_index"
"""Key of a slice sample's index along the slice axis, in the dictionaries of :class:`SliceSamplesd`."""
VOLUME_KEY = "volume"
"""Key of the source volume's file name ("" when unknown), in the dictionaries of :class:`SliceSamplesd`."""

SPATIAL_DIMS = 3


def source_name(img: NdarrayOrTensor, key: Hashable | None = None) -> str:
    """Best name for an array in an error: its file (MetaTensor metadata), else the dictionary key."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return f"item {key!r}" if key is not None else "input array"


def filename(img: NdarrayOrTensor) -> str:
    """The source file of ``img`` ("" when it is not a MetaTensor or has none)."""
    name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
    return str(name) if name else ""


def check_axis(spatial_axis: int) -> int:
    """Validate a spatial axis in ``[-3, 2]`` and return the array dimension it names (channel is dimension 0)."""
    if not isinstance(spatial_axis, (int, np.integer)) or not -SPATIAL_DIMS <= spatial_axis < SPATIAL_DIMS:
        raise ValueError(f"spatial_axis must be an int in [-3, 2] (0: X, 1: Y, 2 or -1: Z), got {spatial_axis!r}")
    return int(spatial_axis) % SPATIAL_DIMS + 1


def check_context(context: int) -> int:
    if not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be a non-negative int (slices on each side), got {context!r}")
    return int(context)


def check_slice_volume(img: NdarrayOrTensor, what: str = "volume", channels: int | None = None) -> None:
    """Raise :class:`DataError` unless ``img`` is channel first with three non-empty spatial dimensions."""
    shape = tuple(img.shape)
    if len(shape) != 1 + SPATIAL_DIMS or 0 in shape or (channels is not None and shape[0] != channels):
        layout = f"({channels}, X, Y, Z)" if channels is not None else "(C, X, Y, Z)"
        raise DataError(f"{source_name(img)}: expected a channel-first {what} {layout}, got shape {shape}")


def as_indices(indices: Sequence[int] | NdarrayOrTensor | None, n_slices: int, img: NdarrayOrTensor) -> torch.Tensor:
    """Slice indices as a 1-D int64 tensor, all of them when ``indices`` is None; DataError when out of range."""
    if indices is None:
        return torch.arange(n_slices)
    idx = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)).reshape(-1)
    if idx.numel() and (idx.is_floating_point() or idx.dtype == torch.bool):
        raise ValueError(f"slice indices must be integers, got dtype {idx.dtype}")
    idx = idx.long()
    bad = idx[(idx < 0) | (idx >= n_slices)]
    if bad.numel():
        raise DataError(
            f"{source_name(img)}: slice indices {bad.tolist()} out of range for {n_slices} slices (0..{n_slices - 1})"
        )
    return idx


def as_slice_labels(labels: Sequence[int] | NdarrayOrTensor, n_slices: int, name: str) -> torch.Tensor:
    """Per-slice labels as a 1-D int64 CPU tensor of length ``n_slices``; DataError otherwise."""
    values = convert_to_tensor(labels, track_meta=False)
    if values.ndim != 1 or values.shape[0] != n_slices:
        raise DataError(f"{name}: expected {n_slices} slice labels (1-D), got shape {tuple(values.shape)}")
    return values.detach().cpu().long()


def stack_slices(vol: torch.Tensor, dim: int, indices: torch.Tensor, context: int) -> torch.Tensor:
    """Samples ``(N, C * (2 * context + 1), ...)`` of ``vol`` at ``indices`` along ``dim``, edges replicated.

    Channel ``k`` of a sample is channel ``k % C`` of the slice at offset ``k // C - context``.
    """
    n_slices = vol.shape[dim]
    moved = vol.movedim(dim, 0)  # (Z, C, A, B)
    offsets = torch.arange(-context, context + 1)
    neighbours = (indices[:, None] + offsets[None, :]).clamp_(0, n_slices - 1).to(moved.device)
    stacked = moved[neighbours]  # (N, 2 * context + 1, C, A, B)
    return stacked.reshape(indices.shape[0], (2 * context + 1) * moved.shape[1], *moved.shape[2:])


def with_meta(out: torch.Tensor, img: NdarrayOrTensor, **extra) -> torch.Tensor:
    """``out`` as a MetaTensor holding only the source file name (and ``extra``) when ``img`` is a MetaTensor."""
    if not (isinstance(img, MetaTensor) and get_track_meta()):
        return out
    meta = {"filename_or_obj": img.meta["filename_or_obj"]} if img.meta.get("filename_or_obj") else {}
    return MetaTensor(out, meta={**meta, **extra})
