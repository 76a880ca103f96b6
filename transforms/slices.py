"""Transforms that turn a 3-D volume into 2-D (or 2.5-D) slice samples and per-slice labels, for slice classifiers.

Volumes are channel first, ``(C, X, Y, Z)`` after ``LoadImaged(ensure_channel_first=True)`` and ``Orientationd``
(RAS), so axial slices run along the last axis, the default ``spatial_axis=-1`` everywhere here.

* :class:`SliceLabels`: per-slice binary label (does the slice hold enough voxels of the target classes?).
* :class:`ExtractSlices`: stack of 2-D samples ``(N, C * (2 * context + 1), X, Y)``, with ``context`` neighbouring
  slices on each side as extra channels (2.5-D); edge slices repeat the border slice.
* :class:`SliceSamples` / :class:`RandSliceSamples`: the same as a list of separate samples, every slice or a
  random draw with a chosen fraction of positive slices. Their dictionary twins return a list of dictionaries,
  which ``monai.transforms.Compose`` and ``monai.data.list_data_collate`` treat as that many samples (as they do
  with ``RandCropByPosNegLabeld``).

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
from monai.data import MetaTensor, get_track_meta
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple, ensure_tuple_rep

from pipelines.validation.errors import DataError

__all__ = [
    "SliceLabels",
    "SliceLabelsd",
    "ExtractSlices",
    "ExtractSlicesd",
    "SliceSamples",
    "SliceSamplesd",
    "RandSliceSamples",
    "RandSliceSamplesd",
    "INDEX_KEY",
    "VOLUME_KEY",
]

logger = logging.getLogger(__name__)

INDEX_KEY = "slice_index"
"""Key of a slice sample's index along the slice axis, in the dictionaries of :class:`SliceSamplesd`."""
VOLUME_KEY = "volume"
"""Key of the source volume's file name ("" when unknown), in the dictionaries of :class:`SliceSamplesd`."""

_SPATIAL_DIMS = 3


