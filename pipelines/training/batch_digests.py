"""A digest of every training batch, per rank and epoch, to check that a resumed or multi-GPU run sees the same data."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from pipelines.io.atomic import write_json_atomic

__all__ = ["BatchDigestRecorder"]


def _rank() -> int:
    """This process's rank in its process group; 0 without one."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class BatchDigestRecorder:
    """Handler recording a short digest of every training batch, per epoch, in a JSON file.

    For checking reproducibility: a resumed training should see the same batches as an uninterrupted one from the
    epoch it resumes at, and the ranks of a DDP training should see different ones. The file,
    ``{"rank": r, "epochs": {"1": ["<digest of batch 1>", ...], ...}}``, is rewritten atomically at the end of every
    epoch; the epochs already in it (those of the run before a resume) are kept.

    Args:
        output_path: the JSON file; ``{rank}`` in it is replaced by the process's rank (0 without a process group).
        keys: the batch entries digested together (tensors, or lists of them).
    """

    def __init__(self, output_path: str | os.PathLike, keys: str | list[str] | tuple[str, ...] = "image") -> None:
        self.output_path = str(output_path)
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.epochs: dict[str, list[str]] = {}

    @property
    def path(self) -> Path:
        """The file, with ``{rank}`` filled in."""
        return Path(self.output_path.replace("{rank}", str(_rank())))

    def attach(self, engine: Engine) -> None:
        """Digest each batch when its iteration starts; write the file at the end of every epoch."""
        if not engine.has_event_handler(self.record, Events.ITERATION_STARTED):
            engine.add_event_handler(Events.ITERATION_STARTED, self.record)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def digest(self, batch: Any) -> str:
        """The first 16 hex digits of the SHA-256 of the batch's ``keys`` entries (values, shapes and dtypes)."""
        items = batch if isinstance(batch, (list, tuple)) else [batch]
        sha = hashlib.sha256()
        for item in items:
            for key in self.keys:
                if not isinstance(item, Mapping) or key not in item:
                    raise ValueError(f"BatchDigestRecorder: the batch has no {key!r} entry to digest")
                values = item[key] if isinstance(item[key], (list, tuple)) else [item[key]]
                for value in values:
                    array = torch.as_tensor(value).detach().cpu().contiguous()
                    sha.update(f"{key}{tuple(array.shape)}{array.dtype}".encode())
                    sha.update(array.numpy().tobytes())
        return sha.hexdigest()[:16]

    def record(self, engine: Engine) -> None:
        """Digest the batch of this iteration."""
        self.epochs.setdefault(str(engine.state.epoch), []).append(self.digest(engine.state.batch))

    def write(self, engine: Engine) -> None:
        """Write the digests so far, after those of the file's earlier epochs."""
        path = self.path
        try:
            earlier = json.loads(path.read_text(encoding="utf-8")).get("epochs", {})
        except (OSError, ValueError, AttributeError):
            earlier = {}
        write_json_atomic({"rank": _rank(), "epochs": {**earlier, **self.epochs}}, path)
