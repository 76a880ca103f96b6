"""The chest X-ray classifier's results: CSV of probabilities, metrics JSON, confusion matrix, Grad-CAM overlays.

:class:`ClassificationResultsSaver` (on the evaluator or the inference engine) collects every classified radiograph
and writes the files when the run completes; :func:`save_radiograph_gradcam_overlays` draws the Grad-CAM maps.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from pipelines.evaluation.classification_outputs import save_confusion_matrix_png
from pipelines.evaluation.multiclass_metrics import metric_key, multiclass_report
from pipelines.io.atomic import atomic_write, write_json_atomic

__all__ = ["save_radiograph_gradcam_overlays", "ClassificationResultsSaver"]

logger = logging.getLogger(__name__)


def _draw_overlay(image: np.ndarray, heat: np.ndarray, title: str, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # PILReader gives (width, height): transpose back to rows x columns, as the radiograph is viewed
    ax.imshow(image.T, cmap="gray")
    ax.imshow(heat.T, cmap="jet", alpha=0.35, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight"))


def save_radiograph_gradcam_overlays(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    class_indices: Sequence[int],
    titles: Sequence[str],
    out_dir: str | os.PathLike,
    target_layer: str,
    cam: Any = None,
) -> list[Path]:
    """Write one PNG per radiograph: the image with the Grad-CAM map of its class overlaid.

    Args:
        classifier: the trained classifier (its train/eval mode is restored afterwards).
        images: classifier inputs ``(N, 1, W, H)`` as ``PILReader`` gives them.
        class_indices: per image, the class whose evidence is shown.
        titles: per image, the title and file stem.
        out_dir: folder for the PNGs.
        target_layer: the layer Grad-CAM weighs (``pipelines.reports.classifier_reports.GRADCAM_LAYERS[backbone]``).
        cam: a ``monai.visualize.GradCAM`` of ``classifier`` to reuse (its hooks stay on the network: build one
            per network, not one per call).

    Returns:
        the paths written.
    """
    from monai.visualize import GradCAM

    if not len(images) == len(class_indices) == len(titles):
        raise ValueError("images, class_indices and titles must have the same length")
    cam = cam or GradCAM(nn_module=classifier, target_layers=target_layer)
    device = next(classifier.parameters()).device
    out_dir = Path(out_dir)
    paths = []
    for image, class_index, title in zip(images, class_indices, titles, strict=True):
        heat = cam(x=image[None].to(device=device, dtype=torch.float32), class_idx=int(class_index))
        picture = image[0].detach().cpu().float().numpy()
        paths.append(_draw_overlay(picture, heat[0, 0].detach().cpu().numpy(), title, out_dir / f"{title}.png"))
    return paths


class ClassificationResultsSaver:
    """Ignite handler collecting every radiograph an evaluator classifies, writing the results when it completes.

    Writes to ``output_dir``:

    * ``csv_name`` (``classification.csv``): ``file``, ``true_class`` (when the batch has labels),
      ``predicted_class``, then ``prob_<class>`` per class (names as :func:`metric_key` writes them);
    * when every sample has a label: ``classification_metrics.json`` (:func:`multiclass_report`) and
      ``confusion_matrix.png``;
    * ``gradcam/<name>_<class>_p<prob>.png`` Grad-CAM overlays: the ``gradcam_per_class`` most confident images
      of each class (the true class when labelled, else the predicted one), or of every image when it is None.

    The engine's output must hold ``pred`` (K logits) and ``label`` (class index or None), and its batch
    ``image`` (a ``MetaTensor`` whose ``filename_or_obj`` names the file).

    Args:
        output_dir: folder of the outputs.
        class_names: the K class names, in index order.
        csv_name: name of the CSV file.
        gradcam_per_class: overlays per class (0: none; None: every image).
        gradcam_layer: the classifier's layer for Grad-CAM; no overlay without it.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        csv_name: str = "classification.csv",
        gradcam_per_class: int | None = 0,
        gradcam_layer: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(n) for n in class_names]
        self.csv_name = csv_name
        self.gradcam_per_class = gradcam_per_class
        self.gradcam_layer = gradcam_layer
        self.rows: list[dict[str, Any]] = []
        self.labels: list[int | None] = []
        self.probabilities: list[np.ndarray] = []
        self._candidates: dict[int, list[tuple[float, str, torch.Tensor]]] = {}
        self._cam = None

    @property
    def _gradcam_on(self) -> bool:
        return bool(self.gradcam_layer) and self.gradcam_per_class != 0

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration, write when the engine completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget what was collected."""
        self.rows, self.labels, self.probabilities, self._candidates = [], [], [], {}

    def collect(self, engine: Engine) -> None:
        """Record the radiographs of the current batch (none when a robust evaluator skipped a failed one)."""
        if not engine.state.output:
            return
        for item, sample in zip(engine.state.output, engine.state.batch, strict=True):
            probs = torch.softmax(torch.as_tensor(item["pred"]).detach().float().flatten(), dim=0).cpu().numpy()
            if probs.shape[0] != len(self.class_names):
                raise ValueError(f"the classifier gives {probs.shape[0]} scores for {len(self.class_names)} classes")
            label = item.get("label")
            label = None if label is None else int(torch.as_tensor(label).item())
            predicted = int(probs.argmax())
            image = sample["image"]
            source = str(getattr(image, "meta", {}).get("filename_or_obj", f"image_{len(self.rows)}"))
            row = {"file": source}
            if label is not None:
                row["true_class"] = self.class_names[label]
            row["predicted_class"] = self.class_names[predicted]
            row.update(
                {f"prob_{metric_key(c)}": round(float(p), 6) for c, p in zip(self.class_names, probs, strict=True)}
            )
            self.rows.append(row)
            self.labels.append(label)
            self.probabilities.append(probs)
            if self._gradcam_on:
                shown = predicted if label is None else label
                title = f"{Path(source).stem}_{metric_key(self.class_names[shown])}_p{probs[shown]:.2f}"
                self._keep(engine, shown, float(probs[shown]), title, torch.as_tensor(image).detach().cpu())

    def _keep(self, engine: Engine, shown: int, score: float, title: str, image: torch.Tensor) -> None:
        """Keep the image while it is among its class's most confident (memory bounded by classes x count), or
        write its overlay now when every image gets one."""
        if self.gradcam_per_class is None:
            self._write_gradcam(engine, [(shown, title, image)])
            return
        kept = self._candidates.setdefault(shown, [])
        kept.append((score, title, image))
        kept.sort(key=lambda c: -c[0])  # stable: ties keep the reading order
        del kept[self.gradcam_per_class :]

    def _write_gradcam(self, engine: Engine, chosen: list[tuple[int, str, torch.Tensor]]) -> None:
        from monai.visualize import GradCAM

        if self._cam is None:
            self._cam = GradCAM(nn_module=engine.network, target_layers=self.gradcam_layer)
        save_radiograph_gradcam_overlays(
            engine.network,
            torch.stack([image for _, _, image in chosen]),
            [shown for shown, _, _ in chosen],
            [title for _, title, _ in chosen],
            self.output_dir / "gradcam",
            self.gradcam_layer,
            cam=self._cam,
        )

    def write(self, engine: Engine) -> None:
        """Write the CSV, and the metrics, confusion matrix and Grad-CAM overlays when they apply."""
        if not self.rows:
            logger.warning("no radiograph was classified: nothing written to %s", self.output_dir)
            return
        columns = list(dict.fromkeys(key for row in self.rows for key in row))

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.output_dir / self.csv_name, write_csv)
        if all(label is not None for label in self.labels):
            report = multiclass_report(np.array(self.labels), np.stack(self.probabilities), self.class_names)
            write_json_atomic(report, self.output_dir / "classification_metrics.json")
            save_confusion_matrix_png(
                report["confusion_matrix"], self.class_names, self.output_dir / "confusion_matrix.png", "Chest X-ray"
            )
            auc = report["roc_auc"]
            logger.info(
                "%d radiographs: accuracy %.3f, macro F1 %.3f, macro AUC %s",
                report["num_samples"],
                report["accuracy"],
                report["macro_f1"],
                "n/a" if auc is None or math.isnan(auc) else f"{auc:.3f}",
            )
        if self._gradcam_on and self._candidates:
            chosen = [(k, title, image) for k in sorted(self._candidates) for _, title, image in self._candidates[k]]
            self._write_gradcam(engine, chosen)
        logger.info("classification of %d radiograph(s) written to %s", len(self.rows), self.output_dir)
