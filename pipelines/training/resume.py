"""Resume an interrupted training: the full training state every epoch, the best model kept safe, the same MLflow run.

A training stage (``train.yaml``, ``train_classifier.yaml``) wires four pieces:

- :class:`TrainingState`: where the state lives (``<ckpt_dir>/train_state.pt``) and whether this run resumes
  from it (``resume: true``); the objects below share it.
- :class:`TrainingStateHandler` (on the trainer): at the end of every epoch, after validation, writes the
  network, optimizer, LR scheduler, trainer (epoch, iteration), AMP scaler, early-stopping counter, random
  generators and the MLflow run id to that file atomically; when resuming, loads them back when the trainer
  starts, so ignite goes on with the next epoch.
- :class:`BestCheckpointSaver` (on the validator): writes the best model (``model.pt``, a plain state dict as
  before) atomically when the key metric improves, and records its score in ``model.best.json`` *before* the
  model, so a resumed run never replaces the best model with a worse one, even after a kill between the two.
- :class:`ResumableRunHandler` (on trainer and validator): the first to start creates the MLflow run, or
  reopens the run named in the state when resuming; the others join it.

The state includes the random generators (:func:`capture_random_state`): Python's ``random``, NumPy's global
generator, torch's CPU and CUDA generators, the ``R`` of every MONAI ``Randomizable`` in the training dataset's
transforms, and the DataLoader's own generators, so a resumed run draws the same crops, flips and shuffling as an
uninterrupted one. What is not restored: the part of the epoch that was running when the process died (it is run
again).

:class:`TrainingState` is defined in :mod:`pipelines.training.training_state`, :class:`ResumableRunHandler` in
:mod:`pipelines.training.resumable_run`, the random generators are captured by :mod:`pipelines.training.random_state`
and batch digests written by :mod:`pipelines.training.batch_digests`; all are importable from here too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler

from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.training.random_state import capture_random_state, restore_random_state
from pipelines.training.training_state import STATE_VERSION, TrainingState
from pipelines.validation.path_safety import as_bool

# the state, random state, MLflow run and batch digest pieces are re-exported: bundle configs name them from here
__all__ = [
    "AtomicDiskSaver",
    "BestCheckpointSaver",
    "TrainingStateHandler",
]

logger = logging.getLogger(__name__)


def _save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and a rename: a kill never leaves half a file under ``path``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ---------------------------------------------------------------------------------------------------------------
# the best model
# ---------------------------------------------------------------------------------------------------------------
class AtomicDiskSaver(BaseSaveHandler):
    """ignite save handler writing each checkpoint atomically (temporary file, then rename).

    MONAI's ``CheckpointSaver`` writes in place (``DiskSaver(atomic=False)``) and deletes the old best model
    before writing the new one; a kill in between leaves no model or half of one.

    Args:
        dirname: folder of the checkpoints (created when missing).
        filename: a fixed file name (``model.pt``) instead of ignite's ``<prefix>_<name>_<score>.pt``; the
            previous file is then replaced by the rename, never deleted first.
        before_save: called with ignite's metadata (``priority``: the score) just before a file is written.
    """

    def __init__(
        self,
        dirname: str | os.PathLike,
        filename: str | None = None,
        before_save: Callable[[Mapping], None] | None = None,
    ) -> None:
        self.dirname = Path(dirname)
        self.filename = filename
        self.before_save = before_save

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if self.before_save is not None:
            self.before_save(metadata or {})
        _save_torch(checkpoint, self.dirname / (self.filename or filename))

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed name is replaced by the next save: never leave the folder without it
            (self.dirname / filename).unlink(missing_ok=True)


class BestCheckpointSaver:
    """Save ``save_dict`` when the validator's key metric improves, atomically, with a JSON record of the score.

    Used in place of MONAI's ``CheckpointSaver(save_key_metric=True, key_metric_filename=...)``: the file is the
    same (a plain state dict when ``save_dict`` holds one object), but it is written atomically, and the record
    ``<stem>.best.json`` (metric name, score, epoch) lets a resumed training restore the score to beat.

    The record is written *before* the model: a kill between the two leaves a record claiming a better score
    than the model file holds, so the resumed run may keep a slightly older model, but never replaces the best
    model by a worse one.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: objects to save, e.g. ``{"model": network}``.
        key_metric_filename: file name of the best model.
        key_metric_name: metric to compare; default: the engine's key metric (``engine.state.key_metric_name``).
        greater_or_equal: replace the model on an equal score too.
        key_metric_negative_sign: smaller is better (the score is negated).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        key_metric_filename: str = "model.pt",
        key_metric_name: str | None = None,
        greater_or_equal: bool = False,
        key_metric_negative_sign: bool = False,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.filename = key_metric_filename
        self.key_metric_name = key_metric_name
        self.sign = -1.0 if key_metric_negative_sign else 1.0
        self.record_path = self.save_dir / f"{Path(key_metric_filename).stem}.best.json"
        self._epoch: int | None = None
        self._metric: str | None = None
        self._record: dict | None = None
        self.checkpoint = Checkpoint(
            to_save=dict(save_dict),
            save_handler=AtomicDiskSaver(self.save_dir, key_metric_filename, before_save=self._write_record),
            score_function=self._score,
            score_name="key_metric",
            n_saved=1,
            greater_or_equal=greater_or_equal,
        )

    def attach(self, engine: Engine) -> None:
        """Compare (and maybe save) at the end of every validation."""
        if not engine.has_event_handler(self, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self._epoch = int(engine.state.epoch)
        self._metric = self.key_metric_name or getattr(engine.state, "key_metric_name", None)
        self.checkpoint(engine)

    def _score(self, engine: Engine) -> float:
        if not self._metric:
            raise ValueError("BestCheckpointSaver: the engine has no key metric; give key_metric_name")
        return self.sign * float(engine.state.metrics[self._metric])

    def _write_record(self, metadata: Mapping) -> None:
        record = {
            "file": self.filename,
            "metric": self._metric,
            "score": self.sign * float(metadata.get("priority", float("nan"))),
            "epoch": self._epoch,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_json_atomic(record, self.record_path)
        self._record = record

    @property
    def best(self) -> dict | None:
        """The record of the best model saved (or restored) by this saver: ``file``, ``metric``, ``score``,
        ``epoch``; None before the first save."""
        return None if self._record is None else dict(self._record)

    def read_record(self) -> dict | None:
        """The record beside the model file, or None when there is none or it cannot be read."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
            float(record["score"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record if (self.save_dir / self.filename).is_file() else None

    def restore(self) -> dict | None:
        """Take the score of the model on disk as the one to beat (for a resumed training); returns the record.

        Nothing is restored when the model file or its record is missing: the next validation then saves.
        """
        record = self.read_record()
        if record is None:
            logger.warning("no readable record of the best model in %s: the next validation saves one", self.save_dir)
            return None
        priority = self.sign * float(record["score"])
        self.checkpoint.load_state_dict({"_saved": [(priority, self.filename)]})
        self._record = record
        return dict(record)


# ---------------------------------------------------------------------------------------------------------------
# the training state handler
# ---------------------------------------------------------------------------------------------------------------


def _data_loader(engine: Engine) -> Any:
    """The data a trainer runs on: ignite's ``state.dataloader`` once running, else MONAI's ``data_loader``."""
    loader = getattr(engine.state, "dataloader", None)
    return loader if loader is not None else getattr(engine, "data_loader", None)


def _module_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


class TrainingStateHandler:
    """Save the whole training state after every epoch; restore it when the trainer starts, when resuming.

    Attach it to the trainer *after* ``ValidationHandler`` and ``LrScheduleHandler`` so the state of an epoch
    includes its validation and its LR step. The trainer's own state (epoch, iteration, AMP scaler) comes from
    the engine the handler is attached to: a config cannot reference the trainer from its own handler list.

    Args:
        state: the shared :class:`TrainingState`.
        save_dict: objects with ``state_dict``/``load_state_dict``: ``network``, ``optimizer``, ``lr_scheduler``.
        evaluator: the validator, whose best metric and its epoch are restored.
        best_saver: the validator's :class:`BestCheckpointSaver`, whose score to beat is restored.
        early_stop: MONAI's ``EarlyStopHandler``, whose patience counter and best score are saved and restored.
        save_interval: save every N epochs.
        random_state: save the random generators with the state and restore them (see :func:`capture_random_state`;
            the transforms are those of the trainer's DataLoader), so a resumed run draws the batches an
            uninterrupted one would.
    """

    def __init__(
        self,
        state: TrainingState,
        save_dict: Mapping[str, Any],
        evaluator: Engine | None = None,
        best_saver: BestCheckpointSaver | None = None,
        early_stop: Any = None,
        save_interval: int = 1,
        random_state: bool = True,
    ) -> None:
        reserved = sorted(set(save_dict) & {"trainer", "scaler", "early_stop", "random", "meta"})
        if reserved:
            raise ValueError(f"save_dict must not hold {reserved}: the handler saves them itself")
        self.state = state
        self.save_dict = dict(save_dict)
        self.evaluator = evaluator
        self.best_saver = best_saver
        self.early_stop = early_stop
        self.save_interval = int(save_interval)
        self.random_state = as_bool(random_state, "random_state")

    def attach(self, engine: Engine) -> None:
        """Check a state to resume from against this training now (before any run starts), and register the
        restore (``STARTED``) and save (``EPOCH_COMPLETED``, ``COMPLETED``) events."""
        if self.state.checkpoint is not None:
            self._check_compatible(engine)
            engine.add_event_handler(Events.STARTED, self.restore)
        else:
            engine.add_event_handler(Events.STARTED, self.start_new)
        engine.add_event_handler(Events.STARTED, self._remove_temporaries)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save, finished=True)

    # ---- saving -------------------------------------------------------------------------------------------
    def _early_stopping(self) -> Any:
        # MONAI's EarlyStopHandler creates ignite's EarlyStopping (which has state_dict) in set_trainer.
        return getattr(self.early_stop, "_handler", None)

    def state_dict(self, engine: Engine, finished: bool = False) -> dict:
        """Everything a resumed run needs, as plain tensors and Python values (loadable with weights_only)."""
        checkpoint = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        checkpoint["trainer"] = dict(engine.state_dict())
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            checkpoint["scaler"] = scaler.state_dict()
        early = self._early_stopping()
        if early is not None:
            checkpoint["early_stop"] = dict(early.state_dict())
        if self.random_state:
            checkpoint["random"] = capture_random_state(_data_loader(engine))
        checkpoint["meta"] = {
            "version": STATE_VERSION,
            "epoch": int(engine.state.epoch),
            "iteration": int(engine.state.iteration),
            "max_epochs": engine.state.max_epochs,
            "finished": bool(finished),
            "mlflow_run_id": self.state.run_id,
            "mlflow_run_name": self.state.run_name,
            "best": self.best_saver.best if self.best_saver is not None else None,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return checkpoint

    def save(self, engine: Engine, finished: bool = False) -> None:
        """Write the training state atomically."""
        _save_torch(self.state_dict(engine, finished), self.state.path)
        logger.info(
            "saved the training state of epoch %d to %s%s",
            engine.state.epoch,
            self.state.path,
            " (training finished)" if finished else "",
        )

    # ---- restoring ----------------------------------------------------------------------------------------
    def _check_compatible(self, engine: Engine) -> None:
        checkpoint = self.state.checkpoint
        missing = [name for name in (*self.save_dict, "trainer") if name not in checkpoint]
        if missing:
            raise ValueError(f"{self.state.path}: the training state lacks {missing}; cannot resume from it")
        for name, obj in self.save_dict.items():
            if isinstance(obj, torch.nn.Module):
                saved = {k: tuple(v.shape) for k, v in checkpoint[name].items()}
                if saved != _module_shapes(obj):
                    raise ValueError(
                        f"{self.state.path}: its {name!r} does not match this configuration's (another architecture "
                        "or number of classes?); cannot resume from it"
                    )
        epoch, max_epochs = self.state.meta.get("epoch", 0), engine.state.max_epochs
        if max_epochs is not None and epoch >= max_epochs:
            raise ValueError(
                f"{self.state.path}: the saved training reached epoch {epoch} of max_epochs {max_epochs}; "
                "nothing to resume (raise max_epochs to train longer, or run with resume=false)"
            )

    def restore(self, engine: Engine) -> None:
        """Load the saved state into the objects and the trainer (which then goes on with the next epoch)."""
        checkpoint, meta = self.state.checkpoint, self.state.meta
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint={k: checkpoint[k] for k in self.save_dict})
        saved_trainer = checkpoint["trainer"]
        epoch_length = engine.state.epoch_length or saved_trainer.get("epoch_length")
        if saved_trainer.get("epoch_length") not in (None, epoch_length):
            logger.warning(
                "the training data changed size (%s iterations per epoch, was %s): resuming at epoch %d all the same",
                epoch_length,
                saved_trainer.get("epoch_length"),
                meta["epoch"],
            )
        engine.load_state_dict(
            {"epoch": int(meta["epoch"]), "epoch_length": epoch_length, "max_epochs": engine.state.max_epochs}
        )
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        early = self._early_stopping()
        if early is not None and "early_stop" in checkpoint:
            early.load_state_dict(checkpoint["early_stop"])
        record = self.best_saver.restore() if self.best_saver is not None else meta.get("best")
        if record is not None and self.evaluator is not None:
            self.evaluator.state.best_metric = float(record["score"])
            self.evaluator.state.best_metric_epoch = int(record.get("epoch") or -1)
        if self.random_state:
            if "random" in checkpoint:
                restore_random_state(checkpoint["random"], _data_loader(engine), source=str(self.state.path))
            else:
                logger.warning(
                    "%s holds no random state (saved by an older version): the augmentation does not continue where "
                    "it stopped",
                    self.state.path,
                )
        logger.info(
            "resumed the training from %s at epoch %d of %s (best %s so far: %s)",
            self.state.path,
            meta["epoch"],
            engine.state.max_epochs,
            (record or {}).get("metric", "metric"),
            "none" if record is None else f"{float(record['score']):.4f} at epoch {record.get('epoch')}",
        )

    def _remove_temporaries(self, engine: Engine) -> None:
        """Remove the temporary files of saves that a kill interrupted (``atomic_write`` names them ``.<stem>-*``)."""
        path = self.state.path
        for leftover in path.parent.glob(f".{path.name.split('.')[0]}-*{''.join(path.suffixes)}"):
            logger.info("removing %s, left by an interrupted save", leftover)
            leftover.unlink(missing_ok=True)

    def start_new(self, engine: Engine) -> None:
        """A new training: drop the state an earlier training left, so a later resume never mixes the two."""
        if self.state.path.is_file():
            logger.info("new training: removing the training state %s of an earlier training", self.state.path)
            self.state.path.unlink(missing_ok=True)
