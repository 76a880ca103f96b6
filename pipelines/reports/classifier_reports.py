"""Evaluation outputs of the slice classifier: per-slice CSV, metrics JSON, confusion matrix and Grad-CAM PNGs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.visualize import GradCAM

from pipelines.evaluation.classification_outputs import save_confusion_matrix_png, write_slice_results_csv
from pipelines.evaluation.classification_scores import binary_metrics, confusion_matrix, thresholds_for_recall
from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.io.inputs import case_name
from pipelines.reports.overlays import axial_display

__all__ = ["GRADCAM_LAYERS", "SliceResultsSaver", "save_slice_gradcam_overlays"]

logger = logging.getLogger(__name__)

# Last convolutional stage of each backbone of pipelines.models.classifiers, where Grad-CAM looks.
GRADCAM_LAYERS = {
    "resnet10-narrow": "layer4",
    "resnet18": "layer4",
    "resnet50": "layer4",
    "densenet121": "class_layers.relu",
    "vgg16": "features.29",
    "efficientnet-b0": "_bn1",
}


def save_slice_gradcam_overlays(
    classifier: torch.nn.Module,
    samples: torch.Tensor,
    titles: Sequence[str],
    out_dir: str | os.PathLike,
    target_layer: str,
    class_index: int = 1,
) -> list[Path]:
    """Write one PNG per sample: its centre slice with the Grad-CAM map of ``class_index`` overlaid.

    The samples are RAS axial slices ``(X, Y)`` of the 3D bundles; they are shown as :mod:`pipelines.reports.overlays`
    shows them: anterior up and the patient's right on the viewer's left (radiographs have their own overlays in
    :mod:`pipelines.xray.radiographs`).

    Args:
        classifier: the trained 2D classifier.
        samples: classifier inputs ``(N, C, H, W)`` (2.5D: the centre channel is the slice itself).
        titles: one title (and file stem) per sample.
        out_dir: folder for the PNGs.
        target_layer: name of the layer whose activations Grad-CAM weighs (see ``GRADCAM_LAYERS``).
        class_index: class whose evidence is shown (1: positive).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier.eval()
    device = next(classifier.parameters()).device
    cam = GradCAM(nn_module=classifier, target_layers=target_layer)
    maps = cam(x=samples.to(device=device, dtype=torch.float32), class_idx=class_index).detach().cpu().numpy()
    paths = []
    centre = samples.shape[1] // 2
    for sample, heat, title in zip(samples.cpu().numpy(), maps, titles, strict=True):
        fig = Figure(figsize=(4, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(axial_display(sample[centre]), cmap="gray")
        ax.imshow(axial_display(heat[0]), cmap="jet", alpha=0.35, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        paths.append(atomic_write(out_dir / f"{title}.png", lambda tmp, fig=fig: fig.savefig(tmp, bbox_inches="tight")))
    return paths


class SliceResultsSaver:
    """Ignite handler that collects every slice an evaluator scores and writes the evaluation outputs at the end.

    Writes to ``output_dir``: ``slice_results.csv`` (volume, slice, label, probability, prediction),
    ``classification_metrics.json`` (accuracy, precision, recall, specificity, F1, ROC-AUC, counts),
    ``confusion_matrix.png``, and, when ``gradcam_slices`` > 0, Grad-CAM overlays of the most confidently
    positive slices of each volume under ``gradcam/``.

    The engine's output must hold ``pred`` (2 logits per slice) and ``label``; its batch ``volume`` and
    ``slice_index`` (as :class:`transforms.SliceSamplesd` writes them).

    Args:
        output_dir: folder for the outputs.
        threshold: probability from which a slice is predicted positive.
        class_names: names of the negative and positive classes, for the confusion matrix.
        gradcam_slices: slices per volume with a Grad-CAM overlay (0: none).
        gradcam_layer: the classifier's layer for Grad-CAM (see ``GRADCAM_LAYERS``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        threshold: float = 0.5,
        class_names: Sequence[str] = ("negative", "positive"),
        gradcam_slices: int = 0,
        gradcam_layer: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.class_names = list(class_names)
        self.gradcam_slices = gradcam_slices
        self.gradcam_layer = gradcam_layer
        self.rows: list[dict] = []
        # per volume, the gradcam_slices most confidently positive slices so far: (row, classifier input)
        self._gradcam_candidates: dict[str, list[tuple[dict, torch.Tensor]]] = {}

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration, write when the engine completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget what was collected."""
        self.rows = []
        self._gradcam_candidates = {}

    def collect(self, engine: Engine) -> None:
        """Record the slices of the current batch."""
        for item, sample in zip(engine.state.output, engine.state.batch, strict=True):
            # float64 and unrounded: a confident classifier's probabilities differ only past the 7th decimal, and
            # rounding them into ties lowered the ROC-AUC and the recall thresholds (0.941 instead of 0.976)
            prob = float(torch.softmax(torch.as_tensor(item["pred"]).detach().double().flatten(), dim=0)[1])
            row = {
                "volume_id": case_name(sample.get("volume", "")),
                "slice_index": int(sample.get("slice_index", len(self.rows))),
                "label": int(torch.as_tensor(item["label"]).item()),
                "probability": prob,
                "prediction": int(prob >= self.threshold),
            }
            self.rows.append(row)
            if self.gradcam_slices > 0:
                self._keep_if_top(row, item["image"])

    def _keep_if_top(self, row: dict, image) -> None:
        """Keep ``row``'s input only while it is among its volume's ``gradcam_slices`` highest probabilities,
        so memory stays bounded by volumes x gradcam_slices, not by every slice scored."""
        kept = self._gradcam_candidates.setdefault(row["volume_id"], [])
        kept.append((row, torch.as_tensor(image).detach().cpu()))
        kept.sort(key=lambda c: -c[0]["probability"])  # stable: ties keep slice order
        del kept[self.gradcam_slices :]

    def write(self, engine: Engine) -> None:
        """Write the CSV, the metrics, the confusion matrix and the Grad-CAM overlays."""
        if not self.rows:
            logger.warning("no slice was scored: nothing written to %s", self.output_dir)
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_slice_results_csv(self.rows, self.output_dir / "slice_results.csv")
        labels = np.array([r["label"] for r in self.rows])
        probs = np.array([r["probability"] for r in self.rows])
        metrics = binary_metrics(labels, probs, threshold=self.threshold)
        # thresholds for the cascade gate (cascade_threshold), read off these scores at target recalls
        metrics["threshold_at_recall"] = thresholds_for_recall(labels, probs)
        write_json_atomic(metrics, self.output_dir / "classification_metrics.json")
        cm = confusion_matrix(labels, (probs >= self.threshold).astype(int), num_classes=2)
        save_confusion_matrix_png(cm, self.class_names, self.output_dir / "confusion_matrix.png", "Slice classifier")
        if self.gradcam_slices > 0 and self.gradcam_layer:
            self._write_gradcam(engine)
        logger.info("slice classifier results for %d slices written to %s", len(self.rows), self.output_dir)

    def _write_gradcam(self, engine: Engine) -> None:
        kept = [self._gradcam_candidates[volume] for volume in sorted(self._gradcam_candidates)]
        chosen = [row for candidates in kept for row, _ in candidates]
        samples = torch.stack([image for candidates in kept for _, image in candidates])
        titles = [f"{r['volume_id']}_slice{r['slice_index']:03d}_p{r['probability']:.2f}" for r in chosen]
        save_slice_gradcam_overlays(engine.network, samples, titles, self.output_dir / "gradcam", self.gradcam_layer)
