"""pipelines.classifier_reports: Grad-CAM overlays show RAS axial slices the radiological way round."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from pipelines.classifier_reports import save_slice_gradcam_overlays


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
