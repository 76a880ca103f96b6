"""Transforms that turn a 3-D volume into 2-D (or 2.5-D) slice samples and per-slice labels, for slice classifiers.

Volumes are channel first, ``(C, X, Y, Z)`` after ``LoadImaged(ensure_channel_first=True)`` and ``Orientationd``
(RAS), so axial slices run along the last axis, the default ``spatial_axis=-1`` everywhere here.

* :class:`SliceLabels`: per-slice binary label (does the slice hold enough voxels of the target classes?).
* :class:`ExtractSlices`: stack of 2-D samples ``(N, C * (2 * context + 1), X, Y)``, with ``context`` neighbouring
  slices on each side as extra channels (2.5-D); edge slices repeat the border slice.
* :class:`transforms.slice_samples.SliceSamples` / :class:`transforms.slice_samples.RandSliceSamples` (their own
  module): the same as a list of separate samples, every slice or a random draw.

Metadata: a slice stack is not a spatial volume of the source grid, so the outputs keep only
``meta["filename_or_obj"]`` (and ``meta["slice_index"]`` on single-slice samples); the affine of an output
``MetaTensor`` is the default identity and its ``applied_operations`` is empty (these transforms are not inverted).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple, ensure_tuple_rep

from pipelines.validation.errors import DataError
from transforms.slice_utils import (
    as_indices,
    check_axis,
    check_context,
    check_slice_volume,
    source_name,
    stack_slices,
    with_meta,
)

__all__ = ["SliceLabels", "SliceLabelsd", "ExtractSlices", "ExtractSlicesd"]

logger = logging.getLogger(__name__)


class SliceLabels(Transform):
    """Per-slice binary labels of a channel-first integer label volume ``(1, X, Y, Z)``.

    A slice is positive (1) when it holds at least ``min_area`` voxels of any of ``target_classes``, else 0.

    Args:
        target_classes: the class value(s) that make a slice positive, an int or a sequence of ints (for
            example ``2`` for liver tumour, ``(1, 2)`` for liver or tumour).
        min_area: least number of target voxels in a slice for a positive label (at least 1).
        spatial_axis: spatial axis along which slices are taken (0: X, 1: Y, 2 or -1: Z, the axial one in RAS).

    Returns:
        a 1-D ``torch.int64`` tensor of length ``Z`` (a plain tensor, on the input's device, for numpy, tensor and
        MetaTensor input alike).

    Raises:
        ValueError: for invalid arguments.
        DataError: naming the file, when the label is not ``(1, X, Y, Z)`` or holds non-integer values.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, target_classes: int | Sequence[int] = (1,), min_area: int = 1, spatial_axis: int = -1) -> None:
        classes = ensure_tuple(target_classes)
        if not classes or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
            raise ValueError(f"target_classes must be an int or a non-empty sequence of ints, got {target_classes!r}")
        if not isinstance(min_area, (int, np.integer)) or min_area < 1:
            raise ValueError(f"min_area must be an int >= 1 (voxels per slice), got {min_area!r}")
        self.target_classes = tuple(int(c) for c in classes)
        self.min_area = int(min_area)
        self.spatial_axis = spatial_axis
        self._dim = check_axis(spatial_axis)

    def __call__(self, label: NdarrayOrTensor) -> torch.Tensor:
        check_slice_volume(label, "label volume", channels=1)
        values = convert_to_tensor(label, track_meta=False)
        if values.dtype == torch.bool:
            values = values.long()
        if values.is_floating_point():
            n_bad = int((values != values.round()).sum())
            if n_bad:
                raise DataError(
                    f"{source_name(label)}: label volume has {n_bad} non-integer voxel(s); expected integer classes "
                    "(was it resampled with linear interpolation instead of nearest?)"
                )
        classes = torch.tensor(self.target_classes, device=values.device).to(values.dtype)
        hits = torch.isin(values, classes)
        other = [d for d in range(values.ndim) if d != self._dim]
        counts = hits.sum(dim=other)
        return (counts >= self.min_area).long()


