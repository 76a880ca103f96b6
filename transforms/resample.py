"""Resample a prediction from the network's grid back onto the input's own grid, one slab at a time.

MONAI's ``Invertd`` undoes the preprocessing step by step; on a 512x512x600 CT its resampling builds a sampling
grid and a float32 copy of every class at full size at once (measured: 9.3 GiB peak for two classes). The
prediction and the source volume are both placed in world space by their affines, so one direct resampling from
one grid to the other gives the same voxels (orientation, spacing and crop are all affine maps), and it can run
in slabs of the output: the peak is one slab of the sampling grid and of the class probabilities, plus the
output. With ``argmax=True`` each slab is reduced to labels as soon as it is sampled, so the full-size output is
one byte per voxel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from pipelines.validation.errors import DataError

__all__ = ["ResampleToSource", "ResampleToSourced", "source_geometry"]


def source_geometry(reference: MetaTensor) -> tuple[np.ndarray, tuple[int, ...]]:
    """The affine and spatial shape of the volume ``reference`` was loaded from (before any spatial transform).

    ``LoadImage`` records them in the metadata as ``original_affine`` (world coordinates, RAS) and
    ``spatial_shape``; both survive the later transforms.
    """
    meta = reference.meta if isinstance(reference, MetaTensor) else {}
    if "original_affine" not in meta or "spatial_shape" not in meta:
        raise DataError(
            f"{meta.get('filename_or_obj', 'image')}: no original_affine / spatial_shape in the metadata "
            "(was it loaded with LoadImage?); cannot resample the prediction back to its grid"
        )
    affine = np.asarray(meta["original_affine"], dtype=np.float64)
    shape = tuple(int(s) for s in np.asarray(meta["spatial_shape"]).reshape(-1))
    return affine, shape


def _index_to_normalised(src_affine: np.ndarray, dst_affine: np.ndarray, src_shape: Sequence[int]) -> torch.Tensor:
    """4x4 map from destination voxel indices (i, j, k) to ``grid_sample`` coordinates of the source.

    ``grid_sample`` with ``align_corners=True`` puts -1 and +1 on the centres of the first and last voxels; its
    coordinate order is reversed (the last spatial axis first).
    """
    to_source = np.linalg.solve(src_affine, dst_affine)  # destination index -> source index
    scale = np.eye(4)
    for axis, n in enumerate(src_shape):
        scale[axis, axis] = 2.0 / max(n - 1, 1)
        scale[axis, 3] = -1.0 if n > 1 else 0.0
    return torch.as_tensor((scale @ to_source)[[2, 1, 0, 3]], dtype=torch.float64)


def _axis_permutation(to_source: np.ndarray, tol: float = 1e-6) -> list[int] | None:
    """Source axis of each destination axis when the map only permutes, flips and scales axes; else ``None``."""
    linear = np.abs(to_source[:3, :3])
    big = linear > tol * max(linear.max(), 1e-12)
    if not (big.sum(axis=0) == 1).all() or not (big.sum(axis=1) == 1).all():
        return None
    return [int(np.argmax(big[:, a])) for a in range(3)]


def _axis_taps(coord: torch.Tensor, n: int, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour indices (into the source padded by one zero voxel per side) and linear weights along one axis.

    Positions more than one voxel outside the source read the zero padding, as ``grid_sample(padding_mode=
    "zeros", align_corners=True)`` does.
    """
    if mode == "nearest":
        i = torch.floor(coord + 0.5)
        idx = torch.where((i >= 0) & (i <= n - 1), i + 1, torch.zeros_like(i)).long()
        return idx, idx, torch.zeros_like(coord, dtype=torch.float32)
    f = torch.floor(coord)
    w = (coord - f).float()
    i0 = (f + 1).clamp(0, n + 1).long()
    i1 = (f + 2).clamp(0, n + 1).long()
    return i0, i1, w


def _reached(lo: int, hi: int, taps) -> tuple[int, int] | None:
    """The range of output positions along one axis whose taps (padded source indices) reach ``lo..hi``."""
    i0, i1, _ = taps
    reached = torch.nonzero(((i0 >= lo) & (i0 <= hi)) | ((i1 >= lo) & (i1 <= hi))).flatten()
    return (int(reached.min()), int(reached.max()) + 1) if reached.numel() else None


def _reached_ranges(candidates: torch.Tensor, taps) -> list[tuple[int, int]] | None:
    """Per axis of ``taps`` (the first ones of ``candidates``), the range of output positions whose two taps reach
    the bounding box of ``candidates`` (a boolean source volume, axes in output order); None when it holds no True
    voxel. Taps index the source padded by one voxel, hence the shift."""
    ranges = []
    for axis, axis_taps in enumerate(taps):
        other = tuple(d for d in range(candidates.ndim) if d != axis)
        hits = torch.nonzero(candidates.any(dim=other)).flatten()
        reached = _reached(int(hits.min()) + 1, int(hits.max()) + 1, axis_taps) if hits.numel() else None
        if reached is None:
            return None
        ranges.append(reached)
    return ranges


