"""Multi-sequence MRI with any subset of its sequences: a missing sequence is an all-zero channel.

One model serves a study with all four BraTS sequences, FLAIR and T1ce only, or FLAIR alone: the network always
gets one channel per sequence the bundle names (``sequences``), and a sequence the study lacks is a channel of
zeros. After the brain's z-score over the brain voxels (``NormalizeIntensityd(nonzero=True)``) a sequence that is
there is never all zero, so the zero channel is its own flag; the names of the sequences used also travel with the
image, in its metadata (``"sequences_used"``), for the reports.

* :class:`FillMissingSequences` / :class:`FillMissingSequencesd`: after loading, put the channels that were read
  at their place in the bundle's order and add zero channels for the missing ones.
* :class:`KeepSequences` / :class:`KeepSequencesd`: zero every channel but the named ones (evaluate a model on a
  subset of the sequences of complete studies).
* :class:`RandDropSequences` / :class:`RandDropSequencesd`: in training, drop a random subset of the sequences
  (never all), so that the model learns to segment from any subset (sequence dropout).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends

from pipelines.validation.errors import DataError

from .same_draw import SameDrawForEveryKeyd

__all__ = [
    "SEQUENCES_META_KEY",
    "FillMissingSequences",
    "FillMissingSequencesd",
    "KeepSequences",
    "KeepSequencesd",
    "RandDropSequences",
    "RandDropSequencesd",
    "sequence_indices",
    "source_file_name",
]

logger = logging.getLogger(__name__)

SEQUENCES_META_KEY = "sequences_used"
"""Metadata key of the image (a MetaTensor) naming the sequences it holds, joined by ``"+"`` (``"FLAIR+T1ce"``)."""


def source_file_name(img: NdarrayOrTensor) -> str:
    """The file an image was read from, for messages (the first file of a multi-file image)."""
    name = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    return str(name) if name else "image"


def sequence_indices(
    names: Sequence[str] | str, sequences: Sequence[str], aliases: Sequence[str] | None = None
) -> list[int]:
    """The channel index of each sequence in ``names``, by its place in ``sequences``.

    Names match case-insensitively the bundle's sequence names (``FLAIR``, ``T1ce``) or, when given, their
    ``aliases`` (the file-name suffixes, ``flair``, ``t1ce``); ``"FLAIR+T1ce"`` is read as two names.

    Raises:
        ValueError: naming the unknown or repeated sequence and the known ones.
    """
    if isinstance(names, str):
        names = [n for n in names.replace(",", "+").split("+") if n.strip()]
    lookup: dict[str, int] = {}
    for table in (sequences, aliases or ()):
        for i, name in enumerate(table):
            lookup.setdefault(str(name).strip().lower(), i)
    indices = []
    for name in names:
        key = str(name).strip().lower()
        if key not in lookup:
            raise ValueError(f"unknown sequence {name!r}: this bundle's sequences are {list(sequences)}")
        if lookup[key] in indices:
            raise ValueError(f"sequence {name!r} is named twice in {list(names)}")
        indices.append(lookup[key])
    return indices


def _names(indices: Sequence[int], sequences: Sequence[str]) -> str:
    return "+".join(str(sequences[i]) for i in sorted(indices))


def _with_meta(img: NdarrayOrTensor, out: torch.Tensor, used: str) -> NdarrayOrTensor:
    """``out`` as the type of ``img``, with its metadata and the sequences used."""
    if isinstance(img, MetaTensor):
        out = MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        out.meta[SEQUENCES_META_KEY] = used
        return out
    return out.numpy() if isinstance(img, np.ndarray) else out


def _present(img: NdarrayOrTensor) -> list[int] | None:
    """The channels that hold a sequence: not all zero."""
    data = torch.as_tensor(img)
    return [c for c in range(data.shape[0]) if bool(data[c].ne(0).any())]


class FillMissingSequences(Transform):
    """Place the channels of a study that has only some of the bundle's sequences, zero-filling the others.

    Args:
        sequences: the bundle's sequences, in channel order (``["FLAIR", "T1", "T1ce", "T2"]``).
        aliases: other names of the same sequences, same order (the file-name suffixes).

    Call with the channel-first image and ``present``, the names of the sequences its channels hold, in the order
    of its channels. Returns ``len(sequences)`` channels. Without ``present``, the image must have one channel per
    sequence, in the bundle's order; its all-zero channels are the sequences it lacks (a 4D NIfTI that MONAI Label
    sends, with a missing sequence as a blank channel).

    Raises:
        ValueError: naming the file, when ``present`` names an unknown sequence or does not match the number of
            channels read, or when no sequence is present.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, sequences: Sequence[str], aliases: Sequence[str] | None = None) -> None:
        if not sequences:
            raise ValueError("sequences must name at least one sequence")
        self.sequences = list(sequences)
        self.aliases = list(aliases) if aliases else None

    def __call__(self, img: NdarrayOrTensor, present: Sequence[str] | str | None = None) -> NdarrayOrTensor:
        source = source_file_name(img)
        if present is None:  # every channel, in order: an all-zero one is a sequence the study lacks
            if img.shape[0] != len(self.sequences):
                raise DataError(
                    f"{source}: {img.shape[0]} channel(s), but this bundle reads {len(self.sequences)} sequences "
                    f"{self.sequences}, in that order (a missing sequence is a channel of zeros)"
                )
            used = _present(img)
            if not used:
                raise DataError(f"{source}: every channel is blank (all zero): no MRI sequence to segment")
            if len(used) < len(self.sequences):
                self._log_missing(source, used)
            return _with_meta(img, torch.as_tensor(img), _names(used, self.sequences))
        try:
            indices = sequence_indices(present, self.sequences, self.aliases)
        except ValueError as err:
            raise DataError(f"{source}: {err}") from None
        if not indices:
            raise DataError(f"{source}: no MRI sequence given (this bundle reads {self.sequences})")
        if img.shape[0] != len(indices):
            named = [self.sequences[i] for i in indices]
            raise DataError(
                f"{source}: {img.shape[0]} channel(s) read but {len(indices)} sequence(s) named ({named}); "
                f"a study with fewer sequences names them under 'sequences' in the datalist"
            )
        data = torch.as_tensor(img)
        blank = [self.sequences[i] for channel, i in enumerate(indices) if not bool(data[channel].ne(0).any())]
        if blank:  # a file given for a sequence but holding nothing: a failed export, not a missing sequence
            raise DataError(
                f"{source}: the {'+'.join(blank)} image{'s are' if len(blank) > 1 else ' is'} blank (every voxel 0); "
                "remove the file to segment from the other sequences, or export it again"
            )
        if indices == list(range(len(self.sequences))):
            out = data
        else:
            out = data.new_zeros((len(self.sequences), *data.shape[1:]))
            for channel, index in enumerate(indices):
                out[index] = data[channel]
            self._log_missing(source, indices)
        return _with_meta(img, out, _names(indices, self.sequences))

    def _log_missing(self, source: str, used: Sequence[int]) -> None:
        missing = [s for i, s in enumerate(self.sequences) if i not in used]
        logger.info("%s: sequences %s; missing %s (zero channels)", source, _names(used, self.sequences), missing)


