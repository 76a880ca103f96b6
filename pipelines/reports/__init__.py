"""Reports of evaluations and trainings: HTML, overlays, training curves, per-workflow result savers.

Modules load on first attribute access (``pipelines.reports.classifier_reports``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "classifier_reports",
    "html_report",
    "overlays",
    "segmentation_reports",
    "training_curves",
    "xray_reports",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
