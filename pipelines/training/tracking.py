"""MLflow tracking for the bundles: a local SQLite store by default, and runs that never stay RUNNING."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler
from monai.utils import path_to_sqlite_uri

__all__ = ["default_tracking_uri", "TrackedRunHandler", "EXPERIMENT_KIND_TAG", "EXPERIMENT_KIND"]

logger = logging.getLogger(__name__)

# MLflow 3 phones home unless told not to; nothing leaves the machine from our runs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


# MLflow 3 opens an experiment on the view its kind names; without the tag, on the GenAI "Overview" page instead of
# the runs table with the training curves.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def default_tracking_uri(output_dir: str | os.PathLike) -> str:
    """Tracking URI for a bundle run: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<output_dir>/mlflow.db``.

    MLflow 3 refuses the plain file store (``./mlruns``), so the local default is an SQLite database; the run
    artifacts go beside it, under ``<output_dir>/mlruns``.
    """
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        return env_uri
    db = Path(output_dir).resolve() / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return path_to_sqlite_uri(db)


class TrackedRunHandler(MLFlowHandler):
    """``MLFlowHandler`` that also ends its run as FAILED when the engine raises, then re-raises.

    MONAI's handler closes the run only on ``COMPLETED``, so a crash would leave it RUNNING forever (and a later
    handler without a run name would even resume it). Attach this handler before ``StatsHandler``: ignite calls
    the ``EXCEPTION_RAISED`` handlers in order and the first to re-raise ends the chain.

    Args:
        model_registration: a :class:`pipelines.training.model_registry.ModelRegistration` to run when the run
            completes (the inference stage registers its segmenter); a failure there is logged, not raised: the
            stage's outputs are written by then.
        **kwargs: ``MLFlowHandler``'s arguments.
    """

    def __init__(self, *args, model_registration=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_registration = model_registration

    def attach(self, engine: Engine) -> None:
        """Attach MONAI's MLflow events plus the failure event."""
        super().attach(engine)
        if not engine.has_event_handler(self.fail, Events.EXCEPTION_RAISED):
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.fail)

    def start(self, engine: Engine) -> None:
        """Start or join the run; leave per-iteration and per-epoch logging to another ``MLFlowHandler`` if the
        engine has one (``monai.bundle run --tracking mlflow`` adds MONAI's own), so nothing is logged twice."""
        others = [
            owner
            for handler, *_ in engine._event_handlers.get(Events.STARTED, [])
            if isinstance(owner := getattr(handler, "__self__", None), MLFlowHandler) and owner is not self
        ]
        if others:
            for method, event in (
                (self.iteration_completed, Events.ITERATION_COMPLETED),
                (self.epoch_completed, Events.EPOCH_COMPLETED),
            ):
                if engine.has_event_handler(method, event):
                    engine.remove_event_handler(method, event)
            logger.info(
                "another MLflow handler is attached: %s logs parameters, artifacts and failures only",
                type(self).__name__,
            )
        super().start(engine)

    def _set_experiment(self) -> None:
        """Get or create the experiment (MONAI's), and mark it as model development, as the experiments this
        project created before the tag get it on their next run."""
        super()._set_experiment()
        if self.experiment is not None and self.experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self.client.set_experiment_tag(self.experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def complete(self) -> None:
        """Log the artifacts: files at the top of the run, each folder under its own name (``configs/``, ``eval/``).

        Paths that do not exist (an optional artifact that was not written) are skipped.
        """
        if not self.cur_run:
            return
        for path in self.artifacts:
            if not path:
                continue
            if os.path.isfile(path):
                self.client.log_artifact(self.cur_run.info.run_id, str(path))
            elif os.path.isdir(path):
                self.client.log_artifacts(self.cur_run.info.run_id, str(path), artifact_path=Path(path).name)
        if self.model_registration is not None:
            try:
                self.model_registration.log(self.client, self.cur_run.info.run_id)
            except Exception as error:  # the predictions are written: a registry problem must not fail the stage
                logger.warning("the model was not registered in MLflow: %s", error)
                self.client.set_tag(self.cur_run.info.run_id, "model_registration_error", str(error)[:500])

    def fail(self, engine: Engine, error: BaseException) -> None:
        """Mark the current run FAILED, release the store, and re-raise ``error``."""
        try:
            if self.cur_run is not None:
                self.client.set_terminated(self.cur_run.info.run_id, "FAILED")
                logger.error("MLflow run %s marked FAILED: %s", self.cur_run.info.run_id, error)
                self.cur_run = None
            self._dispose_sqlite_store()
        finally:
            raise error
