"""Keep the largest connected component of a label map's foreground, labelled slab by slab.

MONAI's ``KeepLargestConnectedComponent(independent=False)`` gives the same label map; it labels the components
through scikit-image with 64-bit labels and keeps several full-size intermediates, +308 MiB on the 24.8 M-voxel
foreground box of a 512x512x600 CT (docs/performance.md). Here the foreground is first split at empty planes of the
last axis (the planes between a gate's kept slabs: no component crosses them), and each run of occupied planes is
labelled in its own box, in slabs of its first axis (about ``slab_voxels`` voxels each, scipy's ``ndimage.label``).
The pieces that touch across a slab boundary are joined as a graph (scipy's ``connected_components``) and their
sizes added up. The pieces of the smaller components are then found again by labelling their own boxes and cleared.
Nothing the size of the whole map is allocated: the memory is a few slabs' labels, whatever the size of the
foreground's box.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["KeepLargestComponent", "KeepLargestComponentd"]


class KeepLargestComponent(Transform):
    """Set to 0 every voxel of ``applied_labels`` outside the largest connected component of their union.

    The same result as MONAI's ``KeepLargestConnectedComponent(applied_labels, independent=False,
    connectivity)``, computed slab by slab (see the module's docstring). Where two components are equally large,
    the one whose first voxel comes first in C order is kept (MONAI's choice is an unstable sort's).

    Args:
        applied_labels: the label values that together form the foreground (the liver bundle: liver and tumour).
        connectivity: neighbours as MONAI counts them: the number of orthogonal hops, 1 to the number of spatial
            dimensions; ``None``: all of them (26-connectivity in 3D).
        inplace: clear the smaller components in ``img`` itself and return it, not a copy (inside
            ``InForegroundBox(inplace=True)``: the box of the prediction is changed where it lies).
        slab_voxels: about how many voxels are labelled at a time (whole planes of the first spatial axis): the
            memory is about 13 bytes per voxel of one slab.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        applied_labels: Sequence[int] | int,
        connectivity: int | None = None,
        inplace: bool = False,
        slab_voxels: int = 2**22,
    ) -> None:
        self.applied_labels = [int(v) for v in np.atleast_1d(applied_labels)]
        self.connectivity = connectivity
        self.inplace = inplace
        self.slab_voxels = int(slab_voxels)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img``: a channel-first label map ``(1, ...)``; returns a copy with the smaller components cleared (``img``
        itself, changed, with ``inplace``)."""
        if img.shape[0] != 1:
            raise ValueError(f"expected a label map with one channel, got shape {tuple(img.shape)}")
        labels = img[0].detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img[0])
        out = img if self.inplace else img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        if labels.ndim == 0 or labels.size == 0:
            return out
        parts = [
            _Slabs(labels, region, self.applied_labels, self.connectivity, self.slab_voxels)
            for region in _occupied_boxes(labels, self.applied_labels, self.slab_voxels)
        ]
        for part in parts:
            part.label_components()
        if sum(part.n_components for part in parts) <= 1:
            return out
        # the largest component; equal sizes: the one whose first voxel comes first in C order
        best = max(parts, key=lambda part: part.largest_key)
        on_device = isinstance(out, torch.Tensor) and out.device.type != "cpu"
        target = out if on_device else out[0].detach().numpy() if isinstance(out, torch.Tensor) else out[0]
        for part in parts:
            for region, clear in part.voxels_to_clear(kept_only_largest=part is best):
                if on_device:
                    target[0][region][torch.from_numpy(clear).to(out.device)] = 0
                else:  # one pass over the region, in place (torch's boolean indexing lists the voxels first)
                    np.copyto(target[region], 0, where=clear)
        return out


def _occupied_boxes(labels: np.ndarray, applied: Sequence[int], slab_voxels: int) -> list[tuple[slice, ...]]:
    """The boxes of ``labels``' foreground between empty planes of its last axis: for each run of planes holding
    foreground, the box of the foreground in it. No component crosses an empty plane, whatever the connectivity,
    so each box can be labelled on its own; the planes between them (a gate's skipped slabs) are never labelled."""
    last = labels.shape[-1]
    if labels.ndim == 1:
        occupied = [_any_of(labels, applied)]
    else:
        occupied = [np.zeros((n, last), dtype=bool) for n in labels.shape[:-1]]  # per axis: (index, plane)
        step = max(1, slab_voxels // max(1, labels[0].size))
        for i in range(0, labels.shape[0], step):
            foreground = torch.from_numpy(_any_of(labels[i : i + step], applied))
            for axis in range(labels.ndim - 1):
                others = tuple(a for a in range(labels.ndim - 1) if a != axis)
                hits = (foreground.amax(dim=others) if others else foreground).numpy()
                if axis == 0:
                    occupied[0][i : i + step] |= hits
                else:
                    occupied[axis] |= hits
    planes = occupied[0].any(axis=0) if labels.ndim > 1 else occupied[0]
    edges = np.flatnonzero(np.diff(np.concatenate([[False], planes, [False]]).astype(np.int8)))
    boxes = []
    for z0, z1 in zip(edges[::2], edges[1::2], strict=True):
        box = []
        for hits in occupied[: labels.ndim - 1]:
            index = np.flatnonzero(hits[:, z0:z1].any(axis=1))
            box.append(slice(int(index[0]), int(index[-1]) + 1))
        boxes.append((*box, slice(int(z0), int(z1))))
    return boxes


class _Slabs:
    """The foreground (values in ``applied``) of the box ``region`` of ``labels``, labelled in slabs of whole planes
    of the box's first axis.

    Each slab's pieces get global numbers: the slab's offset plus scipy's labels. Each piece's box
    (``find_objects``) and first voxel are kept, so that a piece to clear can be found again by labelling its box
    alone. Regions are in ``labels``' coordinates.
    """

    def __init__(
        self,
        labels: np.ndarray,
        region: tuple[slice, ...],
        applied: Sequence[int],
        connectivity: int | None,
        slab_voxels: int,
    ):
        self.labels, self.region, self.applied = labels, region, applied
        self.structure = ndimage.generate_binary_structure(labels.ndim, connectivity or labels.ndim)
        first = region[0]
        self.plane_voxels = _box_size(region[1:])
        step = max(1, slab_voxels // max(1, self.plane_voxels))
        self.rows = [slice(i, min(i + step, first.stop)) for i in range(first.start, first.stop, step)]
        self.offsets: list[int] = []  # global number of each slab's label 0 (its first piece is offset + 1)
        self.pieces: list[list[tuple[tuple[slice, ...], tuple[int, ...]]]] = []  # per slab: (box, first voxel)
        self.n_components = 0

    def _label(self, region: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, int]:
        """The foreground mask of ``labels[region]``, its component labels (int32) and their count."""
        foreground = _any_of(self.labels[region], self.applied)
        components = np.empty(foreground.shape, dtype=np.int32)
        count = int(ndimage.label(foreground, structure=self.structure, output=components))
        return foreground, components, count

    def label_components(self) -> None:
        """Label every slab, join the pieces that touch across slab boundaries into components, and count each
        component's voxels and find its first voxel in C order (its flat index in ``labels``)."""
        sizes, keys, firsts, previous_plane, total = [np.zeros(1, np.int64)], [], [np.zeros(1, np.int64)], None, 0
        for rows in self.rows:
            slab = (rows, *self.region[1:])
            _, components, count = self._label(slab)
            pieces = _boxes_and_first_voxels(components)
            self.offsets.append(total)
            self.pieces.append(pieces)
            sizes.append(torch.bincount(torch.from_numpy(components.reshape(-1)), minlength=count + 1).numpy()[1:])
            corner = np.array([r.start for r in slab])
            firsts.append(
                np.array(
                    [
                        np.ravel_multi_index(tuple(corner + _start(box) + first), self.labels.shape)
                        for box, first in pieces
                    ],
                    dtype=np.int64,
                )
            )
            first_plane = _global(components[:1], total)
            if previous_plane is not None:
                keys.extend(_touching(previous_plane, first_plane, self.structure[2:]))
            previous_plane = _global(components[-1:], total)
            total += count
        pairs = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        graph = coo_matrix((np.ones(pairs.size, np.int8), (pairs >> 32, pairs & 0xFFFFFFFF)), shape=(total + 1,) * 2)
        n_nodes, self.component_of = connected_components(graph, directed=False)
        self.n_components = n_nodes - 1  # the background node is one
        self.sizes = np.bincount(self.component_of, weights=np.concatenate(sizes), minlength=n_nodes)
        self.sizes[self.component_of[0]] = -1
        self.first_voxel = np.full(n_nodes, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(self.first_voxel, self.component_of[1:], np.concatenate(firsts)[1:])
        largest = np.flatnonzero(self.sizes == self.sizes.max())
        self.winner = int(largest[np.argmin(self.first_voxel[largest])])  # equal sizes: the first in C order

    @property
    def largest_key(self) -> tuple[float, int]:
        """A sort key of this region's largest component (:attr:`winner`): its size, then how early its first voxel
        comes."""
        return (float(self.sizes[self.winner]), -int(self.first_voxel[self.winner]))

    def voxels_to_clear(self, kept_only_largest: bool) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """Regions of ``labels`` and the boolean masks of their voxels to clear: every component of this region but
        its largest (``kept_only_largest``), or all of them. A slab with nothing kept is cleared through its
        foreground mask; a piece of a smaller component beside a kept one is found again by labelling its box (the
        piece is the component there that holds its first voxel); a slab whose boxes to label add up to more than
        half of it is labelled again whole (scipy's labels are the same on the same slab)."""
        kept = (self.component_of == self.winner) if kept_only_largest else np.zeros(self.component_of.size, bool)
        kept[0] = False
        for rows, offset, pieces in zip(self.rows, self.offsets, self.pieces, strict=True):
            cleared = ~kept[offset + 1 : offset + len(pieces) + 1]
            if not cleared.any():
                continue
            slab = (rows, *self.region[1:])
            if cleared.all():
                yield slab, _any_of(self.labels[slab], self.applied)
                continue
            to_clear = [pieces[i] for i in np.flatnonzero(cleared)]
            if sum(_box_size(box) for box, _ in to_clear) > (rows.stop - rows.start) * self.plane_voxels // 2:
                foreground, components, _ = self._label(slab)
                lookup = np.concatenate([[False], cleared])
                yield slab, np.logical_and(foreground, lookup[components], out=foreground)
                continue
            for box, first_voxel in to_clear:
                region = tuple(slice(s.start + b.start, s.start + b.stop) for s, b in zip(slab, box, strict=True))
                foreground, components, _ = self._label(region)
                yield region, np.equal(components, components[first_voxel], out=foreground)


def _start(box: tuple[slice, ...]) -> np.ndarray:
    return np.array([b.start for b in box])


def _boxes_and_first_voxels(components: np.ndarray) -> list[tuple[tuple[slice, ...], tuple[int, ...]]]:
    """Per label 1..n of ``components``: its bounding box and its first voxel in C order, relative to the box (in
    the box's first plane)."""
    pieces = []
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        first_plane = components[(box[0].start, *box[1:])]
        in_plane = np.unravel_index(int(np.argmax(first_plane == label)), first_plane.shape)
        pieces.append((box, (0, *(int(i) for i in in_plane))))
    return pieces


def _box_size(box: tuple[slice, ...]) -> int:
    return int(np.prod([b.stop - b.start for b in box]))


def _global(plane: np.ndarray, offset: int) -> np.ndarray:
    """A plane of a slab's labels with the slab's offset added to its pieces' labels (int64)."""
    numbered = plane.astype(np.int64)
    numbered[numbered > 0] += offset
    return numbered


def _touching(before: np.ndarray, after: np.ndarray, across: np.ndarray) -> Iterator[np.ndarray]:
    """Keys ``a << 32 | b`` of the global labels ``a``, ``b`` that touch across a slab boundary: ``before`` is the last
    plane of one slab, ``after`` the first plane of the next (both with their first axis, of length 1), ``across``
    the structure's neighbours in the next plane (``structure[2:]``)."""
    offsets = np.argwhere(across) - 1
    offsets[:, 0] = 0  # the planes are one apart along the first axis; the rest is the in-plane offset
    for offset in offsets:
        source = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(offset, before.shape, strict=True))
        target = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(offset, after.shape, strict=True))
        a, b = before[source], after[target]
        both = (a > 0) & (b > 0)
        if both.any():
            yield np.unique((a[both] << 32) | b[both])


def _any_of(labels: np.ndarray, values: Sequence[int], slab_voxels: int = 2**22) -> np.ndarray:
    """The boolean mask of ``labels`` in ``values``, computed slab by slab along the first axis: the temporary
    mask of each comparison is one slab, not one volume."""
    foreground = np.empty(labels.shape, dtype=bool)
    if labels.ndim == 0 or labels.size == 0:
        foreground[...] = np.isin(labels, values)
        return foreground
    step = max(1, slab_voxels // max(1, labels[0].size))
    for i in range(0, labels.shape[0], step):
        slab, out = labels[i : i + step], foreground[i : i + step]
        np.equal(slab, values[0], out=out)
        for value in values[1:]:
            out |= slab == value
    return foreground


class KeepLargestComponentd(MapTransform):
    """Dictionary twin of :class:`KeepLargestComponent`.

    Args:
        keys: the label maps.
        applied_labels, connectivity, inplace, slab_voxels: see :class:`KeepLargestComponent`.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = KeepLargestComponent.backend

    def __init__(
        self,
        keys: KeysCollection,
        applied_labels: Sequence[int] | int,
        connectivity: int | None = None,
        inplace: bool = False,
        slab_voxels: int = 2**22,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.keep = KeepLargestComponent(applied_labels, connectivity, inplace, slab_voxels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.keep(d[key])
        return d
