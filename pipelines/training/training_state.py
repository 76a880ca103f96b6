"""Where the training state of a resumable training lives and whether this run resumes from it.

:class:`TrainingState` is shared by the handlers of :mod:`pipelines.training.resume`: the state file
(``<ckpt_dir>/train_state.pt``), ``resume: true`` or not, and the MLflow run id read back from the file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from pipelines.validation.path_safety import as_bool

__all__ = ["STATE_VERSION", "TrainingState"]

logger = logging.getLogger(__name__)


STATE_VERSION = 1


class TrainingState:
    """Where a training keeps its resumable state, and whether this run resumes from it.

    The file is read once, on first use, with ``torch.load(weights_only=True)``. The MLflow run id travels
    inside it: the run is continued only together with the state it belongs to.

    Args:
        path: the state file (``<ckpt_dir>/train_state.pt``).
        resume: continue from ``path`` when it exists; when it does not, a new training starts (logged).
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = as_bool(resume, "resume")
        self._checkpoint: dict | None = None
        self._loaded = False
        self._run_id: str | None = None
        self._run_name: str | None = None
        self.run_reopened = False

    @property
    def run_id(self) -> str | None:
        """The MLflow run of this training: the saved one when resuming, else the one started in this run."""
        self.checkpoint  # noqa: B018 - loads the state, which names the run
        return self._run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self._run_id = value

    @property
    def run_name(self) -> str | None:
        """The name of :attr:`run_id`'s run."""
        self.checkpoint  # noqa: B018 - loads the state, which names the run
        return self._run_name

    @run_name.setter
    def run_name(self, value: str | None) -> None:
        self._run_name = value

    @property
    def resuming(self) -> bool:
        """True when this run continues a saved training."""
        return self.checkpoint is not None

    @property
    def checkpoint(self) -> dict | None:
        """The saved state (None when not resuming)."""
        if not self._loaded:
            self._loaded = True
            self._checkpoint = self._load() if self.resume else None
        return self._checkpoint

    @property
    def meta(self) -> dict:
        """The ``meta`` entry of the saved state (``epoch``, ``iteration``, ``mlflow_run_id``, ``finished``...)."""
        return dict((self.checkpoint or {}).get("meta", {}))

    def _load(self) -> dict | None:
        if not self.path.is_file():
            logger.warning("resume=true but there is no training state at %s: starting a new training", self.path)
            return None
        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises pickle, zip and runtime errors alike
            raise ValueError(f"{self.path}: cannot read the training state to resume from ({err})") from err
        meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
        if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION:
            raise ValueError(f"{self.path}: not a training state of this pipeline (version {STATE_VERSION})")
        self._run_id = meta.get("mlflow_run_id")
        self._run_name = meta.get("mlflow_run_name")
        return checkpoint

    def run_name_or(self, prefix: str) -> str:
        """The MLflow run name to use: the resumed run's, else ``prefix`` and the current time."""
        if self.checkpoint is not None and self.run_name:
            return self.run_name
        return prefix + time.strftime("%Y%m%d_%H%M%S")
