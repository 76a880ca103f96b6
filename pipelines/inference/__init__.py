"""Inference: the slice-gated cascade, its slabs, fast sliding windows, per-case fault tolerance.

Modules load on first attribute access (``pipelines.inference.cascade``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "cascade",
    "fast_inference",
    "gate_thresholds",
    "robust_inference",
    "slabs",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
