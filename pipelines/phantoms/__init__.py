"""The embedded default data: seeded phantoms of liver CT, lung CT, brain MR and chest X-ray.

Modules load on first attribute access (``pipelines.phantoms.brain_mr``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "brain_mr",
    "chest_xray",
    "liver_ct",
    "lung_ct",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