class SliceLabelsd(MapTransform):
    """Dictionary twin of :class:`SliceLabels`: writes the per-slice labels under a new key, the mask is unchanged.

    Args:
        keys: key(s) of the label volume(s).
        target_classes: the class value(s) that make a slice positive.
        min_area: least number of target voxels in a slice for a positive label.
        spatial_axis: spatial axis along which slices are taken (default the last, axial in RAS).
        output_key: key of the result, or one key per entry of ``keys`` (they must differ).
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = SliceLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        target_classes: int | Sequence[int] = (1,),
        min_area: int = 1,
        spatial_axis: int = -1,
        output_key: Hashable | Sequence[Hashable] = "slice_label",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labeller = SliceLabels(target_classes, min_area, spatial_axis)
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))
        if len(set(self.output_keys)) != len(self.output_keys):
            raise ValueError(f"give one distinct output_key per key {list(self.keys)}, got {list(self.output_keys)}")

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, output_key in self.key_iterator(d, self.output_keys):
            d[output_key] = self.labeller(d[key])
        return d


class ExtractSlices(Transform):
    """Stack of 2-D samples from a channel-first volume ``(C, X, Y, Z)``: ``(N, C * (2 * context + 1), X, Y)``.

    Every sample holds its slice with ``context`` neighbours on each side as channels (2.5-D; ``context=0`` gives
    plain 2-D). Channel ``k`` of a sample is input channel ``k % C`` of the slice at offset ``k // C - context``, so
    for a one-channel CT and ``context=1`` the channels are slices ``z - 1, z, z + 1``. Beyond the volume's ends the
    border slice is repeated. ``N`` is the number of slices, or of ``indices`` when given.

    With ``spatial_axis`` other than the last, the two remaining spatial axes keep their order (axis 0 gives
    ``(X, C', Y, Z)``).

    Args:
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken (0: X, 1: Y, 2 or -1: Z).
        indices: slices to extract, in that order (default all); can also be given per call.

    Returns:
        a ``torch.Tensor`` for numpy or tensor input (dtype and device kept); for a ``MetaTensor``, a ``MetaTensor``
        whose metadata holds only ``filename_or_obj`` (the affine is the default identity: the stack is no longer on
        the volume's grid).

    Raises:
        ValueError: for invalid arguments.
        DataError: naming the file, for a volume that is not ``(C, X, Y, Z)`` or indices out of range.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        context: int = 1,
        spatial_axis: int = -1,
        indices: Sequence[int] | NdarrayOrTensor | None = None,
    ) -> None:
        self.context = check_context(context)
        self.spatial_axis = spatial_axis
        self._dim = check_axis(spatial_axis)
        self.indices = indices

    def slice_indices(self, img: NdarrayOrTensor, indices: Sequence[int] | NdarrayOrTensor | None = None) -> list[int]:
        """The slice indices a call with ``indices`` would extract from ``img``, as ints."""
        check_slice_volume(img)
        return as_indices(indices if indices is not None else self.indices, img.shape[self._dim], img).tolist()

    def __call__(self, img: NdarrayOrTensor, indices: Sequence[int] | NdarrayOrTensor | None = None) -> torch.Tensor:
        """Extract the slices at ``indices`` (default: those given at construction, else all)."""
        idx = torch.as_tensor(self.slice_indices(img, indices), dtype=torch.long)
        vol = convert_to_tensor(img, track_meta=False)
        return with_meta(stack_slices(vol, self._dim, idx, self.context), img)


class ExtractSlicesd(MapTransform):
    """Dictionary twin of :class:`ExtractSlices`, for image key(s); use :class:`SliceLabelsd` for the masks.

    Args:
        keys: key(s) of the volumes to slice.
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken.
        indices: slices to extract (default all).
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = ExtractSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        context: int = 1,
        spatial_axis: int = -1,
        indices: Sequence[int] | NdarrayOrTensor | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.extractor = ExtractSlices(context, spatial_axis, indices)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.extractor(d[key])
        return d
