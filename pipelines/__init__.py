"""The Python behind the bundles: workflow registry, data checks, phantoms, metrics, tracking, command line.

Submodules load on first attribute access (``pipelines.checks``), so a bundle config can ``$import pipelines``
and use any of them without paying for the others at start-up.
"""

import importlib

_SUBMODULES = (
    "api",
    "atomic",
    "cascade",
    "checks",
    "classification_metrics",
    "classifier_reports",
    "classifiers",
    "cli",
    "config_checks",
    "dicom_checks",
    "dicom_seg",
    "distributed",
    "export",
    "fast_inference",
    "fast_layers",
    "html_report",
    "inputs",
    "metrics",
    "multiclass_metrics",
    "overlays",
    "path_safety",
    "phantoms",
    "phantoms_brain",
    "phantoms_chest_xray",
    "phantoms_lung_ct",
    "reports",
    "resume",
    "robust_inference",
    "segmenters",
    "slabs",
    "tracking",
    "training",
    "training_curves",
    "tversky",
    "workflows",
    "writers",
    "xray",
    "xray_reports",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
