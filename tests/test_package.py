"""Every module of ``pipelines`` is reachable as ``pipelines.<name>``, as bundle configs use them (``$pipelines.x``)."""

from pathlib import Path

import pipelines


def test_every_submodule_is_listed_for_lazy_access():
    modules = {p.stem for p in Path(pipelines.__file__).parent.glob("*.py") if not p.stem.startswith("__")}
    assert modules == set(pipelines._SUBMODULES)
    assert pipelines.fast_inference.__name__ == "pipelines.fast_inference"
