"""The chest X-ray workflow's own steps: radiograph reading, datalist checks, the classifier's results.

Modules load on first attribute access (``pipelines.xray.radiographs``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "classifier_results",
    "radiograph_reader",
    "radiographs",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
