"""Lazy submodule access, so that a bundle config can ``$import pipelines`` and write
``$pipelines.inference.cascade.x`` without paying at start-up for the modules it never uses."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence


def lazy_getattr(package: str, submodules: Sequence[str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``package.<name>`` on first access, for each name in ``submodules``."""

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
