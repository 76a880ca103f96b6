"""Train on short scans as the sliding window sees them: a few slices, the rest of the window their edge slices.

A scan with fewer slices than the window along z (a 20-slice series at 2 mm is 8 slices at the liver bundle's
5 mm, in a window of 32) reaches the network padded with copies of its own edge slices (``sw_padding_mode:
replicate``). A model trained only on whole patches never meets such a window, and on a real 20-slice series it
left a third of the liver out. :class:`RandShortScan` makes such windows from training patches: it keeps a run of
slices and repeats its first and last slice to the patch's size, with the run where the sliding window puts a short
scan (centred, the odd slice of padding after it).
"""

from __future__ import annotations

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type

from .same_draw import SameDrawForEveryKeyd

__all__ = ["RandShortScan", "RandShortScand"]


class RandShortScan(RandomizableTransform):
    """With probability ``prob``, keep ``n`` consecutive slices along a spatial axis and fill the rest with copies
    of the first and last kept slice, as the sliding window pads a scan of ``n`` slices.

    ``n`` is drawn uniformly from ``[min_slices, size - 1]`` (``size``: the image's length along ``axis``); the kept
    run starts at a random slice; in the output it is centred, ``(size - n) // 2`` copies of its first slice before
    it. Images with fewer than ``min_slices + 1`` slices are returned unchanged.

    Args:
        prob: probability of shortening.
        min_slices: the fewest slices kept (at least 1).
        axis: the spatial axis (0-based, after the channel axis): 2 is z for RAS volumes.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 0.1, min_slices: int = 4, axis: int = 2) -> None:
        RandomizableTransform.__init__(self, prob)
        if int(min_slices) < 1:
            raise ValueError(f"min_slices must be at least 1, got {min_slices}")
        self.min_slices = int(min_slices)
        self.axis = int(axis)
        self._run: tuple[int, int] | None = None

    def randomize(self, size: int) -> None:  # type: ignore[override]
        """Draw whether to shorten and, if so, the kept run ``(start, n)`` of an axis of ``size`` slices."""
        super().randomize(None)
        self._run = None
        if not self._do_transform or size <= self.min_slices:
            return
        n = int(self.R.randint(self.min_slices, size))  # min_slices .. size - 1
        self._run = (int(self.R.randint(0, size - n + 1)), n)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """``img`` channel-first; returns the same type, shape and metadata."""
        dim = self.axis + 1
        if dim >= len(img.shape):
            raise ValueError(f"RandShortScan axis {self.axis} needs a channel-first image of at least {dim + 1} dims")
        size = int(img.shape[dim])
        if randomize:
            self.randomize(size)
        if self._run is None:
            return img
        start, n = self._run
        before = (size - n) // 2
        tensor = torch.as_tensor(img)
        index = (torch.arange(size, device=tensor.device) - before).clamp(0, n - 1) + start
        return convert_to_dst_type(tensor.index_select(dim, index), img)[0]  # img's type, with its metadata


class RandShortScand(SameDrawForEveryKeyd):
    """Dictionary twin of :class:`RandShortScan`: the same run of slices for every key (image and label)."""

    backend = RandShortScan.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        min_slices: int = 4,
        axis: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandShortScan(1.0, min_slices, axis), prob, allow_missing_keys)

    def randomize_array(self, values: list[NdarrayOrTensor]) -> None:
        """One run of slices for every key: they must have the same length along the axis."""
        axis = self.array_transform.axis
        sizes = {int(value.shape[axis + 1]) for value in values}
        if len(sizes) != 1:
            raise ValueError(f"RandShortScand: {list(self.keys)} differ in length along axis {axis}: {sizes}")
        self.array_transform.randomize(sizes.pop())
