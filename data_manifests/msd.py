"""Build a MONAI datalist (training / validation / test) from a Medical Segmentation Decathlon task folder.

Works for any MSD task (``TaskNN_Name/`` with ``imagesTr/``, ``labelsTr/`` and ``dataset.json``), e.g.
Task03_Liver or the phantom task written by :mod:`pipelines.phantoms`.

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

import numpy as np

from pipelines.atomic import write_json_atomic
from pipelines.checks import DataError, validate_datalist

__all__ = ["build_msd_datalist", "split_counts", "main"]

logger = logging.getLogger(__name__)

SECTIONS = ("training", "validation", "test")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:  # also rejects NaN
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes of the (training, validation, test) splits of ``n`` cases.

    Each size is the rounded fraction, but a split with a non-zero fraction gets at least one case, and
    training always keeps at least one.

    Raises:
        ValueError: for fractions outside [0, 1) or summing to 1 or more, or too few cases for the splits.
    """
    _check_fractions(val_fraction, test_fraction)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise ValueError(
            f"{n} case(s) cannot be split into training"
            f"{', validation' if val_fraction > 0 else ''}{', test' if test_fraction > 0 else ''}: "
            f"need at least {needed}"
        )
    n_val = max(1, int(n * val_fraction + 0.5)) if val_fraction > 0 else 0
    n_test = max(1, int(n * test_fraction + 0.5)) if test_fraction > 0 else 0
    while n - n_val - n_test < 1:  # give cases back to training, from the larger held-out split
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


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


def _cases(task_dir: Path, dataset: dict) -> list[dict[str, str]]:
    """Absolute image/label paths of the training cases listed in dataset.json, sorted by image path."""
    ds_path = task_dir / "dataset.json"
    problems: list[str] = []
    cases: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(dataset["training"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("image"), str)
            or not isinstance(item.get("label"), str)
        ):
            problems.append(f"{ds_path}: training[{i}] must have string 'image' and 'label', got {item!r:.100}")
            continue
        if Path(item["image"]).name.startswith("._") or Path(item["label"]).name.startswith("._"):
            logger.debug("skipping macOS metadata file %s", item["image"])
            continue
        case = {k: os.path.normpath(os.path.join(task_dir, item[k])) for k in ("image", "label")}
        if case["image"] in seen:
            problems.append(f"{case['image']}: listed twice in {ds_path} (training[{seen[case['image']]}] and [{i}])")
            continue
        seen[case["image"]] = i
        for k in ("image", "label"):
            if not os.path.isfile(case[k]):
                problems.append(f"{case[k]}: listed in {ds_path} as training[{i}] {k}, but the file is missing")
        cases.append(case)
    if problems:
        raise DataError(problems)
    if not cases:
        raise DataError(f"{ds_path}: lists no training cases")
    return sorted(cases, key=lambda c: c["image"])


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` with forward slashes (absolute if no relative path exists)."""
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # different drives on Windows
        return Path(path).as_posix()


def build_msd_datalist(
    task_dir: str | os.PathLike,
    *,
    output_path: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    validate: bool = True,
    relative_to: str | os.PathLike | None = None,
) -> dict:
    """Split the labelled cases of an MSD task into training / validation / test and return the datalist.

    Cases come from the ``training`` list of ``dataset.json`` (``./imagesTr/x.nii.gz`` paths are fine; macOS
    ``._*`` entries are skipped). They are sorted, shuffled with ``numpy.random.default_rng(seed)`` and split;
    test entries keep their labels, so evaluation can score them. See :func:`split_counts` for the sizes.

    Paths in the result are absolute, unless written to ``output_path``: then they are relative to
    ``relative_to`` if given, else to the output file's folder, which is where
    ``monai.data.load_decathlon_datalist`` resolves them when called without ``base_dir``. Pass
    ``relative_to=task_dir`` for configs that load the datalist with ``base_dir=<task folder>``.

    Args:
        task_dir: the MSD task folder.
        output_path: JSON file to write (atomically); ``None`` only returns the datalist.
        val_fraction: fraction of cases for validation.
        test_fraction: fraction of cases for test.
        seed: seed of the shuffle.
        validate: check every image / label pair with :mod:`pipelines.checks` first (slower, reads every file).
        relative_to: folder the written paths are relative to (only with ``output_path``).

    Returns:
        The datalist: ``name``, ``description``, ``seed``, ``source``, ``labels``, ``modality``, ``training``,
        ``validation`` and ``test`` (lists of ``{"image": ..., "label": ...}``).

    Raises:
        DataError: missing task folder, ``dataset.json`` or listed file, or (with ``validate``) bad images,
            each problem naming the file.
        ValueError: invalid fractions or too few cases for the requested splits.
    """
    _check_fractions(val_fraction, test_fraction)
    task_dir = Path(task_dir)
    dataset = _read_dataset_json(task_dir)
    cases = _cases(task_dir, dataset)
    try:
        n_train, n_val, n_test = split_counts(len(cases), val_fraction, test_fraction)
    except ValueError as exc:
        raise DataError(f"{task_dir / 'dataset.json'}: {exc}") from None
    order = np.random.default_rng(seed).permutation(len(cases))
    shuffled = [cases[i] for i in order]
    splits = {
        "validation": shuffled[:n_val],
        "test": shuffled[n_val : n_val + n_test],
        "training": shuffled[n_val + n_test :],
    }
    splits = {k: sorted(v, key=lambda c: c["image"]) for k, v in splits.items()}
    if validate:
        validate_datalist({k: splits[k] for k in SECTIONS}, keys=SECTIONS)

    if output_path is not None:
        output_path = Path(output_path)
        base = Path(os.path.abspath(relative_to if relative_to is not None else output_path.parent))
        splits = {
            k: [{key: _relative(os.path.abspath(p), base) for key, p in c.items()} for c in v]
            for k, v in splits.items()
        }
    else:
        splits = {k: [{key: os.path.abspath(p) for key, p in c.items()} for c in v] for k, v in splits.items()}

    name = str(dataset.get("name") or task_dir.name)
    datalist = {
        "name": name,
        "description": f"{name}: {len(cases)} labelled cases of {task_dir.name} split "
        f"{n_train}/{n_val}/{n_test} (training/validation/test) with seed {seed}",
        "seed": int(seed),
        "source": str(task_dir),
        "labels": dataset.get("labels", {}),
        "modality": dataset.get("modality", {}),
        **{k: splits[k] for k in SECTIONS},
    }
    logger.info("%s: training %d, validation %d, test %d", task_dir, n_train, n_val, n_test)
    if output_path is not None:
        write_json_atomic(datalist, output_path)
        logger.info("datalist written to %s", output_path)
    return datalist


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.msd --task-dir DIR --output FILE.json``."""
    parser = argparse.ArgumentParser(prog="python -m data_manifests.msd", description=__doc__.splitlines()[0])
    parser.add_argument("--task-dir", required=True, help="MSD task folder (imagesTr/, labelsTr/, dataset.json)")
    parser.add_argument("--output", required=True, help="datalist JSON file to write")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-validate", action="store_true", help="skip reading and checking every file")
    parser.add_argument(
        "--relative-to", default=None, help="folder the written paths are relative to (default: the output's)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        datalist = build_msd_datalist(
            args.task_dir,
            output_path=args.output,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            validate=not args.no_validate,
            relative_to=args.relative_to,
        )
    except DataError as exc:
        logger.error("%s", exc)
        return 1
    counts = ", ".join(f"{k} {len(datalist[k])}" for k in SECTIONS)
    logger.info("wrote %s (%s)", args.output, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
