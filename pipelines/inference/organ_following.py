"""Grow the cascade's kept slices where the segmenter finds the organ running on past the gate's edge.

The slice gate decides where the 3D segmenter looks; at the edges of an organ (the tip of the liver's right lobe,
a lesion's last slices) it is least sure, and a slice it drops is lost for good. After the kept slabs are
segmented, :func:`follow_edges` looks at the segmenter's labels on the outermost kept slice of each run: while
that slice holds at least ``min_voxels`` foreground voxels (the organ goes on), the run grows outwards slice by
slice, segmenting a window-deep slab ahead of it when no logits are there yet, as long as each new slice holds no
more foreground than the one before it: an organ narrows towards its tip. It stops after the first slice with
fewer than ``min_voxels`` (the organ has ended), before a slice that widens again (the segmenter's false
positives beyond the organ: on the long-scan phantoms the demo segmenter labels liver in most of the pelvis, and
following it there cost Dice and time), at the volume's end, or where it meets another kept run. Foreground that
only reappears beyond an empty slice is never reached.

Everything here works on the last axis of channel-first logits ``(C, X, Y, Z)``; the segmenter is a callable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipelines.inference.slabs import Slab, slabs_of

__all__ = ["follow_edges", "foreground_voxels"]


def foreground_voxels(logits: torch.Tensor) -> int:
    """Voxels of one slice of logits ``(C, X, Y)`` whose most likely class is not the background (class 0)."""
    return int((logits.argmax(0) > 0).sum())


def _ahead(next_slice: int, step: int, depth: int, n: int) -> Slab:
    """A slab of ``depth`` slices (within ``[0, n)``) reaching a quarter window behind ``next_slice`` (context)
    and the rest ahead of it, in the direction ``step`` (+1 or -1)."""
    depth = max(1, min(depth, n))
    behind = depth // 4
    start = next_slice - behind if step > 0 else next_slice + behind + 1 - depth
    start = min(max(start, 0), n - depth)
    return Slab(start, start + depth)


def follow_edges(
    out: torch.Tensor,
    kept: np.ndarray,
    segmented: np.ndarray,
    segment: Callable[[Slab], torch.Tensor],
    min_voxels: int,
    depth: int,
) -> list[Slab]:
    """Grow the runs of ``kept`` outwards while the segmenter labels a narrowing organ beyond their edge slices.

    Args:
        out: logits ``(C, X, Y, Z)``, valid on the ``segmented`` slices; the slabs segmented here are pasted in.
        kept: boolean array of length Z, the slices the gate kept; grown in place.
        segmented: boolean array of length Z, the slices ``out`` holds logits for; grown in place.
        segment: returns the logits ``(C, X, Y, len(slab))`` of a slab of the volume.
        min_voxels: an edge slice with at least this many foreground voxels makes its run grow (the least area
            that made a slice positive when the gate was trained); below 1, nothing grows.
        depth: slices per slab segmented ahead of an edge (the segmenter's window depth).

    Returns:
        the slices added to ``kept``, as slabs in increasing order.
    """
    n = kept.shape[0]
    added = np.zeros(n, dtype=bool)
    if min_voxels < 1 or not kept.any():
        return []
    runs = slabs_of(kept)
    for edge, step in [(run.start, -1) for run in runs] + [(run.stop - 1, 1) for run in runs]:
        edge_voxels = foreground_voxels(out[..., edge])
        while edge_voxels >= min_voxels:
            nxt = edge + step
            if not 0 <= nxt < n or kept[nxt]:
                break  # the volume ends, or the run meets another one
            if not segmented[nxt]:
                slab = _ahead(nxt, step, depth, n)
                logits = segment(slab).to(out.dtype)
                new = np.flatnonzero(~segmented[slab.start : slab.stop])  # slices segmented before keep theirs
                index = torch.from_numpy(new).to(out.device)
                out[..., index + slab.start] = logits[..., index.to(logits.device)]
                segmented[slab.start + new] = True
            next_voxels = foreground_voxels(out[..., nxt])
            if next_voxels > edge_voxels:
                break  # an organ narrows towards its tip: a wider slice is something else the segmenter labels
            kept[nxt] = added[nxt] = True
            edge, edge_voxels = nxt, next_voxels
    return slabs_of(added)
