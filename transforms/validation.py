"""Transforms that check a loaded volume and fail with an error naming the file, before any long work.

They return their input unchanged, so they can sit right after ``LoadImaged`` in any pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import intensity_problems, same_grid

__all__ = ["CheckVolume", "CheckVolumed"]


def _source_name(img: NdarrayOrTensor, key: Hashable | None = None) -> str:
    """Best name for an array in an error: its file (MetaTensor metadata), else the dictionary key."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return f"item {key!r}" if key is not None else "input array"


class CheckVolume(Transform):
    """Check a channel-first volume: its number of spatial dimensions, non-empty extent and finite values.

    Args:
        spatial_dims: expected number of spatial dimensions (3 for a CT volume, 2 for a radiograph).
        value_range: optional ``(low, high)`` outside which any voxel is an error (for example HU in CT).
        allow_non_finite: accept NaN and infinite voxels.
        modality: check that the intensities fit the modality
            (:func:`pipelines.validation.volume_checks.intensity_problems`):
            ``"CT"``: Hounsfield units (air near -1000, body within about [-1100, 4000]); any: not constant. Place
            it before any intensity scaling. None skips this check.

    Raises:
        DataError: naming the file (from the ``MetaTensor`` metadata) and every problem found.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        spatial_dims: int = 3,
        value_range: Sequence[float] | None = None,
        allow_non_finite: bool = False,
        modality: str | None = None,
    ) -> None:
        self.spatial_dims = spatial_dims
        self.value_range = tuple(value_range) if value_range is not None else None
        self.allow_non_finite = allow_non_finite
        self.modality = modality

    def problems(self, img: NdarrayOrTensor) -> list[str]:
        """Every problem of ``img`` as a short phrase (empty when it passes)."""
        found = []
        spatial_shape = tuple(img.shape[1:])
        if len(spatial_shape) != self.spatial_dims:
            found.append(
                f"expected {self.spatial_dims} spatial dimensions (channel first), got shape {tuple(img.shape)}"
            )
        if any(s == 0 for s in img.shape):
            found.append(f"zero-sized dimension in shape {tuple(img.shape)}")
            return found
        values = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        if not self.allow_non_finite:
            n_bad = int((~torch.isfinite(values)).sum()) if values.is_floating_point() else 0
            if n_bad:
                found.append(f"{n_bad} NaN or infinite voxel(s)")
        if self.value_range is not None:
            finite = values[torch.isfinite(values)] if values.is_floating_point() else values
            if finite.numel():
                low, high = float(finite.min()), float(finite.max())
                if low < self.value_range[0] or high > self.value_range[1]:
                    found.append(
                        f"intensities span [{low:g}, {high:g}], outside the expected range {list(self.value_range)}"
                    )
        if self.modality is not None:
            found += intensity_problems(values.detach().cpu().numpy(), self.modality)
        return found

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        found = self.problems(img)
        if found:
            raise DataError([f"{_source_name(img)}: {p}" for p in found])
        return img


class CheckVolumed(MapTransform):
    """Dictionary twin of :class:`CheckVolume`, which also checks that every key shares the geometry of ``ref_key``.

    Args:
        keys: keys of the volumes to check.
        spatial_dims: expected number of spatial dimensions.
        value_range: per-key ``(low, high)`` ranges, or one range for all keys, or None.
        allow_non_finite: accept NaN and infinite voxels.
        modality: per-key modalities (``{"image": "CT"}``: labels have none), or one for all keys, or None; see
            :class:`CheckVolume`.
        ref_key: key whose spatial shape and affine the other keys must match (image and label on one grid).
        atol: tolerance on the affine comparison, in mm.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = CheckVolume.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int = 3,
        value_range: Sequence[float] | Mapping[Hashable, Sequence[float]] | None = None,
        allow_non_finite: bool = False,
        ref_key: Hashable | None = None,
        atol: float = 1e-3,
        allow_missing_keys: bool = False,
        modality: str | Mapping[Hashable, str] | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        ranges = value_range if isinstance(value_range, Mapping) else {key: value_range for key in self.keys}
        modalities = modality if isinstance(modality, Mapping) else {key: modality for key in self.keys}
        self.checkers = {
            key: CheckVolume(spatial_dims, ranges.get(key), allow_non_finite, modalities.get(key)) for key in self.keys
        }
        self.ref_key = ref_key
        self.atol = atol

    def _geometry_problems(self, ref: NdarrayOrTensor, img: NdarrayOrTensor) -> list[str]:
        found = []
        if isinstance(ref, MetaTensor) and isinstance(img, MetaTensor):
            ref_affine, img_affine = ref.affine.double().numpy(), img.affine.double().numpy()
            if same_grid(ref_affine, tuple(ref.shape[1:]), img_affine, tuple(img.shape[1:]), self.atol):
                return found  # the same voxel centres, axes stored in another order: Orientationd aligns them
        if tuple(ref.shape[1:]) != tuple(img.shape[1:]):
            found.append(
                f"spatial shape {tuple(img.shape[1:])} differs from {tuple(ref.shape[1:])} of {_source_name(ref)}"
            )
        if isinstance(ref, MetaTensor) and isinstance(img, MetaTensor):
            if not torch.allclose(ref.affine.double(), img.affine.double(), atol=self.atol):
                found.append(f"affine (spacing, orientation or origin) differs from that of {_source_name(ref)}")
        return found

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        found = []
        for key in self.key_iterator(d):
            name = _source_name(d[key], key)
            found += [f"{name}: {p}" for p in self.checkers[key].problems(d[key])]
            if self.ref_key is not None and key != self.ref_key and self.ref_key in d:
                found += [f"{name}: {p}" for p in self._geometry_problems(d[self.ref_key], d[key])]
        if found:
            raise DataError(found)
        return d
