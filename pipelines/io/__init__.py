"""Reading and writing images and files: atomic writes, prediction writers, inference inputs, DICOM SEG.

Modules load on first attribute access (``pipelines.io.atomic``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "array_order",
    "atomic",
    "dicom_source",
    "dicom_reader",
    "dicom_seg",
    "gzip_streams",
    "inputs",
    "volume_reader",
    "writers",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
