"""Per-case overlays: image, ground truth and prediction on the axial slices with the most pathology (volumes), or
side by side (radiographs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pipelines.io.atomic import atomic_write

__all__ = [
    "CLASS_COLOURS",
    "axial_display",
    "class_colour",
    "display_range",
    "radiograph_display",
    "save_overlay_strip",
    "save_radiograph_overlay",
    "select_slices",
]

# Colour of class 1, 2, ... (class 0, the background, is never drawn); cycled for more classes.
CLASS_COLOURS = ("#2ca02c", "#d62728", "#ffd700", "#1f77b4", "#e377c2", "#17becf", "#ff7f0e", "#9467bd")
OVERLAY_ALPHA = 0.45
PANEL_INCHES = 2.5  # width and height of one panel
DPI = 100


def class_colour(index: int) -> str:
    """The overlay colour of class ``index`` (1 or more)."""
    if index < 1:
        raise ValueError(f"class index must be 1 or more (0 is the background), got {index}")
    return CLASS_COLOURS[(index - 1) % len(CLASS_COLOURS)]


def _slice_counts(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Voxels per axial slice (last axis) whose value is in ``classes``."""
    return np.isin(labels, list(classes)).sum(axis=(0, 1))


def select_slices(
    label: np.ndarray,
    pred: np.ndarray,
    pathology_classes: Sequence[int],
    num_slices: int = 4,
    min_gap: int = 1,
) -> list[int]:
    """The axial slices (indices along the last axis) to show, in increasing order.

    Slices are ranked by their voxels of ``pathology_classes`` in the ground truth, ties broken by those in the
    prediction. A case without pathology in the ground truth is ranked by the prediction's (its false
    positives); one without pathology in either by all foreground classes (values > 0) of both; one without any
    foreground shows its centre slices. Slices are picked best first, skipping those closer than ``min_gap`` to
    one already picked while others are left; remaining ties go to the lower index.

    Args:
        label: ground truth class map ``(X, Y, Z)`` (integers, 0 the background).
        pred: predicted class map, same shape.
        pathology_classes: class indices that count as pathology (e.g. the tumour, not the liver).
        num_slices: how many slices to pick (fewer when the volume has fewer).
        min_gap: least distance between two picked slices (1: any two distinct slices).

    Raises:
        ValueError: for maps that are not 3D or differ in shape, or ``num_slices`` / ``min_gap`` below 1.
    """
    label, pred = np.asarray(label), np.asarray(pred)
    if label.ndim != 3 or label.shape != pred.shape:
        raise ValueError(f"label and pred must be 3D class maps of one shape, got {label.shape} and {pred.shape}")
    if num_slices < 1 or min_gap < 1:
        raise ValueError(f"num_slices and min_gap must be at least 1, got {num_slices} and {min_gap}")
    depth = label.shape[2]
    primary, secondary = _slice_counts(label, pathology_classes), _slice_counts(pred, pathology_classes)
    if not primary.any():
        primary, secondary = secondary, np.zeros(depth)
    if not primary.any():
        primary = (label > 0).sum(axis=(0, 1)) + (pred > 0).sum(axis=(0, 1))
    if not primary.any():
        # no foreground at all: distance to the centre, negated, so the centre ranks first
        primary = -np.abs(np.arange(depth) - (depth - 1) / 2.0)
    order = sorted(range(depth), key=lambda z: (-primary[z], -secondary[z], z))
    picked: list[int] = []
    for z in order:
        if len(picked) == num_slices:
            break
        if all(abs(z - p) >= min_gap for p in picked):
            picked.append(z)
    for z in order:  # not enough slices far enough apart: fill with the best of the others
        if len(picked) == min(num_slices, depth):
            break
        if z not in picked:
            picked.append(z)
    return sorted(picked)


def display_range(image: np.ndarray, window: Sequence[float] | None = None) -> tuple[float, float]:
    """Grey-level range for showing ``image``: ``window`` when given, else its 1st to 99th percentile.

    The percentiles are taken over the non-zero voxels when there are any (MRI background is 0).
    """
    if window is not None:
        low, high = float(window[0]), float(window[1])
    else:
        values = np.asarray(image, dtype=np.float64)
        values = values[np.isfinite(values)]
        nonzero = values[values != 0]
        values = nonzero if nonzero.size else values
        if not values.size:
            return 0.0, 1.0
        low, high = (float(v) for v in np.percentile(values, [1, 99]))
    return (low, high) if high > low else (low, low + 1.0)


