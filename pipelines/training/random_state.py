"""The random generators of a training, captured and restored so that a resumed run draws what an uninterrupted
one would: Python's ``random``, NumPy's global generator, torch's CPU and CUDA generators, the ``R`` of every MONAI
``Randomizable`` in the training dataset's transforms, and the DataLoader's own generators.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable, Transform

__all__ = ["capture_random_state", "randomizable_transforms", "restore_random_state"]

logger = logging.getLogger(__name__)


_WALKED = (Transform, Randomizable, torch.utils.data.Dataset)


def randomizable_transforms(root: Any) -> list[tuple[str, Randomizable]]:
    """Every MONAI ``Randomizable`` reachable from ``root`` with its own ``R``, and its path from ``root``.

    ``root`` is a DataLoader (its ``dataset`` is walked), a dataset or a transform. The walk follows the attributes
    that hold transforms or datasets, and lists of them: a dataset's ``transform`` (and a wrapped ``dataset``), a
    ``Compose``'s ``transforms``, the array transform inside a dictionary one (``RandRotated.rand_rotate``). The
    order is that of the attributes, so the same configuration always gives the same paths
    (``dataset.transform.transforms[9].rand_rotate``); each object is listed once.
    """
    found: list[tuple[str, Randomizable]] = []
    seen: set[int] = set()

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                if isinstance(item, (*_WALKED, list, tuple)):
                    walk(item, f"{path}[{i}]")
            return
        if not isinstance(obj, _WALKED) or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable) and isinstance(getattr(obj, "R", None), np.random.RandomState):
            found.append((path, obj))
        for key, value in vars(obj).items():
            if not key.startswith("__") and isinstance(value, (*_WALKED, list, tuple)):
                walk(value, f"{path}.{key}")

    if isinstance(root, torch.utils.data.DataLoader):
        walk(root.dataset, "dataset")
    else:
        walk(root, type(root).__name__)
    return found


def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` objects a DataLoader shuffles with, by where they sit; empty when it has none (a
    ``RandomSampler`` without a generator draws its seed from torch's global generator, restored anyway)."""
    owners = {
        "generator": loader,
        "sampler.generator": getattr(loader, "sampler", None),
        "batch_sampler.sampler.generator": getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    }
    generators: dict[str, torch.Generator] = {}
    for name, owner in owners.items():
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in generators.values()):
            generators[name] = generator
    return generators


def _numpy_state(state: tuple) -> dict:
    """``RandomState.get_state()`` as tensors and numbers (a plain ``ndarray`` is refused by ``weights_only``)."""
    name, keys, pos, has_gauss, cached_gaussian = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_tuple(saved: Mapping) -> tuple:
    """The inverse of :func:`_numpy_state`: a tuple for ``RandomState.set_state``."""
    keys = saved["keys"].cpu().numpy().astype(np.uint32)
    return saved["name"], keys, int(saved["pos"]), int(saved["has_gauss"]), float(saved["cached_gaussian"])


def capture_random_state(loader: Any = None) -> dict:
    """The state of every random generator a training draws from, as tensors, lists and numbers.

    Python's ``random``, NumPy's global generator, torch's CPU generator and, once CUDA is in use, every CUDA
    device's generator; with ``loader``, also the ``R`` of each ``Randomizable`` in its dataset's transforms (see
    :func:`randomizable_transforms`) and the DataLoader's own ``torch.Generator`` objects, if any. The result loads
    with ``torch.load(weights_only=True)``; :func:`restore_random_state` puts it back.

    With ``num_workers > 0`` the workers' transforms are seeded from torch's generator when each epoch's iterator
    starts (MONAI's ``worker_init_fn``), so restoring torch's generator restores them too (unless the workers are
    persistent).
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if loader is not None:
        transforms = randomizable_transforms(loader)
        state["transforms"] = {
            "paths": [path for path, _ in transforms],
            "states": [_numpy_state(transform.R.get_state()) for _, transform in transforms],
        }
        state["generators"] = {name: g.get_state() for name, g in _loader_generators(loader).items()}
    return state


def restore_random_state(saved: Mapping, loader: Any = None, source: str = "the saved state") -> None:
    """Put back the generators saved by :func:`capture_random_state`.

    The global generators are always restored. The transforms' ``R`` are restored only when ``loader``'s transforms
    have the same paths as when saved; otherwise (the augmentation changed) they keep their seeds and a warning says
    so, as it does for CUDA states saved on another number of devices or on a CUDA machine when resuming on the CPU.

    Args:
        saved: the ``random`` entry of a training state.
        loader: the training DataLoader whose transforms and generators to restore.
        source: named in the warnings (the state file).
    """
    python = saved["python"]
    random.setstate((int(python["version"]), tuple(int(x) for x in python["internal"].tolist()), python["gauss_next"]))
    np.random.set_state(_numpy_tuple(saved["numpy"]))
    torch.set_rng_state(saved["torch"].cpu())
    cuda = saved.get("cuda") or []
    if cuda and not torch.cuda.is_available():
        logger.warning("%s: the CUDA random generators were saved on a CUDA machine; not restored on the CPU", source)
    elif cuda:
        count = torch.cuda.device_count()
        if len(cuda) != count:
            logger.warning(
                "%s: CUDA random generators saved for %d device(s), %d here: restoring the first %d",
                source,
                len(cuda),
                count,
                min(count, len(cuda)),
            )
        for device, state in enumerate(cuda[:count]):
            torch.cuda.set_rng_state(state.cpu(), device)
    if loader is None:
        return
    _restore_loader(saved, loader, source)


def _restore_loader(saved: Mapping, loader: Any, source: str) -> None:
    transforms = randomizable_transforms(loader)
    paths = [path for path, _ in transforms]
    saved_transforms = saved.get("transforms")
    if saved_transforms is None:
        logger.warning("%s holds no random state of the transforms: the augmentation starts from its seed", source)
    elif list(saved_transforms["paths"]) != paths:
        changed = sorted(set(paths).symmetric_difference(saved_transforms["paths"]))
        logger.warning(
            "%s: the random transforms changed since it was saved (%d then, %d now; differing: %s): "
            "their random states are not restored, the augmentation starts from its seed",
            source,
            len(saved_transforms["paths"]),
            len(paths),
            ", ".join(changed[:5]) or "the order",
        )
    else:
        for (_, transform), state in zip(transforms, saved_transforms["states"], strict=True):
            transform.R.set_state(_numpy_tuple(state))
    saved_generators = saved.get("generators") or {}
    for name, generator in _loader_generators(loader).items():
        if name in saved_generators:
            generator.set_state(saved_generators[name].cpu())
        else:
            logger.warning("%s holds no state of the DataLoader's %s: not restored", source, name)
