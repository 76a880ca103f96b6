"""The gate's per-subset calibration (``pipelines.training.gate_calibration``), the thresholds file it writes, and
the cascade picking a study's threshold by the sequences it has (``pipelines.inference.gate_thresholds``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipelines.inference.gate_thresholds import gate_thresholds_path, load_gate_thresholds, threshold_for
from pipelines.training.gate_calibration import GateCalibration, recall_threshold
from tests.test_cascade import ThresholdSegmenter, _inferer, _phantom
from transforms.sequences import SEQUENCES_META_KEY, KeepSequences

SEQUENCES = ["FLAIR", "T1ce"]


def test_recall_threshold_keeps_the_share_of_positive_slices_asked_for():
    probs = np.linspace(0.01, 0.99, 100)
    t = recall_threshold(probs, recall=0.9, ceiling=0.99)
    assert (probs >= t).mean() >= 0.9 and (probs >= probs[probs > t].min()).mean() < 0.9
    assert recall_threshold(probs, recall=0.5, ceiling=0.3) == 0.3  # never stricter than the bundle's threshold
    assert recall_threshold([], recall=0.95, ceiling=0.5) == 0.5


def test_threshold_for_picks_the_subset_then_the_most_permissive():
    thresholds = {"FLAIR": 0.1, "FLAIR+T1ce": 0.3}
    assert threshold_for("FLAIR", thresholds, 0.5) == 0.1
    assert threshold_for("T1ce", thresholds, 0.5) == 0.1  # not calibrated: keep more rather than miss a tumour
    assert threshold_for("FLAIR", {}, 0.5) == 0.5


def _study(flair_level: float) -> dict:
    """Two channels (FLAIR, T1ce), 10 slices; the tumour on slices 3-6 shows in T1ce at 1.0 and in FLAIR at
    ``flair_level``; per-slice labels as SliceLabelsd writes them."""
    image = torch.zeros(2, 8, 8, 10)
    image[0, :, :, 3:7] = flair_level
    image[1, :, :, 3:7] = 1.0
    image[:, 0, 0, :] = 0.01  # no channel is all zero
    labels = torch.zeros(10)
    labels[3:7] = 1
    return {"image": MetaTensor(image), "label": labels}


def _score(_net, volume: torch.Tensor) -> np.ndarray:
    """A slice's probability: the brightest channel's mean over the slice (FLAIR alone scores its dimmer level)."""
    return volume.amax(dim=0).mean(dim=(0, 1)).numpy()


def test_calibration_writes_a_threshold_per_subset_beside_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "classifier.pt"
    torch.save(torch.nn.Linear(1, 1).state_dict(), checkpoint)
    studies = {"a": _study(0.2), "b": _study(0.3)}
    calibration = GateCalibration(
        classifier=torch.nn.Linear(1, 1),
        checkpoint=checkpoint,
        datalist=[{"id": k} for k in studies],
        preprocessing=lambda item: studies[item["id"]],
        keep_sequences=lambda keep: KeepSequences(SEQUENCES, keep),
        subsets=None,  # every non-empty subset
        sequences=SEQUENCES,
        recall=1.0,
        ceiling=0.5,
        score=_score,
    )
    path = calibration()
    assert path == gate_thresholds_path(checkpoint) == tmp_path / "classifier_thresholds.json"
    record = json.loads(path.read_text())
    assert set(record["thresholds"]) == {"FLAIR", "T1ce", "FLAIR+T1ce"}
    thresholds = load_gate_thresholds(checkpoint)
    # FLAIR alone: its tumour slices score 0.2 and 0.3 (edge voxel included): the threshold keeps both studies'
    assert thresholds["FLAIR"] == pytest.approx(0.2 * 63 / 64 + 0.01 / 64, abs=1e-6)
    assert thresholds["T1ce"] == thresholds["FLAIR+T1ce"] == 0.5  # 1.0, capped at the bundle's threshold
    assert record["slices"]["FLAIR"]["positive_slices"] == 8 and record["validation_studies"] == 2
    assert load_gate_thresholds(tmp_path / "other.pt") == {}


def test_calibration_is_off_without_a_recall(tmp_path):
    calibration = GateCalibration(torch.nn.Linear(1, 1), tmp_path / "c.pt", [], None, None, None, SEQUENCES, None,
                                  0.5, _score)  # fmt: skip
    assert calibration() is None and not list(tmp_path.iterdir())


def test_the_cascade_gates_each_study_with_its_sequences_threshold():
    """A study's ``sequences_used`` picks its calibrated threshold; the report records the one used."""
    volume = _phantom()
    inferer = _inferer(thresholds={"FLAIR": 0.2, "FLAIR+T1ce": 0.9})
    segmenter = ThresholdSegmenter()
    for used, expected in (("FLAIR", 0.2), ("FLAIR+T1ce", 0.9), ("T1ce", 0.2)):
        study = MetaTensor(volume.clone(), meta={**volume.meta, SEQUENCES_META_KEY: used})
        inferer(study[None], segmenter)
        assert inferer.reports[-1]["selection"]["threshold"] == expected
        assert inferer.reports[-1]["input"] == {"sequences_used": used}
