"""The chest X-ray segmentation evaluation's report: per-radiograph Dice, mask areas, overlays and the classifier."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from pipelines.reports.html_report import CaseResult, Column
from pipelines.reports.overlays import save_radiograph_overlay
from pipelines.reports.segmentation_reports import SegmentationReportHandler, class_map

__all__ = ["RadiographReportHandler"]


class RadiographReportHandler(SegmentationReportHandler):
    """Ignite handler writing ``overlays/<image>.png`` per radiograph and ``report.html`` into ``output_dir``.

    The 2D counterpart of :class:`pipelines.reports.segmentation_reports.SegmentationReportHandler`: the table has
    the Dice of each
    class (from the evaluator's per-image metric details) and each class's area in the prediction and the ground
    truth, as a percentage of the image (radiographs in PNG carry no pixel spacing); each overlay shows the
    image, the ground truth and the prediction side by side, upright as the radiograph is viewed; the
    classifier's multi-class evaluation (``classification_metrics.json`` in ``classifier_dir``) is included when
    it exists. Attach it before the ``TrackedRunHandler`` that logs ``output_dir``.

    Args:
        output_dir: the evaluation folder.
        class_names: names indexed by class, background first.
        metrics: ``{engine metric name: column title}`` of per-image metrics with details.
        classifier_dir: folder of the radiograph classifier's evaluation.
        title: title of the report page.
    """

    classifier_title = "Radiograph classifier"
    size_groups = ("Area predicted (% of image)", "Area ground truth (% of image)")

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        metrics: Mapping[str, str] | None = None,
        classifier_dir: str | os.PathLike | None = None,
        title: str = "Chest X-ray segmentation evaluation",
    ) -> None:
        super().__init__(
            output_dir,
            class_names,
            metrics={"test_mean_dice": "Dice"} if metrics is None else metrics,
            classifier_dir=classifier_dir,
            title=title,
        )
        self.grid_size: tuple[int, ...] | None = None  # (width, height) of the scored masks

    def add_case(self, item: Mapping) -> CaseResult:
        """Areas and overlay of one postprocessed radiograph (``pred``, ``label`` one-hot ``(C, W, H)``, ``image``)."""
        name = self._unique_name(item)
        label_map, pred_map = class_map(item["label"]), class_map(item["pred"])
        image = np.asarray(item["image"][0].detach().cpu().float().numpy())
        if not image.shape == label_map.shape == pred_map.shape or image.ndim != 2:
            raise ValueError(
                f"{name}: the image {image.shape}, label {label_map.shape} and prediction {pred_map.shape} must be "
                "2D maps of one shape"
            )
        self.grid_size = image.shape
        result = CaseResult(name=name)
        for group, classes in zip(self.size_groups, (pred_map, label_map), strict=True):
            for index in range(1, self.num_classes):
                result.values[Column(group, self.class_names[index]).key] = 100.0 * float((classes == index).mean())
        png = self.overlay_dir / f"{self._unique_stem(name)}.png"
        save_radiograph_overlay(png, image, label_map, pred_map, self.class_names, name)
        result.overlay = png.relative_to(self.output_dir).as_posix()
        return result

    def notes(self) -> list[str]:
        """How the values were computed and what the overlays show."""
        grid = "x".join(str(n) for n in self.grid_size) if self.grid_size else "input"
        return [
            f"{len(self.cases)} radiograph(s), scored on the segmenter's {grid} pixel grid (width x height); areas are "
            "percentages of the image (radiographs in PNG carry no pixel spacing). Empty cells: undefined.",
            "Overlays: image, ground truth and prediction, as the radiograph is viewed (the patient's right on the "
            "viewer's left in a PA film).",
        ]
