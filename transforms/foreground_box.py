"""Run a label post-processing transform on the bounding box of the foreground only.

Connected-component steps (``KeepLargestConnectedComponent``, ``RemoveSmallObjects``) label every voxel of the
volume they get. A prediction written back at the scan's resolution is mostly background: on a 512x512x600 CT the
liver's box is a fraction of the 157 M voxels. Outside the box every voxel is background, so running the step on
the box and pasting the result back gives exactly the same label map, for any step that only changes foreground
voxels (the components do not reach outside the box, and background stays background).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

__all__ = ["InForegroundBox", "InForegroundBoxd", "foreground_box"]


def _axis_hits(occupied: torch.Tensor) -> list[torch.Tensor]:
    """Per axis of ``occupied`` (uint8, 0/1), whether each index holds a 1: reductions over the outermost or the
    innermost axis only, the fast ones."""
    if occupied.ndim == 1:
        return [occupied]
    last = occupied
    while last.ndim > 1:
        last = last.amax(dim=0)
    return [*_axis_hits(occupied.amax(dim=-1)), last]


def foreground_box(img: NdarrayOrTensor, slab_voxels: int = 2**24) -> tuple[slice, ...] | None:
    """The smallest box (one slice per spatial axis) holding every non-zero voxel of the channel-first ``img`` (any
    channel); None when it has none. Read in slabs of the first spatial axis of about ``slab_voxels`` voxels
    (contiguous in a C-ordered volume): no full-size mask (a 512x512x600 label map would need two of 150 MiB)."""
    values = torch.as_tensor(img)
    spatial = values.shape[1:]
    hits = [torch.zeros(n, dtype=torch.bool, device=values.device) for n in spatial]
    per_index = max(1, values[:, :1].numel())
    step = max(1, slab_voxels // per_index)
    for i0 in range(0, spatial[0], step):
        i1 = min(spatial[0], i0 + step)
        occupied = values[:, i0:i1].ne(0).view(torch.uint8).amax(dim=0)  # any channel; uint8 reductions are fast
        for axis, along in enumerate(_axis_hits(occupied)):
            if axis == 0:
                hits[axis][i0:i1] |= along.bool()
            else:
                hits[axis] |= along.bool()
    if not bool(hits[-1].any()):
        return None
    box = []
    for axis_hits in hits:
        index = torch.nonzero(axis_hits).flatten()
        box.append(slice(int(index[0]), int(index[-1]) + 1))
    return tuple(box)


class InForegroundBox(Transform):
    """Apply ``transform`` (an array transform of a channel-first label map) to the foreground's bounding box of
    its input, and paste the result into an otherwise unchanged copy. An input without foreground is returned as
    it is.

    Args:
        transform: the step to run, e.g. ``KeepLargestConnectedComponent(applied_labels=[1, 2])``; it must keep
            the shape of its input and only change foreground voxels.
        inplace: paste the result into the input itself instead of a copy: no second full-size label map (150 MiB
            for a 512x512x600 CT), for pipelines where nothing else holds the input (the bundles' inference). A
            transform that changes its input in place and returns it (``KeepLargestComponent(inplace=True)``) then
            works on the box of the input itself: nothing is copied or pasted.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, transform: Callable, inplace: bool = False) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform
        self.inplace = inplace

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        box = foreground_box(img)
        if box is None:
            return img
        index = (slice(None), *box)
        view = img[index]
        inner = self.transform(view)
        if self.inplace and inner is view:  # the transform changed the box in place: nothing to paste
            return img
        out = img if self.inplace else img.clone() if isinstance(img, torch.Tensor) else img.copy()
        if isinstance(out, torch.Tensor):
            out[index] = torch.as_tensor(inner, dtype=out.dtype, device=out.device)
        else:
            out[index] = inner.cpu().numpy() if isinstance(inner, torch.Tensor) else inner
        return out


class InForegroundBoxd(MapTransform):
    """Dictionary twin of :class:`InForegroundBox`.

    Args:
        keys: keys of the label maps to post-process.
        transform: the array transform to run on each one's foreground box.
        inplace: see :class:`InForegroundBox`.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = InForegroundBox.backend

    def __init__(
        self, keys: KeysCollection, transform: Callable, inplace: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.boxed = InForegroundBox(transform, inplace=inplace)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.boxed(d[key])
        return d
