"""Training curves of a segmenter's MLflow run (loss, Dice, learning rate) as one PNG.

The training bundles log ``train_loss`` and ``lr_group_<i>`` every iteration, and ``train_mean_dice``,
``val_mean_dice`` and ``val_<class>_dice`` every epoch (validation); iterations are shown in epochs using the
run's ``epoch_length`` parameter. ``train.yaml`` writes ``<output_dir>/training_curves.png`` when training
ends (:class:`TrainingCurvesHandler`); for any run, from the command line::

    python -m pipelines.reports.training_curves --tracking-uri sqlite:///runs/liver/mlflow.db \\
        --experiment liver_ct_segmentation [--run-id <id>] --output curves.png
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote

import mlflow
from ignite.engine import Engine, Events
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipelines.io.atomic import atomic_write
from pipelines.training.distributed import get_rank

__all__ = [
    "LOSS_METRIC",
    "find_training_run",
    "read_curves",
    "plot_training_curves",
    "save_training_curves",
    "TrainingCurvesHandler",
    "main",
]

logger = logging.getLogger(__name__)

LOSS_METRIC = "train_loss"
LR_PREFIX = "lr_group_"
DICE_SUFFIX = "_dice"

Curve = list[tuple[float, float]]


def find_training_run(client: mlflow.MlflowClient, experiment_name: str, run_id: str | None = None) -> Run:
    """The run ``run_id`` of the experiment, or by default its latest run that logged ``train_loss``.

    The latest run that logged a loss, not the latest run: evaluation runs share the experiment.

    Raises:
        ValueError: naming the tracking URI and the experiment, when the experiment or the run does not exist.
    """
    where = f"experiment {experiment_name!r} at {client.tracking_uri}"
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"no MLflow {where}")
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            raise ValueError(f"no MLflow run {run_id!r} in {where}") from err
        if run.info.experiment_id != experiment.experiment_id:
            raise ValueError(f"MLflow run {run_id!r} is not in {where}")
        return run
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=200)
    for run in runs:
        if LOSS_METRIC in run.data.metrics:
            return run
    raise ValueError(f"no MLflow run with a {LOSS_METRIC!r} metric in {where} (has a training been run?)")


def _check_sqlite_exists(tracking_uri: str) -> None:
    """MLflow creates a missing SQLite database on first use: refuse a URI whose file is not there."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = unquote(tracking_uri[len("sqlite:///") :].split("?", 1)[0])
    if path and path != ":memory:" and not Path(path).is_file():
        raise ValueError(f"no MLflow database at {path} (tracking URI {tracking_uri})")


def _is_curve(name: str) -> bool:
    return name == LOSS_METRIC or name.startswith(LR_PREFIX) or name.endswith(DICE_SUFFIX)


def read_curves(client: mlflow.MlflowClient, run: Run) -> dict[str, Curve]:
    """The run's loss, Dice and learning-rate histories as ``{name: [(epoch, value), ...]}``.

    Iteration-level metrics (loss, learning rate) are put on the epoch axis with the run's ``epoch_length``
    parameter (iteration ``i`` is at epoch ``i / epoch_length``); without it they stay in iterations.
    """
    try:
        epoch_length = float(run.data.params.get("epoch_length") or 0)
    except ValueError:
        epoch_length = 0.0
    curves = {}
    for name in sorted(n for n in run.data.metrics if _is_curve(n)):
        history = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, name))
        per_iteration = name == LOSS_METRIC or name.startswith(LR_PREFIX)
        scale = 1.0 / epoch_length if per_iteration and epoch_length > 0 else 1.0
        curves[name] = [(step * scale, value) for step, _, value in history]
    return curves


def _epoch_means(curve: Curve) -> Curve:
    """Mean of the values of each epoch ``(e - 1, e]``, at ``e``."""
    sums: dict[int, list[float]] = {}
    for step, value in curve:
        sums.setdefault(math.ceil(step), []).append(value)
    return [(epoch, sum(v) / len(v)) for epoch, v in sorted(sums.items())]


