"""Metrics: segmentation Dice per class and region, slice classification, multi-class classification.

Modules load on first attribute access (``pipelines.evaluation.classification_metrics``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "classification_metrics",
    "classification_outputs",
    "classification_scores",
    "metrics",
    "multiclass_metrics",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
