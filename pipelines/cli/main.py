"""Command line: ``radcascade`` (or ``python -m pipelines``).

radcascade list                               # the workflows and their stages
radcascade prepare liver                      # write the embedded default data (seeded phantoms)
radcascade prepare-real --from DIR            # check fetched real public cases, write evaluation datalists
radcascade run liver train --set max_epochs=5 # run one bundle stage, with id overrides
radcascade demo liver                         # prepare, train, evaluate and segment a held-out volume
radcascade validate liver [PATH ...]          # check the configured datalist (or PATHs): every problem at once

Exit status: 0 success; 2 bad input data or a bad ``--set`` override (the problems are printed); 3 inference
skipped at least one case (listed in ``<output_dir>/predictions/failures.json``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from pipelines.cli.config_checks import check_overrides, load_stage_config, validate_workflow
from pipelines.cli.progress import StageProgress, StageRow, console_to_log, format_table, stage_row
from pipelines.runner import run_stage
from pipelines.validation.errors import find_data_error
from pipelines.workflows import REPO_ROOT, STAGES, WORKFLOWS, get_workflow, prepare_default_data

__all__ = [
    "main",
    "parse_overrides",
    "checked_overrides",
    "run_demo",
    "EXIT_DATA_ERROR",
    "EXIT_CASES_FAILED",
]

logger = logging.getLogger("radcascade")

# The demo's stages, in order; a workflow runs those it has.
DEMO_STAGES = ("train", "train_classifier", "evaluate", "evaluate_classifier", "inference")
EXIT_DATA_ERROR = 2  # bad input data (or a bad --set override), found before the work started
EXIT_CASES_FAILED = 3  # inference skipped at least one case
# MLflow 3.17's UI shows the runs tables and metric charts in its "Model training" mode, which this query selects
MLFLOW_UI_URL = "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"


def parse_overrides(pairs: list[str] | None) -> dict:
    """Turn ``["max_epochs=3", "roi_size=[64,64,32]"]`` into ``{"max_epochs": 3, "roi_size": [64, 64, 32]}``.

    Values are read as YAML, so numbers, booleans and lists keep their types; ids may use ``#`` to reach into
    nested items, as in ``monai.bundle run``.

    Raises:
        ValueError: for an item without ``=``, or whose value is not valid YAML.
    """
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} is not of the form id=value")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            reason = " ".join(str(getattr(error, "problem", None) or error).split())
            raise ValueError(f"{key}={value}: the value is not valid YAML ({reason})") from None
    return overrides


def checked_overrides(name: str, stages: list[str], pairs: list[str] | None, new_pairs: list[str] | None) -> dict:
    """The ``--set`` overrides and ``--set-new`` ids of a command that runs ``stages`` of workflow ``name``.

    An id must be defined by the config of one of ``stages``, or of another stage of the workflow (the same
    overrides may serve every stage; those are logged as unused), and its value must fit the id's default.

    Raises:
        ValueError: for a malformed item, an id no stage defines, or a value that does not fit the id's default
            (:func:`pipelines.cli.config_checks.check_overrides`).
    """
    overrides, new_ids = parse_overrides(pairs), parse_overrides(new_pairs)
    if not overrides:
        return new_ids
    others = [stage for stage in get_workflow(name).stages if stage not in stages]
    return check_overrides(
        [load_stage_config(name, stage) for stage in stages],
        overrides,
        new_ids,
        where=f"the {name} {'/'.join(stages)} config",
        elsewhere=[load_stage_config(name, stage) for stage in others],
    )


def run_demo(name: str, overrides: dict | None = None, output_dir: str | None = None) -> dict[str, str]:
    """The main job on the default data: prepare, train the segmenter and the slice classifier, evaluate both, and
    segment the held-out volumes with the cascade.

    Returns:
        where the results are: ``predictions``, ``metrics``, ``mlflow_uri``, ``checkpoint``.
    """
    workflow = get_workflow(name)
    out = Path(output_dir or f"runs/{name}").resolve()
    common = {
        "output_dir": str(out),
        "dataset_dir": str(REPO_ROOT / workflow.default_data),
        "data_list_file_path": str(REPO_ROOT / workflow.default_datalist),
        **workflow.demo_overrides,
        **(overrides or {}),
    }
    start = time.perf_counter()
    log_path = out / "demo.log"
    print(f"{name} demo: the stages' full log goes to {log_path}", flush=True)
    with console_to_log(log_path) as write:
        prepare_default_data(name)
        data = str(REPO_ROOT / workflow.default_data)
        rows = [StageRow("prepare", time.perf_counter() - start, "default data ready", data)]
        for stage in DEMO_STAGES:
            if stage not in workflow.stages:
                continue
            t0 = time.perf_counter()
            progress = StageProgress(f"{name} {stage}", write=write)
            try:
                finished = run_stage(name, stage, common, logging_file=False, after_initialize=progress.attach_to)
            except Exception:
                write(f"[{name} {stage}] failed; the stages' full log: {log_path}")
                raise
            rows.append(stage_row(stage, time.perf_counter() - t0, finished, out))
    from monai.bundle import ConfigParser

    from pipelines.training.tracking import default_tracking_uri

    parser = ConfigParser()
    parser.read_config(workflow.config_files(workflow.stages[0])[:1])
    parser.update(common)
    results = {
        "predictions": str(out / "predictions"),
        "metrics": str(out / "eval"),
        "checkpoint": str(parser.get_parsed_content("ckpt_path")),
        "mlflow_uri": default_tracking_uri(out),
    }
    print(f"\n{name} demo finished in {time.perf_counter() - start:.0f} s\n")
    print(format_table(rows))
    print(f"\nFull log: {log_path}")
    print(f"MLflow runs: mlflow ui --backend-store-uri {results['mlflow_uri']}")
    print(f"             then open {MLFLOW_UI_URL}")
    return results


def _stages(args) -> list[str]:
    """The stages whose configs a command's overrides go to (validate reads the first stage's config)."""
    stages = get_workflow(args.workflow).stages
    if args.command == "run":
        return [args.stage]
    if args.command == "demo":
        return [stage for stage in DEMO_STAGES if stage in stages]
    return [stages[0]]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``radcascade``."""
    parser = argparse.ArgumentParser(prog="radcascade", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the workflows and their stages")
    prep = sub.add_parser("prepare", help="write a workflow's embedded default data")
    prep.add_argument("workflow", choices=sorted(WORKFLOWS))
    prep.add_argument("--num-cases", type=int, default=None, help="default: the registry's (16 for liver)")
    prep.add_argument("--seed", type=int, default=0)
    real = sub.add_parser("prepare-real", help="check real public cases (data_manifests/real_public.json)")
    from data_manifests.real_public import add_arguments

    add_arguments(real)
    run = sub.add_parser("run", help="run one stage of a workflow's bundle")
    run.add_argument("workflow", choices=sorted(WORKFLOWS))
    run.add_argument("stage", choices=STAGES)
    _add_override_options(run)
    demo = sub.add_parser("demo", help="prepare, train, evaluate and segment on the default data")
    demo.add_argument("workflow", choices=sorted(WORKFLOWS))
    demo.add_argument("--output-dir", default=None, help="default: runs/<workflow>")
    _add_override_options(demo)
    check = sub.add_parser("validate", help="check a workflow's data (or PATHs) and report every problem at once")
    check.add_argument("workflow", choices=sorted(WORKFLOWS))
    check.add_argument("paths", nargs="*", metavar="PATH", help="datalists, images, DICOM series folders")
    check.add_argument("--base-dir", default=None, help="folder datalist paths start from (default: dataset_dir)")
    check.add_argument("--headers-only", action="store_true", help="skip reading voxel data (faster)")
    _add_override_options(check)
    return parser


def _add_override_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set", dest="overrides", action="append", metavar="ID=VALUE", help="override a config id (checked)"
    )
    command.add_argument(
        "--set-new", dest="new_ids", action="append", metavar="ID=VALUE", help="add an id the config lacks"
    )


