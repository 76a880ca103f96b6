"""Slice samples for slice classifiers: every slice of a volume (:class:`SliceSamples`) or a random draw with a
chosen fraction of positive slices (:class:`RandSliceSamples`), as a list of separate 2-D (2.5-D) samples; their
dictionary twins return a list of dictionaries, which ``monai.transforms.Compose`` and ``monai.data.list_data_collate``
treat as that many samples (as they do with ``RandCropByPosNegLabeld``). The slices themselves come from
:class:`transforms.slices.ExtractSlices`."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import convert_to_tensor

from pipelines.validation.errors import DataError
from transforms.slice_utils import (
    INDEX_KEY,
    VOLUME_KEY,
    as_slice_labels,
    check_slice_volume,
    filename,
    source_name,
    stack_slices,
    with_meta,
)
from transforms.slices import ExtractSlices

__all__ = ["SliceSamples", "SliceSamplesd", "RandSliceSamples", "RandSliceSamplesd"]

logger = logging.getLogger(__name__)


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
            sample = stack_slices(vol, self._dim, i.reshape(1), self.context)[0]
            samples.append(with_meta(sample, img, slice_index=int(i)))
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
        raise DataError(f"{source_name(first, keys[0])}: keys {list(keys)} have different slice counts {n_slices}")
    labels = None
    if label_key is not None:
        if label_key not in d:
            raise DataError(
                f"{source_name(first, keys[0])}: no {label_key!r} entry; run SliceLabelsd first or pass label_key=None"
            )
        labels = as_slice_labels(d[label_key], n_slices[0], source_name(first, keys[0]))
    volume = filename(first)
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
        check_slice_volume(img)
        n_slices = img.shape[self.sampler._dim]
        if randomize:
            labels = None if slice_labels is None else as_slice_labels(slice_labels, n_slices, source_name(img))
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
        check_slice_volume(first)
        n_slices = first.shape[self.sampler.sampler._dim]
        name = source_name(first, keys[0])
        if self.label_key not in d:
            raise DataError(f"{name}: no {self.label_key!r} entry to draw slices from; run SliceLabelsd first")
        self.randomize(as_slice_labels(d[self.label_key], n_slices, name), n_slices)
        return _sample_dicts(d, keys, self.label_key, self.sampler.indices, self.sampler.sampler)
