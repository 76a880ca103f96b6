"""Slab selection for the cascade: from per-slice probabilities of a 2D classifier to ranges of slices for 3D.

The cascade scores every axial slice of a volume, then segments in 3D only the slabs this module selects::

    probs = classifier_probabilities(volume)  # shape (n_slices,), values in [0, 1]
    slabs = select_slabs(probs, threshold=0.5, smoothing_window=3, smoothing="median", margin_mm=10.0,
                         slice_spacing_mm=2.5, min_run=2, merge="gaps", merge_gap=4)
    for slab in slabs:
        segment(volume[..., slab.as_slice()])

The steps of :func:`select_slabs`, in order: smooth, threshold (``>=``), find runs of positive slices, drop runs
shorter than ``min_run``, grow each run by the margin on both sides, clip to ``[0, n)``, merge. Everything here is
pure numpy and works on one axis; which array axis holds the slices is the caller's business.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Slab", "smooth_probabilities", "select_slabs", "slab_mask", "slabs_of", "covered_slices"]

logger = logging.getLogger(__name__)

SMOOTHING_METHODS = ("mean", "median")
MERGE_MODES = ("gaps", "all", "none")
# margin_mm / spacing is rounded up, but 1.1 / 0.1 == 11.000000000000002 must still give 11 slices, not 12.
_CEIL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Slab:
    """A half-open range ``[start, stop)`` of slice indices along the slice axis; never empty.

    Attributes:
        start: first slice of the slab (``>= 0``).
        stop: one past the last slice of the slab (``> start``).

    Raises:
        ValueError: when ``start`` or ``stop`` is not an integer, ``start < 0`` or ``stop <= start``.
    """

    start: int
    stop: int

    def __post_init__(self) -> None:
        for name in ("start", "stop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"Slab.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints (JSON, hashing)
        if self.start < 0:
            raise ValueError(f"Slab.start must be >= 0, got {self.start}")
        if self.stop <= self.start:
            raise ValueError(f"Slab.stop must be greater than Slab.start, got [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    def as_slice(self) -> slice:
        """The slab as a ``slice`` object, to index the slice axis of an array."""
        return slice(self.start, self.stop)

    def to_dict(self) -> dict[str, int]:
        """``{"start": start, "stop": stop}``, JSON-serialisable (``stop`` is exclusive)."""
        return {"start": self.start, "stop": self.stop}


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_probabilities(probs: object) -> np.ndarray:
    """``probs`` as a 1-D float64 array, checked to be non-empty, finite and within [0, 1]."""
    try:
        array = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"probs must be a 1-D array of numbers, could not convert it: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"probs must be 1-D (one probability per slice), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("probs is empty: a volume needs at least one slice")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"probs must be finite, got {int(bad.sum())} NaN/inf value(s), first at slice {_first(bad)}")
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        index = _first(outside)
        raise ValueError(
            f"probs must lie in [0, 1], got {int(outside.sum())} value(s) outside, first {array[index]!r} "
            f"at slice {index}"
        )
    return array


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def smooth_probabilities(probs: object, window: int = 1, method: str = "mean") -> np.ndarray:
    """Moving mean or median of per-slice probabilities along the slice axis.

    The window is centred on each slice. At the ends of the volume the first and last values are repeated
    ("nearest" / edge padding), so a run that touches the first or last slice is not weakened by the edge.

    Args:
        probs: 1-D per-slice probabilities, finite and in [0, 1].
        window: width of the moving window in slices, a positive odd integer; 1 returns an unsmoothed copy.
            It may be longer than the volume.
        method: ``"mean"`` (moving average) or ``"median"`` (removes isolated spikes and fills isolated holes
            narrower than half the window).

    Returns:
        A new float64 array of the same length as ``probs``, still within [0, 1].

    Raises:
        ValueError: for invalid ``probs``, a ``window`` that is not a positive odd integer, or an unknown
            ``method``.
    """
    array = _as_probabilities(probs)
    window = _check_positive_int(window, "window")
    if window % 2 == 0:
        raise ValueError(f"window must be odd so that it is centred on a slice, got {window}")
    if method not in SMOOTHING_METHODS:
        raise ValueError(f"method must be one of {SMOOTHING_METHODS}, got {method!r}")
    if window == 1:
        return array.copy()
    half = window // 2
    windows = sliding_window_view(np.pad(array, half, mode="edge"), window)
    smoothed = windows.mean(axis=1) if method == "mean" else np.median(windows, axis=1)
    return np.clip(smoothed, 0.0, 1.0)  # a mean of values in [0, 1] can round a hair outside


def _runs(positive: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` of each maximal run of True values."""
    padded = np.concatenate(([False], positive, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(start), int(stop)) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def _margin_in_slices(margin_slices: int, margin_mm: float | None, slice_spacing_mm: float | None) -> int:
    margin_slices = _check_positive_int(margin_slices, "margin_slices", minimum=0)
    if margin_mm is None:
        return margin_slices
    if margin_slices != 0:
        raise ValueError(
            f"margin_slices ({margin_slices}) and margin_mm ({margin_mm}) are mutually exclusive: give only one"
        )
    if isinstance(margin_mm, bool) or not isinstance(margin_mm, numbers.Real) or not math.isfinite(margin_mm):
        raise ValueError(f"margin_mm must be a finite number, got {margin_mm!r}")
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    if margin_mm == 0:  # no margin: no spacing needed (``cascade_margin_mm: 0`` once stopped every inference)
        return 0
    if slice_spacing_mm is None:
        raise ValueError("margin_mm needs slice_spacing_mm (the distance between slices in mm) to convert it")
    if (
        isinstance(slice_spacing_mm, bool)
        or not isinstance(slice_spacing_mm, numbers.Real)
        or not math.isfinite(slice_spacing_mm)
        or slice_spacing_mm <= 0
    ):
        raise ValueError(f"slice_spacing_mm must be a finite number > 0, got {slice_spacing_mm!r}")
    return max(0, math.ceil(margin_mm / slice_spacing_mm - _CEIL_TOLERANCE))


def _at_least(start: int, stop: int, length: int, n: int) -> tuple[int, int]:
    """``[start, stop)`` grown about its centre to ``length`` slices, kept within ``[0, n)``."""
    if stop - start >= length:
        return start, stop
    if n <= length:
        return 0, n
    start = max(0, min(start - (length - (stop - start)) // 2, n - length))
    return start, start + length


def _merge(intervals: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    """Merge sorted intervals whose gap ``next.start - previous.stop`` is ``<= max_gap``.

    ``max_gap=-1`` merges only overlapping intervals (touching ones stay apart).
    """
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(intervals):
        if merged and start - merged[-1][1] <= max_gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def select_slabs(
    probs: object,
    threshold: float = 0.5,
    smoothing_window: int = 1,
    smoothing: str = "mean",
    margin_slices: int = 0,
    margin_mm: float | None = None,
    slice_spacing_mm: float | None = None,
    min_run: int = 1,
    merge: str = "gaps",
    merge_gap: int = 0,
    min_length: int = 1,
) -> list[Slab]:
    """Select the slabs to segment from per-slice probabilities.

    Steps, in order:

    1. smooth with :func:`smooth_probabilities` (``smoothing_window``, ``smoothing``);
    2. a slice is positive when its smoothed probability is ``>= threshold``;
    3. find the maximal runs of consecutive positive slices;
    4. drop runs shorter than ``min_run`` slices (measured before any margin);
    5. grow each run by the margin on both sides: ``margin_slices``, or ``ceil(margin_mm / slice_spacing_mm)``
       slices when ``margin_mm`` is given (the two are mutually exclusive);
    6. clip to ``[0, n)``;
    7. merge, by ``merge``:

       - ``"gaps"``: merge slabs that overlap or whose gap (number of unselected slices between them) is
         ``<= merge_gap``. With ``merge_gap=0`` slabs that touch (``a.stop == b.start``) are merged.
       - ``"all"``: a single slab from the first start to the last stop (everything between is segmented).
       - ``"none"``: keep the grown runs apart, but merge those that overlap (share at least one slice), so no
         slice is segmented twice; touching slabs stay separate.

    Args:
        probs: 1-D per-slice probabilities, finite and in [0, 1].
        threshold: probability at or above which a (smoothed) slice is positive, in [0, 1].
        smoothing_window: odd window of the moving filter, in slices; 1 means no smoothing.
        smoothing: ``"mean"`` or ``"median"``.
        margin_slices: slices added on each side of each run, ``>= 0``.
        margin_mm: margin on each side in mm instead of slices; needs ``slice_spacing_mm``.
        slice_spacing_mm: distance between consecutive slices in mm; only used to convert ``margin_mm``.
        min_run: shortest run (in slices, before margins) that is kept, ``>= 1``.
        merge: ``"gaps"``, ``"all"`` or ``"none"`` (see above).
        merge_gap: largest gap, in slices, bridged by ``merge="gaps"``, ``>= 0``; ignored by the other modes.
        min_length: slabs shorter than this grow about their centre (within the volume) before merging, e.g. to
            the depth of the segmenter's sliding window, so it sees real neighbours rather than padding.

    Returns:
        The slabs, sorted, non-overlapping, within ``[0, n)``; ``[]`` when no slice is positive or every run is
        shorter than ``min_run``.

    Raises:
        ValueError: when ``probs`` is not a non-empty 1-D array of finite values in [0, 1], ``threshold`` is not
            in [0, 1], both ``margin_slices`` and ``margin_mm`` are given, ``margin_mm`` is given without
            ``slice_spacing_mm``, or any other argument is out of range.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    min_run = _check_positive_int(min_run, "min_run")
    min_length = _check_positive_int(min_length, "min_length")
    merge_gap = _check_positive_int(merge_gap, "merge_gap", minimum=0)
    if merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
    margin = _margin_in_slices(margin_slices, margin_mm, slice_spacing_mm)

    smoothed = smooth_probabilities(probs, window=smoothing_window, method=smoothing)
    n = smoothed.shape[0]
    runs = _runs(smoothed >= threshold)
    kept = [(start, stop) for start, stop in runs if stop - start >= min_run]
    if len(kept) < len(runs):
        logger.debug("dropped %d run(s) shorter than min_run=%d", len(runs) - len(kept), min_run)
    if not kept:
        logger.debug("no slab selected: no run of positive slices at threshold %s", threshold)
        return []

    grown = [_at_least(max(0, start - margin), min(n, stop + margin), min_length, n) for start, stop in kept]
    if merge == "all":
        merged = [(grown[0][0], grown[-1][1])]
    else:
        merged = _merge(grown, merge_gap if merge == "gaps" else -1)
    slabs = [Slab(start, stop) for start, stop in merged]
    logger.debug("selected %d slab(s) covering %d of %d slices: %s", len(slabs), covered_slices(slabs), n, slabs)
    return slabs


def slab_mask(slabs: Iterable[Slab], n: int) -> np.ndarray:
    """Boolean mask of length ``n``, True on the slices covered by any of ``slabs``.

    Raises:
        ValueError: when ``n`` is not a positive integer or a slab ends beyond ``n``.
    """
    n = _check_positive_int(n, "n")
    mask = np.zeros(n, dtype=bool)
    for slab in slabs:
        if slab.stop > n:
            raise ValueError(f"slab [{slab.start}, {slab.stop}) goes beyond the {n} slices of the volume")
        mask[slab.start : slab.stop] = True
    return mask


def covered_slices(slabs: Iterable[Slab]) -> int:
    """Number of distinct slices covered by ``slabs`` (a slice in two overlapping slabs counts once)."""
    return sum(stop - start for start, stop in _merge([(s.start, s.stop) for s in slabs], -1))


def slabs_of(mask: object) -> list[Slab]:
    """The maximal runs of True slices of the boolean array ``mask`` as slabs, in order (:func:`slab_mask`'s
    inverse)."""
    return [Slab(start, stop) for start, stop in _runs(np.asarray(mask, dtype=bool))]
