"""The embedded default data: seeded phantoms of liver CT, lung CT, brain MR and chest X-ray.

Modules load on first attribute access (``pipelines.phantoms.brain_mr``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "brain_mr",
    "brain_mr_anatomy",
    "brain_mr_head",
    "chest_xray",
    "chest_xray_anatomy",
    "common",
    "liver_ct",
    "liver_ct_anatomy",
    "liver_ct_regions",
    "lung_ct",
    "lung_ct_anatomy",
    "lung_ct_lesions",
    "lung_ct_regions",
    "head_ct",
    "lung_ct_tubes",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
