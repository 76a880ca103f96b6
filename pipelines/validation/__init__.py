"""Checks of input data and paths, each problem named with its file: volumes, datalists, DICOM series.

Modules load on first attribute access (``pipelines.validation.checks``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "checks",
    "dicom_checks",
    "dicom_objects",
    "errors",
    "path_safety",
    "volume_checks",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
