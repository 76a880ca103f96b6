"""Datalists (MONAI / Decathlon JSON) of the datasets the bundles train on, and the code that builds them.

Modules load on first attribute access (``data_manifests.native``), so that a bundle config can ``$import
data_manifests`` for the one builder it calls.
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "brats",
    "chest_xray",
    "covid19_20",
    "driver",
    "kaggle_3m",
    "lits",
    "msd",
    "native",
    "real_public",
    "splits",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
