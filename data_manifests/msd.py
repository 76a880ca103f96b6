"""Build a MONAI datalist (training / validation / test) from a Medical Segmentation Decathlon task folder.

Works for any MSD task (``TaskNN_Name/`` with ``imagesTr/``, ``labelsTr/`` and ``dataset.json``), e.g.
Task03_Liver or the phantom task written by :mod:`pipelines.phantoms.liver_ct`.

Command line::

    python -m data_manifests.msd --task-dir data/Task03_Liver --output data_manifests/liver.json \\
        --val-fraction 0.2 --test-fraction 0.1 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_manifests.driver import BuildOptions, Option, run_command_line
from data_manifests.splits import SECTIONS, finish_datalist, log_counts, section_counts, split_by_patient, split_counts
from pipelines.validation.checks import validate_datalist
from pipelines.validation.errors import DataError

__all__ = ["build_msd_datalist", "split_counts", "main"]

logger = logging.getLogger(__name__)


def _read_dataset_json(task_dir: Path) -> dict:
    ds_path = task_dir / "dataset.json"
    if not task_dir.is_dir():
        raise DataError(f"{task_dir}: MSD task folder not found")
    if not ds_path.is_file():
        raise DataError(f"{ds_path}: dataset.json not found (is {task_dir} an MSD task folder?)")
    try:
        with open(ds_path, encoding="utf-8") as f:
            dataset = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{ds_path}: not valid JSON: {exc}") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("training"), list):
        raise DataError(f"{ds_path}: has no 'training' list")
    return dataset


def _cases(task_dir: Path, dataset: dict, section: str = "training") -> list[dict[str, str]]:
    """Absolute image/label paths of the cases listed in a section of dataset.json, sorted by image path: the
    ``training`` cases (at least one), or the ``negatives`` (none when the section is absent)."""
    ds_path = task_dir / "dataset.json"
    items = dataset.get(section) or []
    if not isinstance(items, list):
        raise DataError(f"{ds_path}: '{section}' must be a list, got {type(items).__name__}")
    problems: list[str] = []
    cases: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("image"), str)
            or not isinstance(item.get("label"), str)
        ):
            problems.append(f"{ds_path}: {section}[{i}] must have string 'image' and 'label', got {item!r:.100}")
            continue
        if Path(item["image"]).name.startswith("._") or Path(item["label"]).name.startswith("._"):
            logger.debug("skipping macOS metadata file %s", item["image"])
            continue
        case = {k: os.path.normpath(os.path.join(task_dir, item[k])) for k in ("image", "label")}
        if case["image"] in seen:
            problems.append(f"{case['image']}: listed twice in {ds_path} ({section}[{seen[case['image']]}] and [{i}])")
            continue
        seen[case["image"]] = i
        for k in ("image", "label"):
            if not os.path.isfile(case[k]):
                problems.append(f"{case[k]}: listed in {ds_path} as {section}[{i}] {k}, but the file is missing")
        cases.append(case)
    if problems:
        raise DataError(problems)
    if not cases and section == "training":
        raise DataError(f"{ds_path}: lists no training cases")
    return sorted(cases, key=lambda c: c["image"])


def build_msd_datalist(task_dir: str | os.PathLike, **options: Any) -> dict:
    """Split the labelled cases of an MSD task into training / validation / test and return the datalist.

    Cases come from the ``training`` list of ``dataset.json`` (``./imagesTr/x.nii.gz`` paths are fine; macOS
    ``._*`` entries are skipped). A ``negatives`` list there (scans without the target, as the liver phantom task
    holds head CTs) becomes the datalist's ``negatives`` section, unsplit: the slice gate trains on it. Each case
    is its own patient (MSD has no patient ids): cases are sorted,
    shuffled with ``numpy.random.default_rng(seed)`` and split by :func:`data_manifests.splits.split_by_patient`;
    test entries keep their labels, so evaluation can score them. See :func:`split_counts` for the sizes.

    Paths in the result are absolute, unless written to ``output_path``: then they are relative to
    ``relative_to`` if given, else to the output file's folder, which is where
    ``monai.data.load_decathlon_datalist`` resolves them when called without ``base_dir``. Pass
    ``relative_to=task_dir`` for configs that load the datalist with ``base_dir=<task folder>``.

    Args:
        task_dir: the MSD task folder.
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`: the fractions
            are of cases; ``validate`` checks every image / label pair with :mod:`pipelines.validation.checks`
            first (slower, reads every file); ``slice_counts`` reads every label to count positive / negative
            slices per section.

    Returns:
        The datalist: ``name``, ``description``, ``seed``, ``source``, ``labels``, ``modality``, ``counts``
        (per section: ``cases``, ``patients`` and, with ``slice_counts``, ``positive_slices`` and
        ``negative_slices``), ``training``, ``validation`` and ``test`` (lists of ``{"image": ..., "label": ...}``).

    Raises:
        DataError: missing task folder, ``dataset.json`` or listed file, or (with ``validate``) bad images,
            each problem naming the file.
        ValueError: invalid fractions or too few cases for the requested splits.
    """
    opts = BuildOptions(**options)
    task_dir = Path(task_dir)
    dataset = _read_dataset_json(task_dir)
    cases = _cases(task_dir, dataset)
    try:
        n_train, n_val, n_test = split_counts(len(cases), opts.val_fraction, opts.test_fraction)
    except ValueError as exc:
        raise DataError(f"{task_dir / 'dataset.json'}: {exc}") from None
    splits = split_by_patient(cases, _patient, opts.val_fraction, opts.test_fraction, opts.seed)
    negatives = _cases(task_dir, dataset, "negatives")  # scans without the target: the slice gate's, unsplit
    extra = {"negatives": negatives} if negatives else {}
    if opts.validate:
        validate_datalist({**splits, **extra}, keys=(*SECTIONS, *extra))
    counts = section_counts(splits, _patient, slices=opts.slice_counts)

    name = str(dataset.get("name") or task_dir.name)
    header = {
        "name": name,
        "description": f"{name}: {len(cases)} labelled cases of {task_dir.name} split "
        f"{n_train}/{n_val}/{n_test} (training/validation/test) with seed {opts.seed}",
        "seed": int(opts.seed),
        "source": str(task_dir),
        "labels": dataset.get("labels", {}),
        "modality": dataset.get("modality", {}),
        "counts": counts,
    }
    logger.info("%s: training %d, validation %d, test %d", task_dir, n_train, n_val, n_test)
    log_counts(task_dir, counts)
    return finish_datalist(
        header, splits, output_path=opts.output_path, relative_to=opts.relative_to, extra_sections=extra
    )


def _patient(case: dict[str, str]) -> str:
    """MSD cases are patients one-to-one: the image path stands for the patient."""
    return case["image"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.msd --task-dir DIR --output FILE.json``.

    Only a :class:`DataError` gives exit status 1; invalid fractions raise (a traceback), as they always have.
    """

    def report(datalist: dict, args: argparse.Namespace) -> None:
        logger.info("wrote %s (%s)", args.output, ", ".join(f"{k} {len(datalist[k])}" for k in SECTIONS))

    return run_command_line(
        argv,
        module="data_manifests.msd",
        doc=__doc__,
        build=build_msd_datalist,
        source=Option("--task-dir", help="MSD task folder (imagesTr/, labelsTr/, dataset.json)"),
        logger=logger,
        errors=DataError,
        on_success=report,
    )


if __name__ == "__main__":
    raise SystemExit(main())
