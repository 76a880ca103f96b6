"""Import the MONAI Label app's modules by path, for tests in the main environment (no MONAI Label there)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from pipelines.workflows import REPO_ROOT

APP_DIR = REPO_ROOT / "apps" / "radcascade_label"


def load_app_module(relative_path: str) -> ModuleType:
    """The module at ``apps/radcascade_label/<relative_path>``, as ``radcascade_label_<stem>``.

    Not as ``lib.bundles``: ``lib`` is MONAI Label's package name for every app, too generic for the test session.
    Only modules that do not import MONAI Label or other ``lib`` modules load this way.
    """
    name = "radcascade_label_" + relative_path.removesuffix(".py").replace("/", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_DIR / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
