"""Files of a slice classifier's evaluation: the confusion-matrix PNG and the per-slice results CSV."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.io.atomic import atomic_write

__all__ = ["save_confusion_matrix_png", "write_slice_results_csv", "read_slice_results_csv", "SLICE_RESULT_COLUMNS"]

logger = logging.getLogger(__name__)


SLICE_RESULT_COLUMNS = ("volume_id", "slice_index", "label", "probability", "prediction")
_INT_COLUMNS = ("slice_index", "label", "prediction")


def save_confusion_matrix_png(
    cm: Any, class_names: Sequence[str], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) with its counts in the cells, as a PNG.

    Uses matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), so pyplot and the global backend
    are left alone. The file is written to a temporary file in the same folder and moved into place, so a
    reader never sees half a PNG; missing parent folders are created.

    Args:
        cm: square ``(K, K)`` array of non-negative counts (floats are printed with two decimals).
        class_names: the ``K`` class names, in index order.
        path: where to write the PNG.
        title: optional figure title.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: when ``cm`` is not square, has negative or non-finite values, or ``class_names`` does not
            have one name per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"cm must be a square 2-D array, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("cm must hold finite, non-negative counts")
    k = matrix.shape[0]
    names = [str(name) for name in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must have {k} names (one per row of cm), got {len(names)}")

    side = 3.0 + 0.6 * k
    fig = Figure(figsize=(side + 1.0, side), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(matrix.max()), 1e-12))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(k), yticks=range(k), xlabel="Predicted", ylabel="True")
    ax.set_xticklabels(names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticklabels(names)
    if title:
        ax.set_title(title)
    integral = bool(np.all(matrix == np.round(matrix)))
    middle = float(matrix.max()) / 2.0
    for i in range(k):
        for j in range(k):
            value = matrix[i, j]
            text = f"{int(value)}" if integral else f"{float(value):.2f}"
            colour = "white" if value > middle else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour)
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    logger.debug("wrote confusion matrix %s", out)
    return out


def write_slice_results_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write per-slice classification results as CSV, atomically (temporary file, then ``os.replace``).

    Columns are :data:`SLICE_RESULT_COLUMNS` (``volume_id, slice_index, label, probability, prediction``), then
    any extra keys of the rows in the order they first appear. ``None`` is written as an empty cell (e.g. no
    label at inference). Probabilities are written with ``repr`` so they read back exactly.

    Args:
        rows: one mapping per slice, each with at least the keys of :data:`SLICE_RESULT_COLUMNS`.
        path: where to write the CSV; missing parent folders are created.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: when a row is not a mapping or lacks one of the required keys.
    """
    rows = list(rows)
    columns = list(SLICE_RESULT_COLUMNS)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {index} must be a dict, got {type(row).__name__}")
        missing = [key for key in SLICE_RESULT_COLUMNS if key not in row]
        if missing:
            raise ValueError(f"row {index} lacks the key(s) {missing}; required: {list(SLICE_RESULT_COLUMNS)}")
        columns.extend(key for key in row if key not in columns)

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (np.generic, torch.Tensor)):
            return value.item()
        return value

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: cell(row.get(key)) for key in columns})

    out = atomic_write(path, write)
    logger.debug("wrote %d slice result(s) to %s", len(rows), out)
    return out


def read_slice_results_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_slice_results_csv`.

    ``slice_index``, ``label`` and ``prediction`` come back as ints, ``probability`` as float, empty cells of
    these columns as ``None``; ``volume_id`` and extra columns stay strings.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in _INT_COLUMNS:
            row[key] = int(row[key]) if row.get(key) else None
        row["probability"] = float(row["probability"]) if row.get("probability") else None
    return rows
