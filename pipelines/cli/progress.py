"""What ``radcascade demo`` shows while it runs and when it ends: one line per epoch (training) or case (evaluation,
inference) with the time elapsed and the time left, then a table of the stages with their time, their figures
and where their outputs are. Everything else the stages print or log goes to a log file (:func:`console_to_log`)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.runner import best_validation_metric

__all__ = ["StageProgress", "StageRow", "stage_row", "format_table", "console_to_log"]

# The engine whose progress a stage reports, and its unit: trainers by epoch, evaluators by case.
_ENGINES = (("train#trainer", "epoch"), ("validate#evaluator", "case"), ("evaluator", "case"))


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


class StageProgress:
    """Print ``[liver train] epoch 3/25  0:42 elapsed, ETA 5:08`` after each epoch of a stage's trainer, or each case
    of its evaluator (a stage that trains reports its epochs only).

    Args:
        label: what the line starts with (``liver train``).
        write: where lines go (``print`` to stdout, flushed).
    """

    def __init__(self, label: str, write: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.write = write or (lambda line: print(line, flush=True))
        self.start = time.perf_counter()

    def attach_to(self, workflow) -> None:
        """Attach to the first engine of ``workflow`` (an initialised ``ConfigWorkflow``) that it has."""
        from ignite.engine import Events

        for id_, unit in _ENGINES:
            if id_ in workflow.parser:
                engine = workflow.parser.get_parsed_content(id_)
                event = Events.EPOCH_COMPLETED if unit == "epoch" else Events.ITERATION_COMPLETED
                engine.add_event_handler(Events.STARTED, self._started)
                engine.add_event_handler(event, self._report, unit)
                return

    def _started(self, engine) -> None:
        self.start = time.perf_counter()

    def _report(self, engine, unit: str) -> None:
        state = engine.state
        done = state.epoch if unit == "epoch" else state.iteration - (state.epoch - 1) * (state.epoch_length or 0)
        total = state.max_epochs if unit == "epoch" else state.epoch_length
        elapsed = time.perf_counter() - self.start
        eta = f", ETA {_clock(elapsed / done * (total - done))}" if done and total else ""
        self.write(f"[{self.label}] {unit} {done}/{total}  {_clock(elapsed)} elapsed{eta}")


@contextlib.contextmanager
def console_to_log(path: str | Path) -> Iterator[Callable[[str], None]]:
    """Send what the stages print and log (library INFO lines, progress bars, warnings) to the file ``path``
    (appended), and yield a ``write(line)`` that still reaches the console, for the progress lines.

    The root logger, and MLflow's (which has its own console handler), write to the file at INFO for the duration;
    their handlers and levels are restored afterwards. Run the stages with ``logging_file=False`` so that the
    bundle's ``logging.conf`` leaves this set-up alone.
    """
    import mlflow  # noqa: F401  (configures its logger on import: before its handlers are swapped)

    console = sys.stdout

    def write(line: str) -> None:
        print(line, file=console, flush=True)

    loggers = [logging.getLogger(), logging.getLogger("mlflow")]
    saved = [(logger.handlers[:], logger.level) for logger in loggers]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        for logger in loggers:
            logger.handlers[:] = [handler]
            logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield write
        finally:
            for logger, (handlers, level) in zip(loggers, saved, strict=True):
                logger.handlers[:] = handlers
                logger.setLevel(level)


@dataclass(frozen=True)
class StageRow:
    """One row of the closing table: a stage, its time, its figures, where its outputs are."""

    stage: str
    seconds: float
    figures: str
    outputs: str


def _metrics_csv(path: Path) -> dict[str, float]:
    rows = (line.split(",", 1) for line in path.read_text().splitlines() if "," in line) if path.is_file() else ()
    return {name: float(value) for name, value in rows}


def stage_row(stage: str, seconds: float, workflow, output_dir: Path) -> StageRow:
    """The closing-table row of a finished stage, its figures read from what the stage wrote."""
    if stage in ("train", "train_classifier"):
        best = best_validation_metric(workflow)
        key = "Dice" if stage == "train" else "key metric"
        figures = f"best validation {key} {best:.3f}" if best is not None else "no validation ran"
        checkpoint = workflow.parser.get_parsed_content("ckpt_path" if stage == "train" else "classifier_ckpt_path")
        return StageRow(stage, seconds, figures, str(checkpoint))
    if stage == "evaluate":
        metrics = _metrics_csv(output_dir / "eval" / "metrics.csv")
        figures = ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in metrics.items() if k.endswith("_dice"))
        return StageRow(stage, seconds, figures or "no metrics written", str(output_dir / "eval" / "report.html"))
    if stage == "evaluate_classifier":
        path = output_dir / "eval_classifier" / "classification_metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        shown = [f"{k} {metrics[k]:.3f}" for k in ("accuracy", "recall", "f1", "roc_auc") if k in metrics]
        return StageRow(stage, seconds, ", ".join(shown) or "no metrics written", str(path.parent))
    from pipelines.inference.robust_inference import failed_cases

    predictions = output_dir / "predictions"
    # 3D bundles write <case>_seg.nii.gz; chest X-ray writes <name>_mask.png (or .nii.gz with mask_ext)
    written = len([p for p in predictions.glob("*") if p.name.endswith(("_seg.nii.gz", "_mask.png", "_mask.nii.gz"))])
    figures = f"{written} segmented, {len(failed_cases(workflow))} failed"
    return StageRow(stage, seconds, figures, str(predictions))


def format_table(rows: Sequence[StageRow]) -> str:
    """The rows as an aligned text table with a header."""
    cells = [("stage", "time", "figures", "outputs")]
    cells += [(row.stage, _clock(row.seconds), row.figures, row.outputs) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(3)]
    lines = ["  ".join(f"{value:{widths[i]}s}" if i < 3 else value for i, value in enumerate(line)) for line in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths) + "  -------", *lines[1:]])
