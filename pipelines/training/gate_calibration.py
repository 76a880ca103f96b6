"""Calibrate the cascade's gate per subset of MRI sequences, after the slice classifier's training.

A classifier trained with sequence dropout ranks slices well with any subset of sequences, but its probabilities
sink when sequences are missing: on the brain phantoms with FLAIR alone its slice ROC AUC was 0.945 while only 27 %
of the tumour slices reached 0.5, and on two real BraTS studies with FLAIR alone it kept no slice at all, so the
cascade returned an empty mask where the whole volume found the tumour (Dice 0.78). A single threshold cannot
serve every subset. :class:`GateCalibration` scores the validation studies with each subset of sequences, takes
per subset the highest threshold that keeps ``recall`` of the slices holding the target (never above the
bundle's ``cascade_threshold``), and writes them beside the classifier checkpoint
(``classifier_thresholds.json``). :mod:`pipelines.inference.gate_thresholds` reads them for the cascade, which
picks the threshold of the sequences a study has (``sequences_used``).

The validation studies only are used (never test or real cases), with the stage's own preprocessing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from pipelines.inference.gate_thresholds import gate_thresholds_path
from pipelines.io.atomic import write_json_atomic
from pipelines.validation.errors import DataError

__all__ = ["GateCalibration", "recall_threshold"]

logger = logging.getLogger(__name__)


def recall_threshold(positive_probabilities: Sequence[float], recall: float, ceiling: float) -> float:
    """The highest threshold at which ``recall`` of the positive slices still score at or above it, at most
    ``ceiling``; ``ceiling`` when there is no positive slice."""
    probs = np.sort(np.asarray(positive_probabilities, dtype=np.float64))
    if probs.size == 0:
        return float(ceiling)
    dropped = min(int(np.floor((1.0 - recall) * probs.size + 1e-9)), probs.size - 1)  # slices it may miss
    return float(min(ceiling, probs[dropped]))


class GateCalibration:
    """Per-subset gate thresholds from the validation studies; call it once after training (the stage's
    ``finalize``).

    Args:
        classifier: the slice classifier network; the best checkpoint is loaded into it first.
        checkpoint: the classifier checkpoint (``classifier_ckpt_path``); the thresholds go beside it.
        datalist: the validation entries (``image``, ``label``).
        preprocessing: the stage's deterministic preprocessing followed by its slice labels (``SliceLabelsd``
            writing one 0/1 per axial slice to ``label``).
        keep_sequences: ``keep_sequences(subset)`` gives the transform that zeroes the other sequences of a
            study (``transforms.KeepSequences``), which raises ``DataError`` for a study lacking all of them.
        subsets: the subsets to calibrate, as lists of sequence names (``[["FLAIR"], ["FLAIR", "T1ce"], ...]``);
            None: every non-empty subset of ``sequences``.
        sequences: the bundle's sequences, in channel order (the keys are written in that order, as
            ``sequences_used``).
        recall: the share of positive slices each threshold keeps; None or 0 turns calibration off.
        ceiling: the bundle's ``cascade_threshold``: a calibrated threshold is never stricter.
        score: ``score(classifier, volume) -> probabilities``, the cascade's own slice scoring and smoothing.
    """

    def __init__(
        self,
        classifier: torch.nn.Module,
        checkpoint: str | os.PathLike,
        datalist: Sequence[Mapping],
        preprocessing: Callable,
        keep_sequences: Callable[[Sequence[str]], Callable],
        subsets: Sequence[Sequence[str]] | None,
        sequences: Sequence[str],
        recall: float | None,
        ceiling: float,
        score: Callable[[torch.nn.Module, torch.Tensor], np.ndarray],
    ) -> None:
        self.classifier = classifier
        self.checkpoint = Path(checkpoint)
        self.datalist = list(datalist)
        self.preprocessing = preprocessing
        self.keep_sequences = keep_sequences
        self.sequences = list(sequences)
        if subsets is None:
            n = len(self.sequences)
            subsets = [[s for i, s in enumerate(self.sequences) if mask >> i & 1] for mask in range(1, 2**n)]
        self.subsets = [list(s) for s in subsets]
        self.recall = float(recall) if recall else None
        self.ceiling = float(ceiling)
        self.score = score

    def _key(self, subset: Sequence[str]) -> str:
        return "+".join(s for s in self.sequences if s in subset)

    @torch.inference_mode()
    def __call__(self) -> Path | None:
        """Calibrate and write the thresholds; return their file (None when calibration is off or impossible)."""
        if not self.recall or not self.subsets:
            return None
        if not self.checkpoint.is_file() or not self.datalist:
            logger.warning("gate calibration skipped: no checkpoint %s or no validation studies", self.checkpoint)
            return None
        from pipelines.api import load_weights

        load_weights(self.classifier, str(self.checkpoint))
        positives: dict[str, list[float]] = {self._key(s): [] for s in self.subsets}
        kept_negatives: dict[str, list[float]] = {self._key(s): [] for s in self.subsets}
        for item in self.datalist:
            data = self.preprocessing(dict(item))
            labels = np.asarray(torch.as_tensor(data["label"]).cpu()).reshape(-1) > 0
            for subset in self.subsets:
                try:
                    image = self.keep_sequences(subset)(data["image"])
                except DataError:  # the study lacks every sequence of this subset
                    continue
                probs = np.asarray(self.score(self.classifier, image))
                positives[self._key(subset)].extend(probs[labels].tolist())
                kept_negatives[self._key(subset)].extend(probs[~labels].tolist())
        thresholds, details = {}, {}
        for key, probs in positives.items():
            thresholds[key] = recall_threshold(probs, self.recall, self.ceiling)
            negatives = np.asarray(kept_negatives[key])
            details[key] = {
                "positive_slices": len(probs),
                "negative_slices": int(negatives.size),
                "negatives_kept": float((negatives >= thresholds[key]).mean()) if negatives.size else None,
            }
            logger.info(
                "gate threshold for %s: %.3f (keeps %.0f%% of %d tumour slices in validation)",
                key,
                thresholds[key],
                100 * self.recall,
                len(probs),
            )
        path = gate_thresholds_path(self.checkpoint)
        record = {
            "recall": self.recall,
            "ceiling": self.ceiling,
            "validation_studies": len(self.datalist),
            "thresholds": thresholds,
            "slices": details,
        }
        write_json_atomic(record, path, indent=1)
        return path
