"""pipelines.reports.classifier_reports: Grad-CAM overlays the radiological way round; unrounded slice probabilities."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torch import nn

from pipelines.reports.classifier_reports import SliceResultsSaver, save_slice_gradcam_overlays


def _marker_side(png) -> str:
    """'left' or 'right': the half of the shown image (the non-white area below the title) that is brighter."""
    grey = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    rows, cols = np.nonzero(grey < 250)
    area = grey[rows.max() - 60 : rows.max(), cols.min() : cols.max() + 1]  # bottom band: the image, not the title
    half = area.shape[1] // 2
    return "left" if area[:, :half].mean() > area[:, half:].mean() else "right"


def test_the_patients_right_is_on_the_viewers_left(tmp_path):
    torch.manual_seed(0)
    classifier = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    sample = torch.zeros(1, 3, 40, 40)  # (N, C, X, Y): X grows towards the patient's right (RAS)
    sample[:, :, 28:, :] = 1.0  # the patient's right third is bright
    (png,) = save_slice_gradcam_overlays(classifier, sample, ["case"], tmp_path, "0")
    assert _marker_side(png) == "left"
    sample = sample.flip(2)  # the patient's left third bright instead
    (png,) = save_slice_gradcam_overlays(classifier, sample, ["mirrored"], tmp_path, "0")
    assert _marker_side(png) == "right"


def test_confident_probabilities_are_not_rounded_into_ties(tmp_path):
    """Slices scored 1 - 1e-8 and 1 - 1e-10 must still rank apart: the ROC-AUC of a perfect ranking is 1."""
    saver = SliceResultsSaver(tmp_path, class_names=["no liver", "liver"])
    margins = {18.0: 0, 20.0: 1, 23.0: 1, 2.0: 0}  # logit of "liver" minus logit of "no liver" -> label
    outputs = [{"pred": torch.tensor([0.0, m]), "label": torch.tensor(lab), "image": torch.zeros(1, 4, 4)}
               for m, lab in margins.items()]  # fmt: skip
    batch = [{"volume": "case.nii.gz", "slice_index": i} for i in range(len(outputs))]
    engine = SimpleNamespace(state=SimpleNamespace(output=outputs, batch=batch))
    saver.collect(engine)
    saver.write(engine)
    metrics = json.loads((tmp_path / "classification_metrics.json").read_text())
    assert metrics["roc_auc"] == 1.0
