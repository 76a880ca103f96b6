"""Evaluation report of a segmenter: per-case overlay PNGs and volumes, and ``report.html`` for the whole set.

:class:`SegmentationReportHandler` is attached to the evaluator of ``evaluate.yaml``. On every iteration it
takes each case of the postprocessed batch (one-hot ``pred`` and ``label`` on the case's original grid, the
preprocessed ``image``), computes the volume of every class, and draws the case's overlay strip; only numbers are
kept, so memory holds one case at a time. When the evaluation completes it writes ``report.html`` with the
per-case metrics the evaluator's metric handlers computed (the values of MetricsSaver's CSVs).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events

from pipelines.io.inputs import case_name
from pipelines.reports.html_report import (
    CaseResult,
    Column,
    read_classifier_results,
    render_report_html,
    write_report_html,
)
from pipelines.reports.overlays import save_overlay_strip, select_slices
from transforms.resample import ResampleToSource

__all__ = ["class_map", "class_volumes_ml", "voxel_volume_mm3", "to_ras", "SegmentationReportHandler"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = {"test_mean_dice": "Dice", "test_hd95_mm": "HD95 (mm)"}


def voxel_volume_mm3(affine: Any) -> float:
    """Volume of one voxel in mm³: the absolute determinant of the affine's 3x3 part (oblique grids included)."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return float(abs(np.linalg.det(matrix)))


def class_volumes_ml(class_map: Any, num_classes: int, voxel_mm3: float) -> list[float]:
    """Volume in mL of each class ``0 .. num_classes - 1`` of an integer class map (1 mL = 1000 mm³)."""
    values = np.asarray(class_map).astype(np.int64, copy=False).ravel()
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(f"class map values must lie in 0..{num_classes - 1}, got {values.min()}..{values.max()}")
    counts = np.bincount(values, minlength=num_classes)
    return [float(c) * voxel_mm3 / 1000.0 for c in counts]


def to_ras(volume: np.ndarray, affine: Any) -> tuple[np.ndarray, np.ndarray]:
    """A 3D ``volume`` reordered (flips and axis swaps, no resampling) to RAS, and its voxel spacing in that order.

    Args:
        volume: a 3D array on the grid of ``affine``.
        affine: its 4x4 voxel-to-world matrix.

    Returns:
        the RAS array (a view where possible) and the spacing ``(x, y, z)`` in mm.
    """
    affine = np.asarray(affine, dtype=np.float64)
    ornt = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ras_spacing = np.empty(3)
    for axis, (target, _) in enumerate(transform):
        ras_spacing[int(target)] = spacing[axis]
    return nib.orientations.apply_orientation(volume, transform), ras_spacing


def class_map(onehot: Any) -> np.ndarray:
    """``(C, *spatial)`` one-hot (or probabilities) to a ``spatial`` uint8 class map."""
    tensor = torch.as_tensor(onehot).detach()
    return tensor.argmax(dim=0).to(dtype=torch.uint8, device="cpu").numpy()


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "case"