def _lerp(values: torch.Tensor, dim: int, taps) -> torch.Tensor:
    """Linear interpolation of ``values`` along ``dim`` at the taps of :func:`_axis_taps`."""
    i0, i1, w = taps
    shape = [1] * values.ndim
    shape[dim] = -1
    w = w.reshape(shape)
    return values.index_select(dim, i0) * (1 - w) + values.index_select(dim, i1) * w


def _label_from_differences(differences: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Labels ``(1, ...)`` from ``p_c - p_0`` for c >= 1: class 0 unless some difference is positive."""
    best, index = differences.max(0, keepdim=True)
    return torch.where(best > 0, index + 1, 0).to(dtype)


class ResampleToSource(Transform):
    """Resample ``img`` ``(C, x, y, z)`` (on the network's grid) onto its source volume's grid, in slabs.

    Args:
        mode: ``"bilinear"`` (probabilities, as ``Invertd(nearest_interp=False)``) or ``"nearest"`` (labels).
        argmax: reduce the channels to a label per voxel (``(1, X, Y, Z)``, uint8, or int16 with more than 255
            classes) slab by slab, instead of returning the resampled channels.
        slab_voxels: output voxels sampled at once (memory: about 16 bytes per voxel per channel during a slab).
        padding_mode: ``grid_sample``'s. ``"zeros"`` (default): outside the prediction's grid (the part the
            preprocessing cropped away) every channel is 0, so argmax gives background, as with ``Invertd``.
            Axis-aligned maps (any orientation, spacing and crop) are interpolated separably, one axis at a time;
            other maps, or another padding mode, go through ``grid_sample``.
        foreground_box: with ``argmax`` on an axis-aligned map, sample only the output box whose interpolation
            taps reach a source voxel where some class beats background; elsewhere every tap is background, and
            so is the label (interpolation weights are non-negative). The same test narrows each slab to the x
            and y range its own source slices reach, and skips slabs that reach none. The same labels, a fraction
            of the work when the foreground is small or scattered (a 512x512x600 CT whose demo-model foreground
            spans 57% of the volume in one box: 2.17 -> 0.86 s against the whole box alone).

    The call takes ``img`` (a ``MetaTensor`` whose affine places it in world space) and ``reference`` (the
    preprocessed input, whose metadata holds its source's affine and shape; see :func:`source_geometry`). The
    result carries ``reference``'s metadata with the source affine, so ``SaveImage`` writes it on the input's grid.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        mode: str = "bilinear",
        argmax: bool = False,
        slab_voxels: int = 2**20,
        padding_mode: str = "zeros",
        foreground_box: bool = True,
    ) -> None:
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.mode = mode
        self.argmax = argmax
        self.foreground_box = foreground_box
        self.slab_voxels = int(slab_voxels)
        self.padding_mode = padding_mode

    def __call__(self, img: torch.Tensor, reference: MetaTensor) -> MetaTensor:
        """Resample ``img`` onto the grid ``reference`` was loaded from."""
        src_affine = np.asarray(img.affine if isinstance(img, MetaTensor) else reference.affine, dtype=np.float64)
        dst_affine, dst_shape = source_geometry(reference)
        if img.ndim != 4 or len(dst_shape) != 3:
            raise DataError(
                f"{reference.meta.get('filename_or_obj', 'image')}: expected a (C, x, y, z) prediction and a 3D "
                f"source volume, got {tuple(img.shape)} and {dst_shape}"
            )
        source = torch.as_tensor(img).float()
        to_source = np.linalg.solve(src_affine, dst_affine)  # destination voxel index -> source voxel index
        channels = 1 if self.argmax else source.shape[0]
        label_dtype = torch.uint8 if source.shape[0] <= 256 else torch.int16
        out_type = label_dtype if self.argmax else torch.float32
        out = (torch.zeros if self.argmax else torch.empty)((channels, *dst_shape), dtype=out_type)
        step = max(1, self.slab_voxels // max(dst_shape[0] * dst_shape[1], 1))
        axes = _axis_permutation(to_source) if self.padding_mode == "zeros" else None
        # argmax of interpolated channels = argmax of (0, interpolated differences to channel 0): interpolation is
        # linear and zero outside, so channel 0 need not be resampled (2 classes: half the work). Ties go to the
        # lower class either way.
        values = source[1:] - source[:1] if self.argmax else source
        if axes is not None:
            slabs = self._separable_slabs(values, to_source, axes, dst_shape, step)
        else:
            slabs = self._grid_sample_slabs(values, src_affine, dst_affine, dst_shape, step)
        for box, sampled in slabs:
            values_out = _label_from_differences(sampled, label_dtype) if self.argmax else sampled
            out[(slice(None), *box)] = values_out.cpu()
        meta = dict(reference.meta)
        meta["affine"] = torch.as_tensor(dst_affine)
        meta["spatial_shape"] = np.asarray(dst_shape)
        return MetaTensor(out, meta=meta)  # the affine from meta (both would warn "Setting affine ...")

    def _separable_slabs(self, source, to_source, axes, dst_shape, step):
        """Axis-aligned maps (the bundles' preprocessing): interpolate along x, then y, then z slab by slab."""
        permuted = source.permute(0, *(1 + a for a in axes))
        padded = F.pad(permuted, (1, 1, 1, 1, 1, 1))
        taps = []
        for a, n_out in enumerate(dst_shape):
            coord = to_source[axes[a], a] * torch.arange(n_out, dtype=torch.float64) + to_source[axes[a], 3]
            taps.append(_axis_taps(coord, source.shape[1 + axes[a]], self.mode))
        ranges = [(0, n) for n in dst_shape]
        candidates = None
        if self.argmax and self.foreground_box:
            candidates = permuted.amax(0) > 0
            ranges = _reached_ranges(candidates, taps)
            if ranges is None:  # no class beats background anywhere: all background
                return
            taps = [tuple(t[lo:hi] for t in axis_taps) for axis_taps, (lo, hi) in zip(taps, ranges, strict=True)]
        (x0, x1), (y0, y1), (z0, z1) = ranges
        for k0 in range(0, z1 - z0, step):  # z first, on the small source: memory stays within one slab
            k1 = min(z1 - z0, k0 + step)
            slab_taps = tuple(t[k0:k1] for t in taps[2])
            xy = [(0, x1 - x0), (0, y1 - y0)]
            if candidates is not None:  # the same box, per slab: the source slices this slab's taps read
                xy = self._slab_ranges(candidates, slab_taps, taps[:2])
                if xy is None:  # every tap of the slab is background: its labels stay 0
                    continue
            (i0, i1), (j0, j1) = xy
            slab = _lerp(padded, 3, slab_taps)
            slab = _lerp(slab, 1, tuple(t[i0:i1] for t in taps[0]))
            yield (
                (slice(x0 + i0, x0 + i1), slice(y0 + j0, y0 + j1), slice(z0 + k0, z0 + k1)),
                _lerp(slab, 2, tuple(t[j0:j1] for t in taps[1])),
            )

    @staticmethod
    def _slab_ranges(candidates, z_taps, xy_taps) -> list[tuple[int, int]] | None:
        """The x and y output ranges (within ``xy_taps``) whose taps reach a candidate voxel of the source slices
        the z taps of one slab read; None when those slices hold none."""
        i0, i1, _ = z_taps
        lo = max(int(torch.minimum(i0, i1).min()) - 1, 0)  # padded indices -> source slices
        hi = min(int(torch.maximum(i0, i1).max()) - 1, candidates.shape[2] - 1)
        if lo > hi:  # the slab reads only the zero padding
            return None
        return _reached_ranges(candidates[:, :, lo : hi + 1], xy_taps)

    def _grid_sample_slabs(self, source, src_affine, dst_affine, dst_shape, step):
        """Any affine map: ``grid_sample`` on one slab of output slices at a time."""
        theta = _index_to_normalised(src_affine, dst_affine, source.shape[1:])
        nx, ny, nz = dst_shape
        ii, jj = torch.meshgrid(
            torch.arange(nx, dtype=torch.float64), torch.arange(ny, dtype=torch.float64), indexing="ij"
        )
        for k0 in range(0, nz, step):
            k1 = min(nz, k0 + step)
            index = torch.stack(
                [
                    ii[..., None].expand(nx, ny, k1 - k0),
                    jj[..., None].expand(nx, ny, k1 - k0),
                    torch.arange(k0, k1, dtype=torch.float64).expand(nx, ny, k1 - k0),
                    torch.ones(nx, ny, k1 - k0, dtype=torch.float64),
                ],
                dim=-1,
            )
            grid = (index @ theta.T)[..., :3].float().to(source.device)
            sampled = F.grid_sample(
                source[None], grid[None], mode=self.mode, padding_mode=self.padding_mode, align_corners=True
            )
            yield (slice(None), slice(None), slice(k0, k1)), sampled[0]


class ResampleToSourced(MapTransform):
    """Dictionary twin of :class:`ResampleToSource`: ``data[key]`` onto the source grid of ``data[ref_key]``.

    Args:
        keys: the predictions to resample (``pred``).
        ref_key: the preprocessed input whose source grid is the target (``image``).
        mode, argmax, slab_voxels, padding_mode, foreground_box: see :class:`ResampleToSource`.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = ResampleToSource.backend

    def __init__(
        self,
        keys: KeysCollection,
        ref_key: Hashable = "image",
        mode: str = "bilinear",
        argmax: bool = False,
        slab_voxels: int = 2**20,
        padding_mode: str = "zeros",
        foreground_box: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.resampler = ResampleToSource(
            mode=mode, argmax=argmax, slab_voxels=slab_voxels, padding_mode=padding_mode, foreground_box=foreground_box
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resampler(d[key], d[self.ref_key])
        return d