class FillMissingSequencesd(MapTransform):
    """Dictionary twin of :class:`FillMissingSequences`: the names of the sequences read come from the item's
    ``present_key`` (a datalist's ``"sequences"``: a list of names, or ``"FLAIR+T1ce"``), all of them when the item
    has none. The key is removed afterwards (studies with different subsets then batch together); the image's
    metadata names the sequences used (``"sequences_used"``)."""

    backend = FillMissingSequences.backend

    def __init__(
        self,
        keys: KeysCollection,
        sequences: Sequence[str],
        aliases: Sequence[str] | None = None,
        present_key: str = "sequences",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.filler = FillMissingSequences(sequences, aliases)
        self.present_key = present_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = d.pop(self.present_key, None)
        for key in self.key_iterator(d):
            d[key] = self.filler(d[key], present)
        return d


class KeepSequences(Transform):
    """Zero every channel but those of the sequences in ``keep`` (None: keep all, the transform does nothing).

    Evaluates a model trained with sequence dropout on a subset of complete studies: ``keep=["FLAIR"]`` is a
    FLAIR-only study.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, sequences: Sequence[str], keep: Sequence[str] | str | None = None, aliases: Sequence[str] | None = None
    ) -> None:
        self.sequences = list(sequences)
        self.keep = None if keep is None else sequence_indices(keep, self.sequences, aliases)
        if self.keep is not None and not self.keep:
            raise ValueError(f"keep must name at least one of {self.sequences}")

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if self.keep is None:
            return img
        if img.shape[0] != len(self.sequences):
            raise DataError(f"{source_file_name(img)}: {img.shape[0]} channels, expected {len(self.sequences)}")
        out = torch.as_tensor(img).clone()
        for c in range(out.shape[0]):
            if c not in self.keep:
                out[c] = 0
        used = _present(out)
        if not used:  # the study lacks every sequence to keep: the network would see zeros only
            had = _names(_present(img), self.sequences) or "none"
            raise DataError(
                f"{source_file_name(img)}: none of the sequences to keep ({_names(self.keep, self.sequences)}) is in "
                f"the study (it has {had})"
            )
        return _with_meta(img, out, _names(used, self.sequences))


class KeepSequencesd(MapTransform):
    """Dictionary twin of :class:`KeepSequences`."""

    backend = KeepSequences.backend

    def __init__(
        self,
        keys: KeysCollection,
        sequences: Sequence[str],
        keep: Sequence[str] | str | None = None,
        aliases: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.keeper = KeepSequences(sequences, keep, aliases)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.keeper(d[key])
        return d


class RandDropSequences(RandomizableTransform):
    """Sequence dropout: with probability ``prob``, zero the channels of a random subset of the sequences present.

    At least one sequence always stays. With ``subsets`` (lists of channel indices or sequence names, with
    ``sequences``), the kept sequences are one of those subsets, drawn uniformly among those the image holds;
    else every non-empty subset of the present sequences but the full set is equally likely.

    Args:
        prob: probability of dropping anything.
        subsets: the subsets to keep, e.g. ``[["FLAIR", "T1ce"], ["FLAIR"], ["T1ce"]]``; None: any.
        sequences: the bundle's sequence names, to read ``subsets`` given by name.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 0.5,
        subsets: Sequence[Sequence[int | str]] | None = None,
        sequences: Sequence[str] | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.subsets = None
        if subsets is not None:
            self.subsets = []
            for subset in subsets:
                if all(isinstance(s, int) for s in subset):
                    self.subsets.append(sorted(int(s) for s in subset))
                elif sequences is None:
                    raise ValueError("subsets given by name need the sequences' names (sequences=...)")
                else:
                    self.subsets.append(sorted(sequence_indices(list(subset), sequences)))
            if not self.subsets or not all(self.subsets):
                raise ValueError(f"subsets must be non-empty lists of sequences, got {subsets}")
        self._keep: list[int] | None = None

    def randomize(self, img: NdarrayOrTensor) -> None:
        super().randomize(None)
        self._keep = None
        present = _present(img)
        if not self._do_transform or len(present) < 2:
            return
        if self.subsets is not None:
            choices = [s for s in self.subsets if set(s) <= set(present) and len(s) < len(present)]
            if choices:
                self._keep = choices[self.R.randint(len(choices))]
            return
        while True:  # a uniform non-empty proper subset: rejection from the 2^n - 2 of them
            draw = self.R.randint(2, size=len(present))
            if 0 < draw.sum() < len(present):
                self._keep = [c for c, bit in zip(present, draw, strict=True) if bit]
                return

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize(img)
        if self._keep is None:
            return img
        out = torch.as_tensor(img).clone()
        for c in range(out.shape[0]):
            if c not in self._keep:
                out[c] = 0
        if isinstance(img, MetaTensor):
            return MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        return out.numpy() if isinstance(img, np.ndarray) else out


class RandDropSequencesd(SameDrawForEveryKeyd):
    """Dictionary twin of :class:`RandDropSequences`: the same sequences are dropped from every key."""

    backend = RandDropSequences.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        subsets: Sequence[Sequence[int | str]] | None = None,
        sequences: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandDropSequences(1.0, subsets, sequences), prob, allow_missing_keys)
