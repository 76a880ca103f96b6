"""Run one stage of a workflow's bundle in this process, as ``python -m monai.bundle run`` would: the one stage
runner of the command line (``radcascade run``, ``radcascade demo``) and the MONAI Label app's trainers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pipelines.workflows import STAGE_TYPES, get_workflow

__all__ = ["run_stage", "best_validation_metric"]

logger = logging.getLogger(__name__)


def run_stage(
    name: str,
    stage: str,
    overrides: Mapping | None = None,
    *,
    logging_file: str | bool | None = None,
    executed_prefix: str = "",
    after_initialize: Callable | None = None,
):
    """Run ``stage`` of workflow ``name`` from its stage file (``bundles/<bundle>/configs/<stage>.yaml``).

    The merged config, overrides included, is written to ``<output_dir>/configs/<prefix><stage>_<time>.json``
    first and its path given to the config as ``executed_config``, so the MLflow run keeps exactly what ran.

    Args:
        name: workflow name in the registry (``liver``).
        stage: one of the workflow's stages.
        overrides: config ids to set, as ``--id value`` on ``monai.bundle run``.
        logging_file: the bundle's ``logging.conf`` when None; False leaves the caller's logging alone.
        executed_prefix: prefix of the executed config's file name (``monailabel_``).
        after_initialize: ``f(workflow)`` called after ``initialize`` and before ``run`` (fine-tuning weights,
            progress handlers).

    Returns:
        the finished ``ConfigWorkflow`` (its ``parser`` holds the run's objects, e.g. the inference failures).
    """
    from monai.bundle import ConfigWorkflow

    workflow_def = get_workflow(name)
    files = workflow_def.config_files(stage)
    configs = Path(files[0]).parent
    logger.info("running %s %s: %s", name, stage, files[0])
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf") if logging_file is None else logging_file,
        workflow_type=STAGE_TYPES.get(stage, "train"),
        **dict(overrides or {}),
    )
    executed = Path(workflow.parser.get_parsed_content("output_dir")) / "configs"
    executed = executed / f"{executed_prefix}{stage}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    executed.parent.mkdir(parents=True, exist_ok=True)
    workflow.parser.export_config_file(workflow.parser.get(), str(executed))
    workflow.parser["executed_config"] = str(executed)
    workflow.initialize()
    if after_initialize is not None:
        after_initialize(workflow)
    workflow.run()
    workflow.finalize()
    return workflow


def best_validation_metric(workflow) -> float | None:
    """The validation evaluator's best key metric after a training stage (None when it never validated)."""
    if "validate#evaluator" not in workflow.parser:
        return None
    value = workflow.parser.get_parsed_content("validate#evaluator").state.best_metric
    return None if value is None or value == -1 else float(value)
