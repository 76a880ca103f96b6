"""MONAI's ``Spacing`` / ``Spacingd`` that resample a large volume slab by slab, from its own dtype.

MONAI's ``SpatialResample`` first converts the whole input to the computation dtype, then samples it: a
512x512x600 CT read as int16 (0.29 GiB) becomes a float32 copy of 0.59 GiB beside it, the largest allocation of
the inference stage, to produce a network grid of a few MiB. Here, when the map from output to input voxels only
permutes, flips, scales and shifts axes (what ``Orientationd`` then ``Spacingd`` always give), an input of at least
``slab_above`` voxels is interpolated separably, one slab of output slices at a time: the float32 work is one slab
of input slices, and the input stays in its dtype. The sampling positions, the bilinear interpolation and the
padding (``border`` or ``zeros``) are ``grid_sample``'s (the values agree to float32 rounding); the output's affine,
shape, dtype, metadata and applied-operation record are what MONAI's transform gives (its lazy mode plans them;
nothing is sampled twice). Everything else goes to MONAI's own ``SpatialResample``: small volumes, ``nearest``
(labels: where a position falls exactly between two voxels, ``grid_sample``'s float32 grid decides the tie, and
a label must not change), spline orders, oblique maps, ``reflection`` padding, lazy execution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Spacing, Spacingd, SpatialResample

from .resample import _axis_permutation

__all__ = ["SlabSpatialResample", "SlabSpacing", "SlabSpacingd", "DEFAULT_SLAB_ABOVE", "DEFAULT_SLAB_VOXELS"]

DEFAULT_SLAB_ABOVE = 2**24  # voxels (256x256x256): smaller inputs take MONAI's path unchanged
DEFAULT_SLAB_VOXELS = 2**20  # voxels sampled at once: as fast as 2**22 on a 512x512x600 CT, 73 MiB less at peak
_SLAB_MODES = ("bilinear",)  # nearest: MONAI's, whose float32 grid decides ties (x.5) its own way
_SLAB_PADDING = ("border", "zeros")


def _taps(coord: torch.Tensor, n: int, padding_mode: str):
    """The two neighbours in a source axis of ``n`` voxels and their linear weights, at source positions ``coord``.

    ``grid_sample``'s rules: ``border`` clamps the position into the source; ``zeros`` gives a tap outside the
    source the weight 0.
    """
    if padding_mode == "border":
        coord = coord.clamp(0, n - 1)
    f = torch.floor(coord)
    w = (coord - f).float()
    i0, i1 = f, f + 1
    w0 = (1 - w) * ((i0 >= 0) & (i0 <= n - 1)).float()
    w1 = w * ((i1 >= 0) & (i1 <= n - 1)).float()
    return i0.clamp(0, n - 1).long(), i1.clamp(0, n - 1).long(), w0, w1


def _sample_axis(values: torch.Tensor, dim: int, taps) -> torch.Tensor:
    """``values`` interpolated along ``dim`` at ``taps`` (:func:`_taps`), in float32."""
    i0, i1, w0, w1 = taps
    shape = [1] * values.ndim
    shape[dim] = -1
    return values.index_select(dim, i0).float() * w0.reshape(shape) + values.index_select(dim, i1).float() * w1.reshape(
        shape
    )


def resample_axis_aligned(
    source: torch.Tensor,
    to_source: np.ndarray,
    axes: Sequence[int],
    out_shape: Sequence[int],
    padding_mode: str = "border",
    slab_voxels: int = DEFAULT_SLAB_VOXELS,
) -> torch.Tensor:
    """Sample ``source`` ``(C, X, Y, Z)`` (any dtype) bilinearly on an output grid of ``out_shape``, float32 out.

    ``to_source`` maps output voxel indices to source voxel indices (4x4) and only permutes, flips, scales and
    shifts axes: output axis ``a`` reads source axis ``axes[a]``. The output is filled one slab of its last axis
    at a time, each slab reading only the source slices it needs: at most ``slab_voxels`` source (and output)
    voxels per tap.
    """
    taps = []
    for a, n_out in enumerate(out_shape):
        coord = to_source[axes[a], a] * torch.arange(n_out, dtype=torch.float64) + to_source[axes[a], 3]
        taps.append(_taps(coord, source.shape[1 + axes[a]], padding_mode))
    out = torch.empty((source.shape[0], *out_shape), dtype=torch.float32)
    source_slice = source.numel() // max(source.shape[1 + axes[2]], 1)  # voxels of one source slice, all channels
    step = max(1, slab_voxels // max(source_slice, out_shape[0] * out_shape[1], 1))
    for k0 in range(0, out_shape[2], step):
        k1 = min(out_shape[2], k0 + step)
        slab = _sample_axis(source, 1 + axes[2], tuple(t[k0:k1] for t in taps[2]))  # source slices of this slab
        slab = slab.movedim(1 + axes[2], 3)  # the output's last axis in place; the other two follow
        first, second = (1, 2) if axes[0] < axes[1] else (2, 1)
        slab = _sample_axis(slab, first, taps[0])
        slab = _sample_axis(slab, second, taps[1])
        out[..., k0:k1] = slab if first == 1 else slab.transpose(1, 2)
    return out


class SlabSpatialResample(SpatialResample):
    """MONAI's ``SpatialResample`` that samples an input of at least ``slab_above`` voxels slab by slab, from its
    own dtype, when the map is axis-aligned (see the module's docstring). Same arguments and results.

    Args:
        slab_above: inputs with at least this many voxels (all channels) take the slab path.
        slab_voxels: output voxels sampled at once.
        kwargs: ``SpatialResample``'s.
    """

    def __init__(self, slab_above: int = DEFAULT_SLAB_ABOVE, slab_voxels: int = DEFAULT_SLAB_VOXELS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.slab_above = int(slab_above)
        self.slab_voxels = int(slab_voxels)

    def __call__(
        self,
        img: torch.Tensor,
        dst_affine: torch.Tensor | None = None,
        spatial_size: Sequence[int] | torch.Tensor | int | None = None,
        mode=None,
        padding_mode=None,
        align_corners: bool | None = None,
        dtype=None,
        lazy: bool | None = None,
    ) -> torch.Tensor:
        args = (img, dst_affine, spatial_size, mode, padding_mode, align_corners, dtype)
        mode_ = str(self.mode if mode is None else mode)
        padding_ = str(self.padding_mode if padding_mode is None else padding_mode)
        lazy_ = self.lazy if lazy is None else lazy
        if (
            lazy_
            or dst_affine is None
            or not isinstance(img, MetaTensor)
            or not get_track_meta()
            or img.pending_operations
            or img.ndim != 4
            or img.numel() < self.slab_above
            or mode_ not in _SLAB_MODES
            or padding_ not in _SLAB_PADDING
        ):
            return super().__call__(*args, lazy=lazy)
        src_affine = np.asarray(img.affine, dtype=np.float64)
        to_source = np.linalg.solve(src_affine, np.asarray(dst_affine, dtype=np.float64))
        axes = _axis_permutation(to_source)
        if axes is None:
            return super().__call__(*args, lazy=lazy)
        planned = super().__call__(*args, lazy=True)  # MONAI's output metadata and record, nothing sampled
        operation = planned.pending_operations[-1]
        out_shape = [int(s) for s in planned.peek_pending_shape()]
        sampled = resample_axis_aligned(img.as_tensor(), to_source, axes, out_shape, padding_, self.slab_voxels)
        planned.clear_pending_operations()
        out = MetaTensor(sampled, meta=planned.meta, applied_operations=list(planned.applied_operations))
        out.affine = torch.as_tensor(np.asarray(dst_affine, dtype=np.float64))
        out.push_applied_operation(operation)
        return out


class SlabSpacing(Spacing):
    """MONAI's ``Spacing`` whose resampling is :class:`SlabSpatialResample`.

    Args:
        slab_above, slab_voxels: see :class:`SlabSpatialResample`.
        kwargs: ``Spacing``'s.
    """

    def __init__(
        self, *args, slab_above: int = DEFAULT_SLAB_ABOVE, slab_voxels: int = DEFAULT_SLAB_VOXELS, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        old = self.sp_resample
        self.sp_resample = SlabSpatialResample(
            slab_above=slab_above,
            slab_voxels=slab_voxels,
            mode=old.mode,
            padding_mode=old.padding_mode,
            align_corners=old.align_corners,
            dtype=old.dtype,
            lazy=old.lazy,
        )


class SlabSpacingd(Spacingd):
    """MONAI's ``Spacingd`` whose resampling is :class:`SlabSpatialResample`: a config swaps ``Spacingd`` for
    ``transforms.SlabSpacingd`` and keeps its arguments.

    Args:
        keys, pixdim, allow_missing_keys: ``Spacingd``'s.
        slab_above, slab_voxels: see :class:`SlabSpatialResample`.
        kwargs: ``Spacingd``'s other arguments (``mode``, ``padding_mode``, ``dtype``, ``ensure_same_shape``...).
    """

    backend = Spacingd.backend

    def __init__(
        self,
        keys,
        pixdim,
        slab_above: int = DEFAULT_SLAB_ABOVE,
        slab_voxels: int = DEFAULT_SLAB_VOXELS,
        allow_missing_keys: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(keys, pixdim, allow_missing_keys=allow_missing_keys, **kwargs)
        old = self.spacing_transform
        self.spacing_transform = SlabSpacing(
            pixdim=old.pixdim,
            diagonal=old.diagonal,
            scale_extent=old.scale_extent,
            recompute_affine=old.recompute_affine,
            min_pixdim=old.min_pixdim,
            max_pixdim=old.max_pixdim,
            lazy=old.lazy,
            slab_above=slab_above,
            slab_voxels=slab_voxels,
            mode=old.sp_resample.mode,
            padding_mode=old.sp_resample.padding_mode,
            align_corners=old.sp_resample.align_corners,
            dtype=old.sp_resample.dtype,
        )
