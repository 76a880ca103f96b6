"""Training helpers: resumable state and MLflow runs, distributed training, gradient clipping.

Modules load on first attribute access (``pipelines.training.distributed``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "batch_digests",
    "datalist_sections",
    "distributed",
    "gate_calibration",
    "gradients",
    "model_registry",
    "random_state",
    "resumable_run",
    "resume",
    "tracking",
    "training_state",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
