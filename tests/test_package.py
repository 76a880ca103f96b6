"""Every module of ``pipelines`` (and ``data_manifests``) is reachable as ``pipelines.<package>.<name>``, as bundle
configs use them (``$pipelines.inference.cascade.x``, ``$data_manifests.native.x``), and the package has no import
cycle."""

import importlib
import pkgutil
from pathlib import Path

import data_manifests
import pipelines


def _packages():
    root = Path(pipelines.__file__).parent
    yield pipelines, root
    yield data_manifests, Path(data_manifests.__file__).parent
    for info in pkgutil.iter_modules([str(root)]):
        if info.ispkg:
            yield importlib.import_module(f"pipelines.{info.name}"), root / info.name


def test_every_submodule_is_listed_for_lazy_access():
    for package, folder in _packages():
        modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
        modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        assert modules == set(package._SUBMODULES), package.__name__
    assert pipelines.inference.fast_inference.__name__ == "pipelines.inference.fast_inference"


def test_every_module_imports_on_its_own():
    for package, _ in _packages():
        for name in package._SUBMODULES:
            module = getattr(package, name)
            assert module.__name__ == f"{package.__name__}.{name}"
