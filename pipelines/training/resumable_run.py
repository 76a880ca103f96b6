"""The MLflow run of a resumable training: created by the first handler to start, reopened when resuming."""

from __future__ import annotations

import logging

from ignite.engine import Engine
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from pipelines.training.tracking import TrackedRunHandler
from pipelines.training.training_state import TrainingState

__all__ = ["ResumableRunHandler"]

logger = logging.getLogger(__name__)


_RUNNING = RunStatus.to_string(RunStatus.RUNNING)


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