def _source_name(img: NdarrayOrTensor, key: Hashable | None = None) -> str:
    """Best name for an array in an error: its file (MetaTensor metadata), else the dictionary key."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return f"item {key!r}" if key is not None else "input array"


def _filename(img: NdarrayOrTensor) -> str:
    """The source file of ``img`` ("" when it is not a MetaTensor or has none)."""
    name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
    return str(name) if name else ""


def _check_axis(spatial_axis: int) -> int:
    """Validate a spatial axis in ``[-3, 2]`` and return the array dimension it names (channel is dimension 0)."""
    if not isinstance(spatial_axis, (int, np.integer)) or not -_SPATIAL_DIMS <= spatial_axis < _SPATIAL_DIMS:
        raise ValueError(f"spatial_axis must be an int in [-3, 2] (0: X, 1: Y, 2 or -1: Z), got {spatial_axis!r}")
    return int(spatial_axis) % _SPATIAL_DIMS + 1


def _check_context(context: int) -> int:
    if not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be a non-negative int (slices on each side), got {context!r}")
    return int(context)


def _check_volume(img: NdarrayOrTensor, what: str = "volume", channels: int | None = None) -> None:
    """Raise :class:`DataError` unless ``img`` is channel first with three non-empty spatial dimensions."""
    shape = tuple(img.shape)
    if len(shape) != 1 + _SPATIAL_DIMS or 0 in shape or (channels is not None and shape[0] != channels):
        layout = f"({channels}, X, Y, Z)" if channels is not None else "(C, X, Y, Z)"
        raise DataError(f"{_source_name(img)}: expected a channel-first {what} {layout}, got shape {shape}")


def _as_indices(indices: Sequence[int] | NdarrayOrTensor | None, n_slices: int, img: NdarrayOrTensor) -> torch.Tensor:
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
            f"{_source_name(img)}: slice indices {bad.tolist()} out of range for {n_slices} slices (0..{n_slices - 1})"
        )
    return idx


def _as_slice_labels(labels: Sequence[int] | NdarrayOrTensor, n_slices: int, name: str) -> torch.Tensor:
    """Per-slice labels as a 1-D int64 CPU tensor of length ``n_slices``; DataError otherwise."""
    values = convert_to_tensor(labels, track_meta=False)
    if values.ndim != 1 or values.shape[0] != n_slices:
        raise DataError(f"{name}: expected {n_slices} slice labels (1-D), got shape {tuple(values.shape)}")
    return values.detach().cpu().long()


def _stack_slices(vol: torch.Tensor, dim: int, indices: torch.Tensor, context: int) -> torch.Tensor:
    """Samples ``(N, C * (2 * context + 1), ...)`` of ``vol`` at ``indices`` along ``dim``, edges replicated.

    Channel ``k`` of a sample is channel ``k % C`` of the slice at offset ``k // C - context``.
    """
    n_slices = vol.shape[dim]
    moved = vol.movedim(dim, 0)  # (Z, C, A, B)
    offsets = torch.arange(-context, context + 1)
    neighbours = (indices[:, None] + offsets[None, :]).clamp_(0, n_slices - 1).to(moved.device)
    stacked = moved[neighbours]  # (N, 2 * context + 1, C, A, B)
    return stacked.reshape(indices.shape[0], (2 * context + 1) * moved.shape[1], *moved.shape[2:])


def _with_meta(out: torch.Tensor, img: NdarrayOrTensor, **extra) -> torch.Tensor:
    """``out`` as a MetaTensor holding only the source file name (and ``extra``) when ``img`` is a MetaTensor."""
    if not (isinstance(img, MetaTensor) and get_track_meta()):
        return out
    meta = {"filename_or_obj": img.meta["filename_or_obj"]} if img.meta.get("filename_or_obj") else {}
    return MetaTensor(out, meta={**meta, **extra})


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
        self._dim = _check_axis(spatial_axis)

    def __call__(self, label: NdarrayOrTensor) -> torch.Tensor:
        _check_volume(label, "label volume", channels=1)
        values = convert_to_tensor(label, track_meta=False)
        if values.dtype == torch.bool:
            values = values.long()
        if values.is_floating_point():
            n_bad = int((values != values.round()).sum())
            if n_bad:
                raise DataError(
                    f"{_source_name(label)}: label volume has {n_bad} non-integer voxel(s); expected integer classes "
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
        self.context = _check_context(context)
        self.spatial_axis = spatial_axis
        self._dim = _check_axis(spatial_axis)
        self.indices = indices

    def slice_indices(self, img: NdarrayOrTensor, indices: Sequence[int] | NdarrayOrTensor | None = None) -> list[int]:
        """The slice indices a call with ``indices`` would extract from ``img``, as ints."""
        _check_volume(img)
        return _as_indices(indices if indices is not None else self.indices, img.shape[self._dim], img).tolist()

    def __call__(self, img: NdarrayOrTensor, indices: Sequence[int] | NdarrayOrTensor | None = None) -> torch.Tensor:
        """Extract the slices at ``indices`` (default: those given at construction, else all)."""
        idx = torch.as_tensor(self.slice_indices(img, indices), dtype=torch.long)
        vol = convert_to_tensor(img, track_meta=False)
        return _with_meta(_stack_slices(vol, self._dim, idx, self.context), img)


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


class SliceSamples(ExtractSlices, MultiSampleTrait):
    """A volume ``(C, X, Y, Z)`` as a list of 2-D samples ``(C * (2 * context + 1), X, Y)``, one per slice.

    The list form of :class:`ExtractSlices` (same channel order and edge replication). Each sample is a separate
    tensor; for ``MetaTensor`` input each is a ``MetaTensor`` whose metadata holds ``filename_or_obj`` and
    ``slice_index``.

    Args:
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken.
        indices: slices to extract, in that order (default all); can also be given per call.

    Raises:
        ValueError: for invalid arguments.
        DataError: naming the file, for a volume that is not ``(C, X, Y, Z)`` or indices out of range.
    """

    def __call__(  # type: ignore[override]
        self, img: NdarrayOrTensor, indices: Sequence[int] | NdarrayOrTensor | None = None
    ) -> list[torch.Tensor]:
        """The samples at ``indices`` (default: those given at construction, else all slices)."""
        idx = torch.as_tensor(self.slice_indices(img, indices), dtype=torch.long)
        vol = convert_to_tensor(img, track_meta=False)
        samples = []
        for i in idx:
            sample = _stack_slices(vol, self._dim, i.reshape(1), self.context)[0]
            samples.append(_with_meta(sample, img, slice_index=int(i)))
        return samples


def _sample_dicts(
    d: Mapping[Hashable, NdarrayOrTensor],
    keys: Sequence[Hashable],
    label_key: Hashable | None,
    indices: list[int],
    extract,
) -> list[dict[Hashable, object]]:
    """One dictionary per slice index: the sliced ``keys``, its label, ``slice_index`` and ``volume``."""
    if not keys:
        return []
    first = d[keys[0]]
    n_slices = [d[key].shape[extract._dim] for key in keys]
    if len(set(n_slices)) > 1:
        raise DataError(f"{_source_name(first, keys[0])}: keys {list(keys)} have different slice counts {n_slices}")
    labels = None
    if label_key is not None:
        if label_key not in d:
            raise DataError(
                f"{_source_name(first, keys[0])}: no {label_key!r} entry; run SliceLabelsd first or pass label_key=None"
            )
        labels = _as_slice_labels(d[label_key], n_slices[0], _source_name(first, keys[0]))
    volume = _filename(first)
    images = {key: extract(d[key], indices) for key in keys}
    samples: list[dict[Hashable, object]] = []
    for n, i in enumerate(indices):
        sample: dict[Hashable, object] = {key: images[key][n] for key in keys}
        if labels is not None:
            sample[label_key] = labels[i]
        sample.update({INDEX_KEY: i, VOLUME_KEY: volume})
        samples.append(sample)
    return samples


class SliceSamplesd(MapTransform, MultiSampleTrait):
    """Dictionary twin of :class:`SliceSamples`: a list of dictionaries, one per slice, for 2-D slice classifiers.

    Each returned dictionary holds, for a slice ``z``:

    * every key of ``keys``: the 2-D sample ``(C * (2 * context + 1), X, Y)`` (see :class:`ExtractSlices`);
    * ``label_key`` (default ``"slice_label"``): the slice's label, a 0-d ``torch.int64`` tensor taken from the
      per-slice labels :class:`SliceLabelsd` wrote there (omitted when ``label_key`` is None);
    * ``"slice_index"``: ``z`` as an int;
    * ``"volume"``: the source file of the first key's ``MetaTensor`` ("" when unknown).

    Other entries of the input (the 3-D mask, for one) are not carried over. ``monai.transforms.Compose`` applies
    later transforms to each sample, and ``monai.data.list_data_collate`` (the default ``collate_fn`` of
    ``monai.data.DataLoader``) flattens the lists of a batch, so a batch of ``B`` volumes of ``Z`` slices gives
    ``B * Z`` samples.

    Args:
        keys: key(s) of the volumes to slice; all must have the same number of slices.
        label_key: key of the per-slice labels, or None for unlabelled data (inference).
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken.
        indices: slices to emit (default all).
        allow_missing_keys: don't raise when a key of ``keys`` is absent.

    Raises:
        DataError: naming the file, for a bad volume, missing or mis-sized labels, or out-of-range indices.
    """

    backend = SliceSamples.backend

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        label_key: Hashable | None = "slice_label",
        context: int = 1,
        spatial_axis: int = -1,
        indices: Sequence[int] | NdarrayOrTensor | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sampler = SliceSamples(context, spatial_axis, indices)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, object]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        indices = self.sampler.slice_indices(d[keys[0]]) if keys else []
        return _sample_dicts(d, keys, self.label_key, indices, self.sampler)


class RandSliceSamples(RandomizableTransform, MultiSampleTrait):
    """Random 2-D samples of a volume ``(C, X, Y, Z)``: ``num_samples`` slices, a fraction of them positive.

    :meth:`randomize` draws the slice indices (kept in :attr:`indices`) from the per-slice labels: about
    ``round(num_samples * pos_fraction)`` positive slices and the rest negative. A group smaller than its share
    is drawn with replacement (positive slices repeat), a larger one without. A volume with no positive (or no
    negative) slice gives all its samples from the other group. Without labels every slice is equally likely.
    The draw is shuffled, and only ``self.R`` is used, so ``set_random_state`` makes it reproducible.

    Args:
        num_samples: number of samples per call.
        pos_fraction: wanted fraction of positive slices, in ``[0, 1]``.
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken.

    Returns:
        a list of ``num_samples`` tensors ``(C * (2 * context + 1), X, Y)``, in the order of :attr:`indices`
        (``MetaTensor`` samples carry ``filename_or_obj`` and ``slice_index`` in their metadata).

    Raises:
        ValueError: for invalid arguments.
        DataError: naming the file, for a bad volume or slice labels of the wrong length.
    """

    backend = SliceSamples.backend

    def __init__(
        self, num_samples: int = 4, pos_fraction: float = 0.5, context: int = 1, spatial_axis: int = -1
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        if not 0.0 <= float(pos_fraction) <= 1.0:
            raise ValueError(f"pos_fraction must be in [0, 1], got {pos_fraction!r}")
        self.num_samples = int(num_samples)
        self.pos_fraction = float(pos_fraction)
        self.sampler = SliceSamples(context, spatial_axis)
        self.indices: list[int] = []

    def randomize(self, slice_labels: NdarrayOrTensor | None = None, num_slices: int | None = None) -> None:
        """Draw :attr:`indices` from the per-slice labels (or uniformly over ``num_slices`` slices when None)."""
        if slice_labels is None:
            if num_slices is None or num_slices < 1:
                raise ValueError("randomize needs slice_labels or a positive num_slices")
            self.indices = self.R.randint(0, num_slices, size=self.num_samples).tolist()
            return
        labels = np.asarray(convert_to_tensor(slice_labels, track_meta=False).detach().cpu()).reshape(-1)
        positive, negative = np.flatnonzero(labels > 0), np.flatnonzero(labels <= 0)
        if not positive.size or not negative.size:
            missing = "positive" if negative.size else "negative"
            logger.debug("no %s slice: drawing all %d samples from the others", missing, self.num_samples)
            n_pos = self.num_samples if positive.size else 0
        else:
            n_pos = int(round(self.num_samples * self.pos_fraction))
        n_neg = self.num_samples - n_pos
        drawn = [
            self.R.choice(group, size=n, replace=n > group.size)
            for group, n in ((positive, n_pos), (negative, n_neg))
            if n
        ]
        self.indices = [int(i) for i in self.R.permutation(np.concatenate(drawn))]

    def __call__(
        self, img: NdarrayOrTensor, slice_labels: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> list[torch.Tensor]:
        """Samples of ``img`` at freshly drawn indices (or at :attr:`indices` when ``randomize`` is False)."""
        _check_volume(img)
        n_slices = img.shape[self.sampler._dim]
        if randomize:
            labels = None if slice_labels is None else _as_slice_labels(slice_labels, n_slices, _source_name(img))
            self.randomize(labels, n_slices)
        return self.sampler(img, self.indices)


class RandSliceSamplesd(RandomizableTransform, MapTransform, MultiSampleTrait):
    """Dictionary twin of :class:`RandSliceSamples`: ``num_samples`` dictionaries like :class:`SliceSamplesd`'s.

    The slices are drawn from the per-slice labels under ``label_key`` (see :class:`RandSliceSamples`); every key
    of ``keys`` is sliced at the same indices. Each dictionary holds the keys' 2-D samples, the slice's label under
    ``label_key``, ``"slice_index"`` and ``"volume"``; other entries are not carried over.

    Args:
        keys: key(s) of the volumes to slice; all must have the same number of slices.
        label_key: key of the per-slice labels (from :class:`SliceLabelsd`), required.
        num_samples: number of samples per volume.
        pos_fraction: wanted fraction of positive slices, in ``[0, 1]``.
        context: neighbouring slices on each side stacked as channels.
        spatial_axis: spatial axis along which slices are taken.
        allow_missing_keys: don't raise when a key of ``keys`` is absent.
    """

    backend = RandSliceSamples.backend

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        label_key: Hashable = "slice_label",
        num_samples: int = 4,
        pos_fraction: float = 0.5,
        context: int = 1,
        spatial_axis: int = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.sampler = RandSliceSamples(num_samples, pos_fraction, context, spatial_axis)
        self.label_key = label_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSliceSamplesd:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, slice_labels: NdarrayOrTensor | None = None, num_slices: int | None = None) -> None:
        """Draw the slice indices (see :meth:`RandSliceSamples.randomize`)."""
        self.sampler.randomize(slice_labels, num_slices)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, object]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return []
        first = d[keys[0]]
        _check_volume(first)
        n_slices = first.shape[self.sampler.sampler._dim]
        name = _source_name(first, keys[0])
        if self.label_key not in d:
            raise DataError(f"{name}: no {self.label_key!r} entry to draw slices from; run SliceLabelsd first")
        self.randomize(_as_slice_labels(d[self.label_key], n_slices, name), n_slices)
        return _sample_dicts(d, keys, self.label_key, self.sampler.indices, self.sampler.sampler)
