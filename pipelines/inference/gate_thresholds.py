"""The cascade gate's calibrated thresholds (written after the classifier's training by
:mod:`pipelines.training.gate_calibration`): where they live, how they are read, which one a study gets."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["gate_thresholds_path", "load_gate_thresholds", "threshold_for"]


def gate_thresholds_path(classifier_ckpt_path: str | os.PathLike) -> Path:
    """Where the calibrated thresholds of a classifier checkpoint live: ``<stem>_thresholds.json`` beside it."""
    path = Path(classifier_ckpt_path)
    return path.with_name(f"{path.stem}_thresholds.json")


def load_gate_thresholds(classifier_ckpt_path: str | os.PathLike) -> dict[str, float]:
    """The calibrated thresholds of a classifier checkpoint by sequences used (``{"FLAIR": 0.12, ...}``); empty when
    it has none (a bundle without sequences, or a checkpoint trained before calibration existed)."""
    path = gate_thresholds_path(classifier_ckpt_path)
    if not path.is_file():
        return {}
    return {str(k): float(v) for k, v in json.loads(path.read_text())["thresholds"].items()}


def threshold_for(sequences_used: str | None, thresholds: Mapping[str, float], default: float) -> float:
    """The gate threshold of a study: its subset's calibrated one; for a subset not calibrated, the lowest
    calibrated one (keep more slices rather than miss a tumour); ``default`` when nothing is calibrated."""
    if not thresholds:
        return default
    if sequences_used in thresholds:
        return thresholds[sequences_used]
    return min(thresholds.values())
