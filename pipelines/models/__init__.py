"""Network definitions and losses: 3D segmenters, 2D slice classifiers, exact fast layers, Tversky loss.

Modules load on first attribute access (``pipelines.models.classifiers``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "classifiers",
    "fast_layers",
    "segmenters",
    "tversky",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
