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


def foreground_box(img: NdarrayOrTensor) -> tuple[slice, ...] | None:
    """The smallest box (one slice per spatial axis) holding every non-zero voxel of the channel-first ``img`` (any
    channel); None when it has none."""
    occupied = torch.as_tensor(img).ne(0).any(dim=0)
    if not bool(occupied.any()):
        return None
    box = []
    for axis in range(occupied.ndim):
        others = tuple(a for a in range(occupied.ndim) if a != axis)
        hits = torch.nonzero(occupied.any(dim=others) if others else occupied).flatten()
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


class InForegroundBox(Transform):
    """Apply ``transform`` (an array transform of a channel-first label map) to the foreground's bounding box of
    its input, and paste the result into an otherwise unchanged copy. An input without foreground is returned as
    it is.

    Args:
        transform: the step to run, e.g. ``KeepLargestConnectedComponent(applied_labels=[1, 2])``; it must keep
            the shape of its input and only change foreground voxels.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, transform: Callable) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        box = foreground_box(img)
        if box is None:
            return img
        index = (slice(None), *box)
        inner = self.transform(img[index])
        out = img.clone() if isinstance(img, torch.Tensor) else img.copy()
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
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = InForegroundBox.backend

    def __init__(self, keys: KeysCollection, transform: Callable, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.boxed = InForegroundBox(transform)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.boxed(d[key])
        return d
