"""Command line: ``radcascade`` (or ``python -m pipelines``).

radcascade list                               # the workflows and their stages
radcascade prepare liver                      # write the embedded default data (seeded phantoms)
radcascade run liver train --set max_epochs=5 # run one bundle stage, with id overrides
radcascade demo liver                         # prepare, train, evaluate and segment a held-out volume

Exit status: 0 success; 2 bad input data (the problems are printed); 3 inference skipped at least one case
(listed in ``<output_dir>/predictions/failures.json``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from pipelines.checks import find_data_error
from pipelines.workflows import REPO_ROOT, STAGE_TYPES, STAGES, WORKFLOWS, get_workflow, prepare_default_data

__all__ = ["main", "parse_overrides", "run_stage", "run_demo", "EXIT_DATA_ERROR", "EXIT_CASES_FAILED"]

logger = logging.getLogger("radcascade")

# The demo's stages, in order; a workflow runs those it has.
DEMO_STAGES = ("train", "train_classifier", "evaluate", "evaluate_classifier", "inference")
EXIT_DATA_ERROR = 2  # bad input data, found before the work started
EXIT_CASES_FAILED = 3  # inference skipped at least one case


def parse_overrides(pairs: list[str] | None) -> dict:
    """Turn ``["max_epochs=3", "roi_size=[64,64,32]"]`` into ``{"max_epochs": 3, "roi_size": [64, 64, 32]}``.

    Values are read as YAML, so numbers, booleans and lists keep their types; ids may use ``#`` to reach into
    nested items, as in ``monai.bundle run``.

    Raises:
        ValueError: for an item without ``=``.
    """
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} is not of the form id=value")
        overrides[key] = yaml.safe_load(value)
    return overrides


def run_stage(name: str, stage: str, overrides: dict | None = None):
    """Run one stage of a workflow's bundle in this process, as ``python -m monai.bundle run`` would.

    The merged config, overrides included, is written to ``<output_dir>/configs/<stage>_<time>.json`` first
    and its path given to the config as ``executed_config``, so the MLflow run keeps exactly what ran.

    Returns:
        the finished ``ConfigWorkflow`` (its ``parser`` holds the run's objects, e.g. the inference failures).
    """
    from monai.bundle import ConfigWorkflow

    workflow_def = get_workflow(name)
    files = workflow_def.config_files(stage)
    configs = Path(files[0]).parent
    logger.info("running %s %s: %s", name, stage, files)
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=STAGE_TYPES[stage],
        **(overrides or {}),
    )
    executed = Path(workflow.parser.get_parsed_content("output_dir")) / "configs"
    executed = executed / f"{stage}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    executed.parent.mkdir(parents=True, exist_ok=True)
    workflow.parser.export_config_file(workflow.parser.get(), str(executed))
    workflow.parser["executed_config"] = str(executed)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


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
    timings = {}
    start = time.perf_counter()
    prepare_default_data(name)
    timings["prepare"] = time.perf_counter() - start
    for stage in DEMO_STAGES:
        if stage not in workflow.stages:
            continue
        t0 = time.perf_counter()
        run_stage(name, stage, common)
        timings[stage] = time.perf_counter() - t0
    from monai.bundle import ConfigParser

    from pipelines.tracking import default_tracking_uri

    parser = ConfigParser()
    parser.read_config(workflow.config_files(workflow.stages[0])[:1])
    parser.update(common)
    results = {
        "predictions": str(out / "predictions"),
        "metrics": str(out / "eval"),
        "checkpoint": str(parser.get_parsed_content("ckpt_path")),
        "mlflow_uri": default_tracking_uri(out),
    }
    summary = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    print(f"\n{name} demo finished in {time.perf_counter() - start:.0f} s ({summary})")
    metrics_csv = out / "eval" / "metrics.csv"
    if metrics_csv.is_file():
        for line in metrics_csv.read_text().splitlines():
            metric, _, value = line.partition(",")
            print(f"  {metric:14s}: {float(value):.4f}")
    print(f"  segmentations : {results['predictions']}")
    print(f"  metrics (CSV) : {results['metrics']}")
    print(f"  checkpoint    : {results['checkpoint']}")
    print(f"  MLflow runs   : mlflow ui --backend-store-uri {results['mlflow_uri']}  (then open http://127.0.0.1:5000)")
    return results


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``radcascade``."""
    parser = argparse.ArgumentParser(prog="radcascade", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the workflows and their stages")
    prep = sub.add_parser("prepare", help="write a workflow's embedded default data")
    prep.add_argument("workflow", choices=sorted(WORKFLOWS))
    prep.add_argument("--num-cases", type=int, default=None, help="default: the registry's (16 for liver)")
    prep.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("run", help="run one stage of a workflow's bundle")
    run.add_argument("workflow", choices=sorted(WORKFLOWS))
    run.add_argument("stage", choices=STAGES)
    run.add_argument("--set", dest="overrides", action="append", metavar="ID=VALUE", help="override a config id")
    demo = sub.add_parser("demo", help="prepare, train, evaluate and segment on the default data")
    demo.add_argument("workflow", choices=sorted(WORKFLOWS))
    demo.add_argument("--output-dir", default=None, help="default: runs/<workflow>")
    demo.add_argument("--set", dest="overrides", action="append", metavar="ID=VALUE", help="override a config id")
    return parser


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
    overrides = parse_overrides(args.overrides)
    try:
        if args.command == "run":
            from pipelines.robust_inference import failed_cases

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
