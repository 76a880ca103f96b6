"""Checks that every stage config runs first, so that a bad command line gets one clear line, not a traceback.

``python -m monai.bundle run --config_file bundles/liver/inference.yaml --input_path scan.nii.gz`` is MONAI's own
process: the project cannot wrap it. Each stage's ``initialize`` therefore starts with :func:`check_stage`, which

* under ``python -m monai.bundle run``, checks the ``--id value`` overrides against the stage file (an unknown id
  gets "did you mean ...", a value of the wrong type is named) and makes the project's input errors
  (:class:`pipelines.validation.errors.DataError`, :class:`pipelines.cli.config_checks.ConfigOverrideError`),
  raised there or later, print as their own lines instead of a traceback from inside ``monai.bundle``;
* checks that the weights a stage reads exist (a bundle folder without ``models/model.pt``) and that the input
  path of an inference exists, naming the file and what to do;
* stops a GPU preset (``train_gpu.yaml``) on a machine without a CUDA GPU (:class:`MissingGPUError`), instead of
  letting it cache every volume in host memory and train for days.

In-process runs (``radcascade run``, the MONAI Label app, tests) get the same errors as exceptions.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MissingGPUError", "check_stage", "command_line_overrides", "under_bundle_run"]

logger = logging.getLogger(__name__)

# ``monai.bundle run`` arguments that are not config ids
RUN_ARGUMENTS = frozenset(
    {
        "config_file",
        "meta_file",
        "logging_file",
        "tracking",
        "args_file",
        "run_id",
        "init_id",
        "final_id",
        "workflow_type",
        "workflow_name",
        "properties_path",
    }
)
# the stage that writes each weights id
WEIGHT_STAGES = {"ckpt_path": "train", "classifier_ckpt_path": "train_classifier"}


class MissingGPUError(RuntimeError):
    """A stage that trains on a CUDA GPU was started where none is visible."""


def under_bundle_run(argv: Sequence[str] | None = None) -> bool:
    """True in a ``python -m monai.bundle run ...`` process."""
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and Path(argv[0]).parts[-2:] == ("bundle", "__main__.py") and argv[1] == "run"


def command_line_overrides(argv: Sequence[str]) -> tuple[list[str], dict]:
    """``(config files, {id: value})`` from a ``monai.bundle run`` command line; values read as YAML, as fire does."""
    import yaml

    files: list[str] = []
    overrides: dict = {}
    args = list(argv[2:])
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            value = args.pop(0) if args and not args[0].startswith("--") else "true"
        if key == "config_file":
            text = value.strip()
            files = ast.literal_eval(text) if text.startswith(("[", "(")) else text.split(",")
        elif key not in RUN_ARGUMENTS:
            try:
                overrides[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                overrides[key] = value
    return [str(f) for f in files], overrides


def _print_input_errors() -> None:
    """Make the project's input errors print as their own lines, without a traceback (this process only)."""
    from pipelines.cli.config_checks import ConfigOverrideError
    from pipelines.validation.errors import DataError

    previous = sys.excepthook

    def hook(kind, error, traceback):
        cause, seen = error, set()
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, (DataError, ConfigOverrideError, MissingGPUError)):
                print(f"monai.bundle run: {cause}", file=sys.stderr)
                return
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        previous(kind, error, traceback)

    sys.excepthook = hook


def _check_command_line(argv: Sequence[str], workflow: str) -> None:
    """Check the overrides of a ``monai.bundle run`` command line against its config files; ids that only the
    workflow's other stages define are accepted with a warning (one set of overrides may serve every stage)."""
    from monai.bundle import ConfigParser

    from pipelines.cli.config_checks import ConfigOverrideError, check_overrides
    from pipelines.workflows import get_workflow

    files, overrides = command_line_overrides(argv)
    if not overrides or not files:
        return
    if os.environ.get("RADCASCADE_ALLOW_NEW_IDS", "").strip().lower() in ("1", "true", "yes"):
        return
    parser = ConfigParser()
    parser.read_config(files)
    definition = get_workflow(workflow)
    others = []
    for other in definition.composed_stages:
        other_parser = ConfigParser()
        other_parser.read_config(definition.config_files(other))
        others.append(other_parser)
    try:
        check_overrides([parser], overrides, where=", ".join(files), elsewhere=others)
    except ConfigOverrideError as error:  # its hint names radcascade's --set-new; this command has no such option
        hint = re.compile(r"\(use --set-new (\S+)=\.\.\. to add an id on purpose\)")
        raise ConfigOverrideError(
            [hint.sub(r"(RADCASCADE_ALLOW_NEW_IDS=1 lets --\1 add an id on purpose)", p) for p in error.problems]
        ) from None


def _check_gpu(required: Any, stage: str) -> None:
    from pipelines.validation.path_safety import as_bool

    if not as_bool(required, "require_gpu"):
        return
    import torch

    if not torch.cuda.is_available():
        raise MissingGPUError(
            f"{stage}.yaml trains on a CUDA GPU and this process sees none (torch.cuda.is_available() is False); "
            "train on the CPU with train.yaml, or pass --require_gpu false to run this preset anyway"
        )


def check_stage(
    workflow: str,
    stage: str,
    weights: Mapping[str, str | os.PathLike | None] | None = None,
    inputs: Sequence[str | os.PathLike] = (),
    require_gpu: Any = False,
) -> None:
    """Check a stage before it starts (the first step of every stage's ``initialize``).

    Args:
        workflow: the workflow's name in the registry (``liver``).
        stage: the stage's name, for messages.
        weights: ``{config id: checkpoint file}`` that the stage loads (``ckpt_path``, ``classifier_ckpt_path``);
            None for one it does not need this time.
        inputs: files or folders the stage reads (an inference's ``input_path``).
        require_gpu: the stage's ``require_gpu`` id: stop unless a CUDA GPU is visible (``true``/``false``, or their
            strings from a command line).

    Raises:
        ConfigOverrideError: an override on the ``monai.bundle run`` command line names no id of the stage file, or
            its value does not fit the id's default.
        DataError: a weights file or an input path does not exist.
        MissingGPUError: ``require_gpu`` is set and ``torch.cuda.is_available()`` is false.
    """
    from pipelines.workflows import REPO_ROOT, get_workflow

    if under_bundle_run():
        _print_input_errors()
        _check_command_line(sys.argv, workflow)
    _check_gpu(require_gpu, stage)
    problems = []
    for id_, path in (weights or {}).items():
        if path is not None and not Path(path).is_file():
            definition = get_workflow(workflow)
            config = Path(definition.config_files(WEIGHT_STAGES.get(id_, "train"))[0]).relative_to(REPO_ROOT)
            config = config.parent.parent / config.name  # the link at the bundle's root, as the README shows it
            problems.append(
                f"{path}: no trained weights ({id_}) for the {workflow} {stage} stage; train them with "
                f"python -m monai.bundle run --config_file {config.as_posix()}, or pass --{id_} FILE"
            )
    for path in inputs:
        if not Path(path).exists():
            problems.append(
                f"{path}: no such file or folder (--input_path takes an image, a DICOM series folder, a folder "
                "of them, or a datalist)"
            )
    if problems:
        from pipelines.validation.errors import DataError

        raise DataError(problems)
