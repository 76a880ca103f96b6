"""Distributed data-parallel training with ``torchrun``: the helpers behind each bundle's ``multi_gpu_train.yaml``.

One process per GPU (NCCL) or per CPU slot (gloo), started by ``torchrun``, which sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Each rank:

- picks its device (:func:`rank_device`) and joins the process group (:func:`init_distributed`);
- wraps the network in ``DistributedDataParallel`` (:func:`wrap_ddp`);
- caches only its shard of the training and validation lists (:func:`shard_datalist`);
- keeps the handlers that write (MLflow, checkpoints, training state, console statistics) on rank 0 only
  (:func:`rank_zero_only`); the metrics and early stopping stay on every rank, so all ranks stop together;
- seeds its random generators with its own seed (:func:`rank_seed`), so the ranks draw different augmentations.

See ``docs/distributed.md``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import partition_dataset
from monai.utils.misc import MAX_SEED

__all__ = [
    "RANK_ZERO_ONLY",
    "barrier",
    "check_resume_unsupported",
    "default_backend",
    "destroy_distributed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "prepare_tracking_store",
    "rank_device",
    "rank_seed",
    "rank_zero_only",
    "RankWeightsSaver",
    "shard_datalist",
    "wrap_ddp",
]

logger = logging.getLogger(__name__)

# Handler classes that write files, runs or console output: attached on rank 0 only. Matched by class name
# anywhere in the handler's MRO, so subclasses are covered and no module has to be imported
# (``pipelines.training.resume``
# may not exist in every checkout).
RANK_ZERO_ONLY: tuple[str, ...] = (
    # MLflow / TensorBoard / console
    "MLFlowHandler",
    "TrackedRunHandler",
    "ResumableRunHandler",
    "StatsHandler",
    "TensorBoardStatsHandler",
    "TensorBoardImageHandler",
    "MetricsSaver",
    "ClassificationSaver",
    # checkpoints and resume state
    "CheckpointSaver",
    "CheckpointLoader",
    "BestCheckpointSaver",
    "TrainingStateHandler",
)


def get_rank() -> int:
    """This process's global rank; 0 when no process group is initialised."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes in the group; 1 when no process group is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, set by ``torchrun``); 0 outside ``torchrun``."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def default_backend() -> str:
    """``nccl`` when CUDA (and NCCL) is available, else ``gloo``."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def rank_device() -> torch.device:
    """The device of this rank: ``cuda:<LOCAL_RANK>`` on a CUDA machine, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{get_local_rank()}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> int:
    """Join the process group that ``torchrun`` set up (once; later calls do nothing) and return the rank.

    Args:
        backend: ``nccl``, ``gloo``, or ``None`` to choose with :func:`default_backend`.

    Raises:
        ValueError: when the process was not started by ``torchrun`` (no ``WORLD_SIZE`` / ``RANK`` in the
            environment), or the backend is unknown.
    """
    if dist.is_initialized():
        return dist.get_rank()
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ValueError(
            f"multi_gpu_train.yaml must be started by torchrun (missing environment variables: {', '.join(missing)}); "
            "see docs/distributed.md"
        )
    backend = backend or default_backend()
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown distributed backend {backend!r}: expected 'nccl', 'gloo' or null (automatic)")
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend)
    logger.info("rank %d of %d joined the process group (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_rank()


def barrier() -> None:
    """Wait for every rank; does nothing without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int | None, rank: int | None = None) -> int | None:
    """The seed of this rank's random generators: ``seed + rank`` (modulo 2**32); ``None`` stays ``None``.

    With the same seed everywhere, every rank would draw the same crops, flips and noise (and dropout masks), so
    ``world_size`` ranks would add no variety to an epoch. ``seed + rank`` keeps a run reproducible for a given
    number of ranks, and rank 0 draws as a single-process training with ``seed`` does. The data shards are drawn
    with ``seed`` itself, the same on every rank (:func:`shard_datalist`), and DDP broadcasts rank 0's initial
    weights, so the ranks still start from the same network.

    Args:
        seed: the bundle's ``seed``.
        rank: defaults to the process group's rank.
    """
    if seed is None:
        return None
    rank = get_rank() if rank is None else rank
    return (int(seed) + int(rank)) % MAX_SEED


def prepare_tracking_store(tracking_uri: str) -> None:
    """On rank 0, open the MLflow store once so that its schema exists before the other ranks open it.

    Every rank builds the bundle's MLflow handlers (only rank 0 attaches them), and building one opens the store;
    several processes creating the same SQLite database at once race in its schema migration.
    """
    if get_rank() != 0:
        return
    import mlflow  # noqa: PLC0415 - only the ranks that track need it

    mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)


def check_resume_unsupported(resume: Any) -> None:
    """Raise a ``ValueError`` when ``resume`` is set: resuming is a single-process feature for now.

    The training state is loaded on rank 0 only, so the other ranks would start from other weights and epochs.
    """
    from pipelines.validation.path_safety import as_bool

    if as_bool(resume, "resume"):
        raise ValueError(
            "resume: true is not supported by multi_gpu_train.yaml (the state would be restored on rank 0 only); "
            "resume single-process training instead"
        )


def wrap_ddp(network: torch.nn.Module, device: torch.device | str) -> torch.nn.parallel.DistributedDataParallel:
    """Move ``network`` to ``device`` and wrap it in ``DistributedDataParallel`` (rank 0's weights are broadcast)."""
    device = torch.device(device)
    network = network.to(device)
    device_ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def _case_name(item: Any) -> str:
    """A readable name for a datalist entry: the image's file name, else the entry itself."""
    if isinstance(item, dict) and "image" in item:
        image = item["image"]
        image = image[0] if isinstance(image, (list, tuple)) and image else image
        return Path(str(image)).name
    return str(item)


def shard_datalist(
    data: Sequence[Any],
    shuffle: bool = True,
    seed: int = 0,
    record_dir: str | os.PathLike | None = None,
    name: str = "train",
    rank: int | None = None,
    world_size: int | None = None,
) -> list[Any]:
    """This rank's share of ``data``: ``monai.data.partition_dataset`` with equal shard lengths.

    When ``len(data)`` does not divide evenly, the first entries (after shuffling) are repeated on the last
    ranks, so every rank runs the same number of iterations (DDP would hang otherwise) and no case is left out;
    a list shorter than the number of ranks is repeated (one validation case is validated on every rank).
    Every rank shuffles with the same ``seed``, so the shards are disjoint whenever the length divides evenly.

    Args:
        data: datalist entries (dicts with an ``image`` key, usually).
        shuffle: shuffle before sharding (training); keep the order for validation.
        seed: shuffling seed, the same on every rank.
        record_dir: if given, writes ``<record_dir>/<name>_rank<r>.json``: the case names this rank holds.
        name: the list's name in the log and the record (``train``, ``val``).
        rank, world_size: default to the process group's (0 and 1 without one).
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if not data:
        raise ValueError(f"the {name} datalist is empty: nothing to shard over {world_size} rank(s)")
    data = list(data)
    if len(data) < world_size:  # partition_dataset refuses fewer items than partitions: repeat them
        data = (data * world_size)[:world_size]
    shard = partition_dataset(data=data, num_partitions=world_size, shuffle=shuffle, seed=seed, even_divisible=True)[
        rank
    ]
    names = [_case_name(item) for item in shard]
    logger.info("rank %d of %d holds %d %s case(s): %s", rank, world_size, len(shard), name, ", ".join(names))
    if record_dir is not None:
        folder = Path(record_dir)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": rank, "world_size": world_size, "name": name, "cases": names}
        (folder / f"{name}_rank{rank}.json").write_text(json.dumps(record, indent=2))
    return shard


def _class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def rank_zero_only(
    handlers: Iterable[Any] | None, names: Iterable[str] = RANK_ZERO_ONLY, rank: int | None = None
) -> list[Any]:
    """``handlers`` on rank 0; on other ranks, without those whose class (or a base class) is named in ``names``.

    Args:
        handlers: engine handlers (``None`` is an empty list).
        names: class names to drop on ranks other than 0 (default :data:`RANK_ZERO_ONLY`).
        rank: defaults to the process group's rank.
    """
    handlers = list(handlers or [])
    rank = get_rank() if rank is None else rank
    if rank == 0:
        return handlers
    drop = set(names)
    kept = [handler for handler in handlers if not (_class_names(handler) & drop)]
    logger.debug("rank %d keeps %d of %d handlers", rank, len(kept), len(handlers))
    return kept


class RankWeightsSaver:
    """Handler writing this rank's network weights to ``<output_dir>/rank<r>_weights.pt`` when training completes.

    For checking that the ranks stayed in step (tests; debugging a run). A DDP wrapper is unwrapped, so the keys
    are those of the plain network.

    Args:
        network: the trained network (or its ``DistributedDataParallel`` wrapper).
        output_dir: folder of the files (created when missing).
    """

    def __init__(self, network: torch.nn.Module, output_dir: str | os.PathLike) -> None:
        self.network = network
        self.output_dir = Path(output_dir)

    def attach(self, engine: Engine) -> None:
        """Save at ``COMPLETED``."""
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Write the weights of this rank."""
        network = getattr(self.network, "module", self.network)
        state = {key: value.detach().cpu() for key, value in network.state_dict().items()}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"rank{get_rank()}_weights.pt"
        torch.save(state, path)
        logger.info("rank %d wrote its weights to %s", get_rank(), path)
