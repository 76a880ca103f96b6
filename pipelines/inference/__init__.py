"""Inference: the slice-gated cascade, its slabs and organ following, fast sliding windows, per-case fault tolerance.

Modules load on first attribute access (``pipelines.inference.cascade``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "cascade",
    "fast_inference",
    "gate_thresholds",
    "organ_following",
    "robust_inference",
    "slabs",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