def _overlay_rgba(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """RGBA image of a 2D class map: each class in its colour, the background transparent."""
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for index in range(1, num_classes):
        mask = labels == index
        if mask.any():
            rgba[mask] = (*to_rgb(class_colour(index)), OVERLAY_ALPHA)
    return rgba


def axial_display(volume_slice: np.ndarray) -> np.ndarray:
    """A RAS axial slice ``(X, Y)`` as displayed: anterior up, the patient's right on the viewer's left."""
    return volume_slice.T[::-1, ::-1]


def save_overlay_strip(
    path: str | os.PathLike,
    image: np.ndarray,
    label: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    slices: Sequence[int],
    title: str,
    spacing: Sequence[float] = (1.0, 1.0),
    window: Sequence[float] | None = None,
) -> Path:
    """Write a PNG of three rows (image, ground truth, prediction) by one column per axial slice, with a legend.

    The volumes are in RAS order ``(X, Y, Z)``; each slice is shown anterior up in the radiological convention
    (the patient's right on the left). The PNG is ``len(slices) * 2.5`` by ``3 * 2.5 + 0.8`` inches at 100 dpi,
    written atomically.

    Args:
        path: the PNG to write (its folder is created).
        image: one channel of the image, ``(X, Y, Z)``.
        label: ground truth class map, same shape.
        pred: predicted class map, same shape.
        class_names: names indexed by class (background first), for the legend.
        slices: indices along Z to show (see :func:`select_slices`).
        title: the figure's title (case name, channel shown).
        spacing: in-plane voxel size ``(x, y)`` in mm, for the aspect ratio.
        window: grey-level range of the image; default: see :func:`display_range`, with voxels of exactly 0
            (the background of a normalised MRI) in black.

    Raises:
        ValueError: for volumes of different shapes or no slice to show.
    """
    image, label, pred = np.asarray(image), np.asarray(label), np.asarray(pred)
    if not image.shape == label.shape == pred.shape or image.ndim != 3:
        raise ValueError(
            f"image, label and pred must be 3D of one shape, got {image.shape}, {label.shape}, {pred.shape}"
        )
    if not slices:
        raise ValueError(f"{path}: no slice to show")
    vmin, vmax = display_range(image, window)
    if window is None:  # the background of MRI (exactly 0) in black, whatever the range of the tissue
        image = np.ma.masked_equal(image, 0)
    grey_map = colormaps["gray"].with_extremes(bad="black")
    num_classes = len(class_names)
    aspect = float(spacing[1]) / float(spacing[0])
    fig = Figure(figsize=(PANEL_INCHES * len(slices), PANEL_INCHES * 3 + 0.8), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(slices), squeeze=False)
    rows = (("image", None), ("ground truth", label), ("prediction", pred))
    for column, z in enumerate(slices):
        grey = axial_display(image[:, :, z])
        for row, (name, labels) in enumerate(rows):
            ax = axes[row][column]
            ax.imshow(grey, cmap=grey_map, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
            if labels is not None:
                overlay = _overlay_rgba(axial_display(labels[:, :, z]), num_classes)
                ax.imshow(overlay, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"slice {z}", fontsize=9)
            if column == 0:
                ax.set_ylabel(name, fontsize=9)
    handles = [Patch(color=class_colour(i), label=str(class_names[i])) for i in range(1, num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.92, bottom=0.08, wspace=0.04, hspace=0.04)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def radiograph_display(image: np.ndarray) -> np.ndarray:
    """A radiograph as MONAI's PIL reader loads it, ``(width, height)``, in rows and columns as it is viewed."""
    return np.asarray(image).T


def save_radiograph_overlay(
    path: str | os.PathLike,
    image: np.ndarray,
    label: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    title: str,
) -> Path:
    """Write a PNG of one radiograph in three panels (image, ground truth, prediction), with a legend.

    The arrays are ``(width, height)`` as MONAI's PIL reader gives them (see :func:`radiograph_display`); the
    PNG is ``3 * 2.5`` by ``2.5 + 0.8`` inches at 100 dpi, written atomically.

    Raises:
        ValueError: for arrays that are not 2D or differ in shape.
    """
    image, label, pred = np.asarray(image), np.asarray(label), np.asarray(pred)
    if not image.shape == label.shape == pred.shape or image.ndim != 2:
        raise ValueError(
            f"{path}: image, label and pred must be 2D of one shape, got {image.shape}, {label.shape}, {pred.shape}"
        )
    vmin, vmax = display_range(image)
    num_classes = len(class_names)
    fig = Figure(figsize=(PANEL_INCHES * 3, PANEL_INCHES + 0.8), dpi=DPI)
    FigureCanvasAgg(fig)
    grey = radiograph_display(image)
    for column, (name, labels) in enumerate((("image", None), ("ground truth", label), ("prediction", pred))):
        ax = fig.add_subplot(1, 3, column + 1)
        ax.imshow(grey, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        if labels is not None:
            ax.imshow(_overlay_rgba(radiograph_display(labels), num_classes), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    handles = [Patch(color=class_colour(i), label=str(class_names[i])) for i in range(1, num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.82, bottom=0.1, wspace=0.04)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
