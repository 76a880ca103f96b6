"""The command line (``radcascade``), its config checks, and model export.

Modules load on first attribute access (``pipelines.cli.config_checks``).
"""

from pipelines._lazy import lazy_getattr

_SUBMODULES = (
    "compose_configs",
    "config_checks",
    "stage_checks",
    "export",
    "main",
    "progress",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)