def _validate(args, overrides: dict) -> int:
    """``radcascade validate``: print every problem and a summary line; 2 when there are problems."""
    problems, summary = validate_workflow(
        args.workflow, args.paths, overrides, base_dir=args.base_dir, check_intensity=not args.headers_only
    )
    for problem in problems:
        print(problem)
    print(summary)
    return EXIT_DATA_ERROR if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``radcascade`` command."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for wf in WORKFLOWS.values():
            print(f"{wf.name:12s} {wf.modality:4s} {', '.join(wf.stages):28s} {wf.description}")
        return 0
    if args.command == "prepare":
        print(prepare_default_data(args.workflow, num_cases=args.num_cases, seed=args.seed))
        return 0
    if args.command == "prepare-real":
        from data_manifests.real_public import run

        return run(args)
    try:
        overrides = checked_overrides(args.workflow, _stages(args), args.overrides, args.new_ids)
    except ValueError as error:  # a malformed or unknown --set, a wrong type
        print(f"radcascade: {error}", file=sys.stderr)
        return EXIT_DATA_ERROR
    if args.command == "validate":
        return _validate(args, overrides)
    try:
        if args.command == "run":
            from pipelines.inference.robust_inference import failed_cases

            failed = failed_cases(run_stage(args.workflow, args.stage, overrides))
            if failed:
                files = ", ".join(failure["file"] for failure in failed[:3]) + (", ..." if len(failed) > 3 else "")
                print(f"radcascade: {len(failed)} case(s) could not be segmented: {files}", file=sys.stderr)
                return EXIT_CASES_FAILED
        else:
            run_demo(args.workflow, overrides, args.output_dir)
    except Exception as error:
        data_error = find_data_error(error)
        if data_error is None:
            raise
        print(f"radcascade: {data_error}", file=sys.stderr)
        return EXIT_DATA_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