def plot_training_curves(curves: Mapping[str, Curve], path: str | os.PathLike, title: str = "") -> Path:
    """Write a PNG of three panels, loss, Dice (training and validation) and learning rate, against the epoch.

    Panels without a curve say so. The PNG (12 x 3.8 inches at 100 dpi) is written atomically.
    """
    fig = Figure(figsize=(12, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = (
        ("loss", [n for n in curves if n == LOSS_METRIC], False),
        ("Dice", [n for n in curves if n.endswith(DICE_SUFFIX)], False),
        ("learning rate", [n for n in curves if n.startswith(LR_PREFIX)], True),
    )
    for ax, (label, names, log_scale) in zip(axes, panels, strict=True):
        for name in names:
            steps, values = zip(*curves[name], strict=True) if curves[name] else ((), ())
            style = "-" if len(steps) > 1 else "o"
            if name == LOSS_METRIC and len(_epoch_means(curves[name])) < len(steps):
                ax.plot(steps, values, style, label=name, linewidth=0.8, alpha=0.4)
                ax.plot(*zip(*_epoch_means(curves[name]), strict=True), "o-", label="epoch mean", markersize=3)
                continue
            width = 2.0 if name == "val_mean_dice" else 1.0
            ax.plot(steps, values, style, label=name, linewidth=width, markersize=4)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if not names:
            ax.text(0.5, 0.5, f"no {label} logged", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        if log_scale and all(v > 0 for n in names for _, v in curves[n]):
            ax.set_yscale("log")
        if len(ax.get_lines()) > 1 or label == "Dice":
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def save_training_curves(
    tracking_uri: str,
    experiment_name: str,
    output: str | os.PathLike,
    run_id: str | None = None,
    log_artifact: bool = False,
) -> Path:
    """Plot a training run's curves (see :func:`read_curves`) into ``output``; optionally log it to the run.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///runs/liver/mlflow.db``).
        experiment_name: the training's experiment.
        output: the PNG to write.
        run_id: the run; default: the experiment's latest run with a training loss.
        log_artifact: also log the PNG as an artifact of the run.

    Raises:
        ValueError: when the experiment or run is not found (see :func:`find_training_run`).
    """
    _check_sqlite_exists(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run = find_training_run(client, experiment_name, run_id)
    curves = read_curves(client, run)
    path = plot_training_curves(curves, output, title=f"{experiment_name}: {run.info.run_name} ({run.info.run_id})")
    if log_artifact:
        client.log_artifact(run.info.run_id, str(path))
    logger.info("training curves of MLflow run %s written to %s", run.info.run_id, path)
    return path


class TrainingCurvesHandler:
    """Trainer handler writing ``output_path`` from the training's MLflow run when training completes.

    Attach it before the run handler whose ``artifacts`` list ``output_path``: the PNG then exists when the
    artifacts are logged. Only rank 0 plots (distributed training). A failure is logged, never raised (the
    training itself has finished), and an older PNG at ``output_path`` is removed.

    Args:
        output_path: the PNG to write.
        tracking_uri: MLflow tracking URI of the training.
        experiment_name: its experiment.
        state: the training's :class:`pipelines.training.training_state.TrainingState`, whose ``run_id`` names the run
            (default: the experiment's latest training run).
    """

    def __init__(
        self, output_path: str | os.PathLike, tracking_uri: str, experiment_name: str, state: object | None = None
    ) -> None:
        self.output_path = Path(output_path)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.state = state

    def attach(self, engine: Engine) -> None:
        """Plot when the trainer completes (early stopping included)."""
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> Path | None:
        if get_rank() != 0:
            return None
        run_id = getattr(self.state, "run_id", None)
        try:
            return save_training_curves(self.tracking_uri, self.experiment_name, self.output_path, run_id)
        except (ValueError, MlflowException, OSError) as err:
            logger.warning("training curves not written to %s: %s", self.output_path, err)
            self.output_path.unlink(missing_ok=True)  # an earlier training's curves must not be logged with this run
            return None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: plot a training run's curves into a PNG."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.reports.training_curves", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--tracking-uri", required=True, help="MLflow tracking URI, e.g. sqlite:///runs/liver/mlflow.db"
    )
    parser.add_argument("--experiment", required=True, help="experiment name, e.g. liver_ct_segmentation")
    parser.add_argument("--run-id", default=None, help="run to plot (default: the latest training run)")
    parser.add_argument("--output", default="training_curves.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--log-artifact", action="store_true", help="also log the PNG to the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = save_training_curves(args.tracking_uri, args.experiment, args.output, args.run_id, args.log_artifact)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
