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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from monai.transforms import Randomizable, Transform

from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.training.tracking import TrackedRunHandler
from pipelines.validation.path_safety import as_bool

__all__ = [
    "STATE_VERSION",
    "AtomicDiskSaver",
    "BatchDigestRecorder",
    "BestCheckpointSaver",
    "TrainingState",
    "TrainingStateHandler",
    "ResumableRunHandler",
    "capture_random_state",
    "randomizable_transforms",
    "restore_random_state",
]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_RUNNING = RunStatus.to_string(RunStatus.RUNNING)


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
# the training state
# ---------------------------------------------------------------------------------------------------------------
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


def _data_loader(engine: Engine) -> Any:
    """The data a trainer runs on: ignite's ``state.dataloader`` once running, else MONAI's ``data_loader``."""
    loader = getattr(engine.state, "dataloader", None)
    return loader if loader is not None else getattr(engine, "data_loader", None)


def _module_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# the random generators
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------------------
class ResumableRunHandler(TrackedRunHandler):
    """``TrackedRunHandler`` whose run continues across a resume.

    All the handlers of one training share a :class:`TrainingState`: the first to start (the trainer's) creates
    the run, or reopens the run recorded in the saved state when resuming (status back to RUNNING, tag
    ``resumed_from_epoch``); the others (the validator's) join that run by its id. Parameters already logged are
    not logged again (MLflow refuses to change one; a changed value is reported in the log).

    Args:
        state: the training's :class:`TrainingState`; None behaves as ``TrackedRunHandler``.
        **kwargs: the arguments of ``MLFlowHandler``.
    """

    def __init__(self, state: TrainingState | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state

    def start(self, engine: Engine) -> None:
        """Create, reopen or join the run, then start as ``TrackedRunHandler`` does."""
        if self.cur_run is None and self.state is not None and self.state.run_id:
            self._set_experiment()
            self.cur_run = self._existing_run(self.state.run_id)
            if self.cur_run is not None:
                self._skip_logged_params()
        super().start(engine)
        if self.state is not None and self.cur_run is not None:
            self.state.run_id = self.cur_run.info.run_id
            self.state.run_name = self.cur_run.info.run_name

    def _existing_run(self, run_id: str):
        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            logger.warning("MLflow run %s of the saved training not found (%s): starting a new run", run_id, err)
            return None
        if run.info.experiment_id != self.experiment.experiment_id:
            logger.warning(
                "MLflow run %s belongs to another experiment than %r: starting a new run", run_id, self.experiment_name
            )
            return None
        if self.state.resuming and not self.state.run_reopened:
            self.state.run_reopened = True
            if run.info.status != _RUNNING:
                self.client.update_run(run_id, status=_RUNNING)
            self.client.set_tag(run_id, "resumed_from_epoch", str(self.state.meta.get("epoch")))
            logger.info("continuing MLflow run %s (%s)", run_id, run.info.run_name)
        return run

    def _skip_logged_params(self) -> None:
        if not self.experiment_param:
            return
        logged = self.cur_run.data.params
        changed = {k: (logged[k], str(v)) for k, v in self.experiment_param.items() if logged.get(k, str(v)) != str(v)}
        if changed:
            logger.warning(
                "parameters changed since the run started; MLflow keeps the first values: %s",
                ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items()),
            )
        self.experiment_param = {k: v for k, v in self.experiment_param.items() if k not in logged}
