"""Arrays into C order, the layout ``LoadImage`` makes of every array, through torch's copy.

NIfTI stores x fastest and ITK hands its buffer back with the axes reversed, so both readers give ``LoadImage`` an
array in Fortran order, which it copies with ``numpy.ascontiguousarray``. torch's reordering copy is two to three
times numpy's on these volumes: a 512x512x600 int16 CT 1.0-1.1 s against 2.2-2.4 s from a NIfTI file, and 3.1 s
with numpy from a DICOM series (2 CPU cores, docs/performance.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["c_ordered", "copy_into"]


def c_ordered(array: np.ndarray, tile: tuple[int, int] = (256, 128)) -> np.ndarray:
    """``array`` in C order, copied through torch when it is in Fortran order, ``tile`` indices of its first and
    last axes at a time; unchanged when it already is C-ordered or is neither; copied by numpy when torch has no
    such dtype."""
    if array.ndim < 2 or array.flags.c_contiguous or not array.flags.f_contiguous:
        return array
    try:
        with warnings.catch_warnings():  # read-only buffers (ITK's views) are only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            reversed_view = torch.from_numpy(array.T)  # C-ordered view of the same memory, axes reversed
    except TypeError:
        return np.ascontiguousarray(array)
    source = reversed_view.permute(*reversed(range(array.ndim)))
    if array.ndim < 3:
        return source.contiguous().numpy()
    out = torch.empty(source.shape, dtype=source.dtype)
    first, last = tile
    for i in range(0, source.shape[0], first):  # tiles over the first and last axes: each reads and writes runs
        for k in range(0, source.shape[-1], last):  # that stay in cache (a 512x512x600 int16 CT: 2.2-2.6 -> 1.5 s)
            out[i : i + first, ..., k : k + last].copy_(source[i : i + first, ..., k : k + last])
    return out.numpy()


def copy_into(destination: np.ndarray, source: np.ndarray) -> None:
    """``destination[...] = source``, through torch where it has the dtype (twice numpy's speed for reordering)."""
    try:
        with warnings.catch_warnings():  # nibabel's slabs are read-only; they are only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            torch.from_numpy(destination).copy_(torch.from_numpy(source))
    except TypeError:
        destination[...] = source