class SegmentationReportHandler:
    """Ignite handler writing each case's overlay strip and, at the end, ``report.html`` into ``output_dir``.

    Attach it to the evaluator *before* the ``TrackedRunHandler`` that logs ``output_dir``: ignite calls the
    ``COMPLETED`` handlers in order, so the report exists when the artifacts are logged.

    Writes ``<output_dir>/overlays/<case>.png`` (see :func:`pipelines.reports.overlays.save_overlay_strip`; the PNGs of
    an earlier evaluation are removed when the engine starts) and ``<output_dir>/report.html`` (see
    :func:`pipelines.reports.html_report.render_report_html`).

    Args:
        output_dir: the evaluation folder.
        class_names: names indexed by class, background first.
        preprocessing: the evaluator's preprocessing, when the image went through it: the image is then resampled
            back onto its source grid (``transforms.ResampleToSource``, as the prediction is), keeping its intensity
            scaling. None: the image is already on the prediction's grid.
        pathology_classes: classes whose slices the overlays show first (default: every foreground class).
        metrics: ``{engine metric name: column title}`` of per-case metrics with details
            (``engine.state.metric_details``), one value per foreground class or one per case.
        classifier_dir: folder of the slice classifier's evaluation; its ``classification_metrics.json`` is
            included when present.
        classifier_class_names: the classifier's negative and positive class names.
        channel: image channel shown (multi-channel images).
        channel_names: names of the image channels, for the overlay titles.
        window: grey-level range of the shown (preprocessed) image; None: its 1st-99th percentile.
        num_slices: axial slices per overlay strip.
        min_gap: least distance between two shown slices (in voxels along z).
        title: title of the report page.
    """

    classifier_title = "Slice classifier"
    size_groups = ("Volume predicted (mL)", "Volume ground truth (mL)")  # column groups of the class sizes

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        preprocessing: Callable | None = None,
        pathology_classes: Sequence[int] | None = None,
        metrics: Mapping[str, str] | None = None,
        classifier_dir: str | os.PathLike | None = None,
        classifier_class_names: Sequence[str] = ("negative", "positive"),
        channel: int = 0,
        channel_names: Sequence[str] | None = None,
        window: Sequence[float] | None = None,
        num_slices: int = 4,
        min_gap: int = 2,
        title: str = "Segmentation evaluation",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(n) for n in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"class_names must list the background and at least one class, got {self.class_names}")
        self.num_classes = len(self.class_names)
        fg = range(1, self.num_classes)
        self.pathology_classes = list(fg) if pathology_classes is None else [int(c) for c in pathology_classes]
        bad = [c for c in self.pathology_classes if c not in fg]
        if bad:
            raise ValueError(f"pathology_classes {bad} are not foreground classes of {self.class_names}")
        # one slab-wise resampling from the metadata (not Invertd through the preprocessing): bounded memory
        self.invert = None if preprocessing is None else ResampleToSource()
        self.metrics = dict(DEFAULT_METRICS if metrics is None else metrics)
        self.classifier_dir = classifier_dir
        self.classifier_class_names = list(classifier_class_names)
        self.channel = int(channel)
        self.channel_names = None if channel_names is None else [str(n) for n in channel_names]
        self.window = window
        self.num_slices = int(num_slices)
        self.min_gap = int(min_gap)
        self.title = title
        self.cases: list[CaseResult] = []
        self.seconds_per_case: list[float] = []

    def attach(self, engine: Engine) -> None:
        """Draw on every iteration, write the page when the engine completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the cases of an earlier run, and remove its overlays (they would be logged with this one)."""
        self.cases = []
        self.seconds_per_case = []
        if self.overlay_dir.is_dir():
            for stale in self.overlay_dir.glob("*.png"):
                stale.unlink(missing_ok=True)

    @property
    def overlay_dir(self) -> Path:
        """Folder of the overlay PNGs."""
        return self.output_dir / "overlays"

    @property
    def report_path(self) -> Path:
        """The HTML report."""
        return self.output_dir / "report.html"

    def collect(self, engine: Engine) -> None:
        """Draw the overlay and record the volumes of every case of the current batch."""
        output = engine.state.output
        for item in output if isinstance(output, list) else [output]:
            start = time.perf_counter()
            self.cases.append(self.add_case(item))
            self.seconds_per_case.append(time.perf_counter() - start)

    def _unique_name(self, item: Mapping) -> str:
        meta = getattr(item.get("image"), "meta", {}) or {}
        name = case_name(meta.get("filename_or_obj") or f"case_{len(self.cases)}")
        taken = {case.name for case in self.cases}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}_{n}"
        return unique

    def _unique_stem(self, name: str) -> str:
        """A file stem for ``name`` that no earlier overlay has (names may differ only in replaced characters)."""
        stem, used = _file_stem(name), {Path(case.overlay).stem for case in self.cases if case.overlay}
        unique, n = stem, 0
        while unique in used:
            n += 1
            unique = f"{stem}_{n}"
        return unique

    def _image_on_grid(self, item: Mapping, name: str, shape: tuple[int, ...]) -> np.ndarray:
        image = item["image"]
        if image.shape[0] <= self.channel:
            raise ValueError(f"{name}: channel {self.channel} asked for an image of {image.shape[0]} channel(s)")
        image = image[self.channel : self.channel + 1].detach().cpu()
        if self.invert is not None:
            image = self.invert(image, image)
        array = np.asarray(torch.as_tensor(image)[0].float().numpy())
        if array.shape != shape:
            raise ValueError(
                f"{name}: the image is {array.shape} but the prediction {shape}; give the evaluator's preprocessing "
                "so that the image is inverted onto the prediction's grid"
            )
        return array

    def _title(self, name: str, image_channels: int) -> str:
        if image_channels <= 1:
            return name
        channel = self.channel_names[self.channel] if self.channel_names else f"channel {self.channel}"
        return f"{name} (image: {channel})"

    def add_case(self, item: Mapping) -> CaseResult:
        """Volumes and overlay of one postprocessed case (``pred``, ``label`` one-hot, ``image``)."""
        name = self._unique_name(item)
        label, pred = item["label"], item["pred"]
        affine = getattr(label, "affine", None)
        if affine is None:
            raise ValueError(f"{name}: the label has no affine (not a MetaTensor); cannot compute volumes in mL")
        label_map, pred_map = class_map(label), class_map(pred)
        voxel_mm3 = voxel_volume_mm3(affine)
        result = CaseResult(name=name)
        for group, classes in zip(self.size_groups, (pred_map, label_map), strict=True):
            for index, volume in enumerate(class_volumes_ml(classes, self.num_classes, voxel_mm3)[1:], start=1):
                result.values[Column(group, self.class_names[index]).key] = volume
        image = self._image_on_grid(item, name, label_map.shape)
        (image, spacing), (label_map, _), (pred_map, _) = (to_ras(v, affine) for v in (image, label_map, pred_map))
        slices = select_slices(label_map, pred_map, self.pathology_classes, self.num_slices, self.min_gap)
        png = self.overlay_dir / f"{self._unique_stem(name)}.png"
        save_overlay_strip(
            png,
            image,
            label_map,
            pred_map,
            self.class_names,
            slices,
            self._title(name, item["image"].shape[0]),
            spacing=spacing[:2],
            window=self.window,
        )
        result.overlay = png.relative_to(self.output_dir).as_posix()
        return result

    def columns(self, engine: Engine | None = None) -> list[Column]:
        """The table's columns: the configured metrics found in the engine's details, then the volumes."""
        foreground = self.class_names[1:]
        details = getattr(getattr(engine, "state", None), "metric_details", None) or {}
        columns = []
        for metric, title in self.metrics.items():
            if metric not in details:
                logger.warning("report: the evaluator has no per-case details of %r; column left out", metric)
                continue
            values = torch.as_tensor(details[metric])
            width = int(values.shape[-1]) if values.ndim == 2 else 1
            names = foreground if width == len(foreground) else ["all"] if width == 1 else []
            columns += [Column(title, n) for n in names]
        for group in self.size_groups:
            columns += [Column(group, n, digits=2) for n in foreground]
        return columns

    def _fill_metrics(self, engine: Engine, columns: Sequence[Column]) -> None:
        details = getattr(engine.state, "metric_details", None) or {}
        for metric, title in self.metrics.items():
            names = [c.name for c in columns if c.group == title]
            if metric not in details or not names:
                continue
            values = torch.as_tensor(details[metric]).detach().float().cpu()
            if values.shape[0] != len(self.cases):
                logger.warning(
                    "report: %r has %d rows for %d cases; column left empty", metric, values.shape[0], len(self.cases)
                )
                continue
            values = values.reshape(len(self.cases), -1)
            for case, row in zip(self.cases, values.tolist(), strict=True):
                for name, value in zip(names, row, strict=True):
                    case.values[Column(title, name).key] = float(value)

    def notes(self) -> list[str]:
        """The lines under the report's title: how the values were computed and what the overlays show."""
        pathology = ", ".join(self.class_names[c] for c in self.pathology_classes)
        return [
            f"{len(self.cases)} case(s); metrics and volumes on each case's original grid (volumes from the voxel "
            "spacing of the label). Empty cells: undefined (e.g. a class absent from both).",
            f"Overlays: the {self.num_slices} axial slices with the most {pathology} in the ground truth (else in "
            "the prediction), anterior up, the patient's right on the left.",
        ]

    def write(self, engine: Engine) -> Path | None:
        """Write ``report.html`` with the cases seen, the metrics' details, and the classifier's results."""
        if not self.cases:
            logger.warning("report: no case was evaluated; %s not written", self.report_path)
            return None
        columns = self.columns(engine)
        self._fill_metrics(engine, columns)
        page = render_report_html(
            self.title,
            columns,
            self.cases,
            classifier=read_classifier_results(self.classifier_dir),
            classifier_class_names=self.classifier_class_names,
            notes=self.notes(),
            classifier_title=self.classifier_title,
        )
        path = write_report_html(self.report_path, page)
        logger.info(
            "report of %d case(s) written to %s (%.2f s per case for volumes and overlays)",
            len(self.cases),
            path,
            sum(self.seconds_per_case) / len(self.seconds_per_case),
        )
        return path
