"""Keep the largest connected component of a label map's foreground, labelled slab by slab.

MONAI's ``KeepLargestConnectedComponent(independent=False)`` gives the same label map; it labels the components
through scikit-image with 64-bit labels and keeps several full-size intermediates, +308 MiB on the 24.8 M-voxel
foreground box of a 512x512x600 CT (docs/performance.md). Here the label map is labelled in slabs of its first axis
(about ``slab_voxels`` voxels each, scipy's ``ndimage.label``); the pieces that touch across a slab boundary are
joined as a graph (scipy's ``connected_components``) and their sizes added up; a second pass labels again only the
slabs that hold a piece of a smaller component, to clear it. Nothing the size of the whole map is allocated: the
memory is a few slabs' labels, whatever the size of the foreground's box.
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
    the one met first in C order is kept, as MONAI does.

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
        slabs = _Slabs(labels, self.applied_labels, self.connectivity, self.slab_voxels)
        kept = slabs.largest_component_labels()
        if kept is None:
            return out
        on_device = isinstance(out, torch.Tensor) and out.device.type != "cpu"
        target = out if on_device else out[0].detach().numpy() if isinstance(out, torch.Tensor) else out[0]
        for region, clear in slabs.voxels_to_clear(kept):
            if on_device:
                target[0][region][torch.from_numpy(clear).to(out.device)] = 0
            else:  # one pass over the region, in place (torch's boolean indexing lists the voxels first)
                np.copyto(target[region], 0, where=clear)
        return out


class _Slabs:
    """The foreground of ``labels`` (values in ``applied``) labelled in slabs of whole planes of the first axis.

    Each slab's pieces get global numbers: the slab's offset plus scipy's labels, which count pieces in the order
    their first voxel comes in C order, so a component's smallest number marks its first voxel in the map. Each
    piece's box (``find_objects``) and first voxel are kept, so that a piece to clear can be found again by labelling
    its box alone.
    """

    def __init__(self, labels: np.ndarray, applied: Sequence[int], connectivity: int | None, slab_voxels: int):
        self.labels, self.applied = labels, applied
        self.structure = ndimage.generate_binary_structure(labels.ndim, connectivity or labels.ndim)
        plane = max(1, labels[0].size)
        step = max(1, slab_voxels // plane)
        self.rows = [slice(i, min(i + step, labels.shape[0])) for i in range(0, labels.shape[0], step)]
        self.offsets: list[int] = []  # global number of each slab's label 0 (its first piece is offset + 1)
        self.pieces: list[list[tuple[tuple[slice, ...], tuple[int, ...]]]] = []  # per slab: (box, first voxel)

    def _label(self, region: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, int]:
        """The foreground mask of ``labels[region]``, its component labels (int32) and their count."""
        foreground = _any_of(self.labels[region], self.applied)
        components = np.empty(foreground.shape, dtype=np.int32)
        count = int(ndimage.label(foreground, structure=self.structure, output=components))
        return foreground, components, count

    def largest_component_labels(self) -> np.ndarray | None:
        """Whether each global label (index 0: background, False) belongs to the largest component; None when
        there is nothing to clear (no foreground or one component)."""
        sizes, keys, previous_plane, total = [np.zeros(1, np.int64)], [], None, 0
        for rows in self.rows:
            _, components, count = self._label((rows,))
            self.offsets.append(total)
            self.pieces.append(_boxes_and_first_voxels(components))
            sizes.append(torch.bincount(torch.from_numpy(components.reshape(-1)), minlength=count + 1).numpy()[1:])
            first_plane = _global(components[:1], total)
            if previous_plane is not None:
                keys.extend(_touching(previous_plane, first_plane, self.structure[2:]))
            previous_plane = _global(components[-1:], total)
            total += count
        if total <= 1:
            return None
        pairs = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        edges = (np.ones(pairs.size, np.int8), (pairs >> 32, pairs & 0xFFFFFFFF))
        graph = coo_matrix(edges, shape=(total + 1, total + 1))
        n_components, component_of = connected_components(graph, directed=False)
        if n_components <= 2:  # the background node and one component
            return None
        component_sizes = np.bincount(component_of, weights=np.concatenate(sizes), minlength=n_components)
        component_sizes[component_of[0]] = -1
        first_label = np.full(n_components, total + 1, dtype=np.int64)
        np.minimum.at(first_label, component_of, np.arange(total + 1))
        largest = np.flatnonzero(component_sizes == component_sizes.max())
        winner = largest[np.argmin(first_label[largest])]  # equal sizes: the one met first in C order
        kept = component_of == winner
        kept[0] = False
        return kept

    def voxels_to_clear(self, kept: np.ndarray) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """Regions of the label map and the boolean masks of their voxels to clear: per piece of a smaller
        component, its box labelled again (the piece is the component there that holds its first voxel); a slab
        whose boxes to label add up to more than half of it is labelled again whole (scipy's labels are the same on
        the same slab)."""
        for rows, offset, pieces in zip(self.rows, self.offsets, self.pieces, strict=True):
            cleared = ~kept[offset + 1 : offset + len(pieces) + 1]
            if not cleared.any():
                continue
            to_clear = [pieces[i] for i in np.flatnonzero(cleared)]
            slab_size = (rows.stop - rows.start) * self.labels[0].size
            if sum(_box_size(box) for box, _ in to_clear) > slab_size // 2:
                foreground, components, _ = self._label((rows,))
                lookup = np.concatenate([[False], cleared])
                yield (rows,), np.logical_and(foreground, lookup[components], out=foreground)
                continue
            for box, first_voxel in to_clear:
                region = (slice(rows.start + box[0].start, rows.start + box[0].stop), *box[1:])
                foreground, components, _ = self._label(region)
                yield region, np.equal(components, components[first_voxel], out=foreground)


def _boxes_and_first_voxels(components: np.ndarray) -> list[tuple[tuple[slice, ...], tuple[int, ...]]]:
    """Per label 1..n of ``components``: its bounding box and its first voxel in C order, relative to the box (in
    the box's first plane: scipy numbers pieces in the order their first voxel comes)."""
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
