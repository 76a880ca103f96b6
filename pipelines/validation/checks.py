"""Validation of images and datalists, run before any long work (training, evaluation, inference).

Every check collects all the problems it finds as strings that start with the file they concern, so a single
run reports everything wrong with a dataset. :class:`DataError` carries that list. This module checks datalists
and runs the command line; the checks of single volumes and pairs are in :mod:`pipelines.validation.volume_checks`
and :class:`DataError` in :mod:`pipelines.validation.errors` (both importable from here too).

Command line::

    python -m pipelines.validation.checks data_manifests/liver_phantom.json --base-dir data/Task03_Liver_phantom
    python -m pipelines.validation.checks scan.nii.gz dicom_series_folder/ --modality CT
    python -m pipelines.validation.checks data_manifests/brain_phantom.json --base-dir data/BraTS_phantom
    --label-values 0 1 2 4

``radcascade validate <workflow>`` runs the same checks with the values a workflow's bundle sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.validation.errors import DEFAULT_KEYS, DataError, short_error
from pipelines.validation.path_safety import resolve_inside
from pipelines.validation.volume_checks import check_pair, check_volume

# DataError, find_data_error and the volume checks are re-exported: callers and bundle configs import them from here
__all__ = [
    "read_datalist_json",
    "validate_datalist",
    "main",
]

logger = logging.getLogger(__name__)

UNLABELLED_SECTIONS = ("test",)


# ---------------------------------------------------------------------------------------------------------------
# datalists
# ---------------------------------------------------------------------------------------------------------------
def _resolve(base_dir: Path, element: Any) -> list[str] | None:
    """Resolve an ``image``/``label`` value like ``monai.data.load_decathlon_datalist`` does (str or list)."""
    items = element if isinstance(element, list) else [element]
    if not items or not all(isinstance(e, (str, os.PathLike)) for e in items):
        return None
    return [os.path.normpath(os.path.join(base_dir, e)) for e in items]


def read_datalist_json(path: str | os.PathLike) -> dict:
    """The JSON object of a datalist file; ``DataError`` naming the file when it is missing, not JSON, or not an
    object."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: datalist file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: datalist is not valid JSON: {short_error(exc)}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: datalist must be a JSON object with sections {list(DEFAULT_KEYS)}, got {type(data).__name__}"
        )
    return data


def _load_datalist(datalist: str | os.PathLike | Mapping) -> tuple[dict, str, Path]:
    """The datalist as a dict, a name for messages, and its folder."""
    if isinstance(datalist, Mapping):
        return dict(datalist), "datalist", Path.cwd()
    path = Path(datalist)
    return read_datalist_json(path), str(path), path.parent


def _entry_file_problems(images, labels, check_intensity, label_values, modality) -> list[str]:
    """The problems of one datalist entry's files: each image with the first label, then the other labels."""
    problems = []
    if labels:
        for img in images:
            problems += check_pair(
                img, labels[0], check_intensity=check_intensity, label_values=label_values, modality=modality
            )
        for lab in labels[1:]:
            problems += check_volume(lab, check_intensity=check_intensity)
    else:
        for img in images:
            problems += check_volume(img, check_intensity=check_intensity, modality=modality)
    return list(dict.fromkeys(problems))  # a label shared by several images (MRI sequences) is reported once


def validate_datalist(
    datalist_path_or_dict: str | os.PathLike | Mapping,
    *,
    base_dir: str | os.PathLike | None = None,
    keys: Sequence[str] = DEFAULT_KEYS,
    label_required: bool = True,
    check_intensity: bool = True,
    allow_outside_root: bool | None = None,
    label_values: Sequence[int] | None = None,
    modality: str | None = None,
) -> dict[str, int]:
    """Check a MONAI (Decathlon-style) datalist and every file it lists, reporting all problems at once.

    Checks that the file exists and is JSON, that each section in ``keys`` is present and a list, that each
    entry is a dict with ``image`` (and ``label`` when required; the ``test`` section may lack labels, and
    may be a plain list of image paths as in MSD ``dataset.json``), that no image (or label) is listed twice
    within or across sections, that no path leads outside ``base_dir`` (symbolic links followed), and
    that each resolved image / label passes :func:`check_volume` / :func:`check_pair`. Paths resolve like
    ``monai.data.load_decathlon_datalist``: relative paths are joined to ``base_dir`` (the dataset root), else
    to the datalist's folder (the current folder for a dict).

    Args:
        datalist_path_or_dict: path of the JSON datalist, or the datalist already loaded.
        base_dir: folder relative paths start from.
        keys: sections to check.
        label_required: entries outside ``test`` must have a ``label``.
        check_intensity: read voxel data (slow on big datasets); ``False`` checks headers and geometry only.
        allow_outside_root: accept paths outside the dataset root (``base_dir``). None (the default) checks
            them only when ``base_dir`` is given: a datalist checked on its own (the builders check the
            absolute paths they write) has no root to stay in.
        label_values: the values the classes use on disk (``[0, 1, 2]``); None accepts any non-negative integer.
        modality: the images' modality (``"CT"``: Hounsfield units; any: not constant); None skips these checks.

    Returns:
        Number of entries per checked section.

    Raises:
        DataError: listing every problem found, each naming the datalist or the file concerned.
    """
    data, name, folder = _load_datalist(datalist_path_or_dict)
    base = Path(base_dir) if base_dir is not None else folder
    outside_ok = base_dir is None if allow_outside_root is None else allow_outside_root
    problems: list[str] = []
    counts: dict[str, int] = {}
    seen: dict[tuple[str, str], str] = {}  # (role, normalised path) -> first place it was listed
    if isinstance(keys, str):
        keys = (keys,)
    for key in keys:
        if key not in data:
            problems.append(f"{name}: section {key!r} is missing (found sections: {sorted(data)})")
            continue
        section = data[key]
        if not isinstance(section, list):
            problems.append(f"{name}: section {key!r} must be a list, got {type(section).__name__}")
            continue
        counts[key] = len(section)
        needs_label = label_required and key not in UNLABELLED_SECTIONS
        logger.info("checking %d entries of section %r of %s", len(section), key, name)
        for i, entry in enumerate(section):
            where = f"{key}[{i}]"
            if isinstance(entry, str) and not needs_label:
                entry = {"image": entry}
            if not isinstance(entry, dict):
                problems.append(f"{name}: {where} must be an object with 'image' and 'label', got {entry!r:.80}")
                continue
            if "image" not in entry:
                problems.append(f"{name}: {where} has no 'image'")
                continue
            if needs_label and "label" not in entry:
                problems.append(f"{name}: {where} ({entry['image']}) has no 'label'")
            images = _resolve(base, entry["image"])
            labels = _resolve(base, entry["label"]) if "label" in entry else []
            if images is None or labels is None:
                problems.append(f"{name}: {where} has an 'image' or 'label' that is not a path or list of paths")
                continue
            escaping = []
            for p in images + labels:
                try:
                    resolve_inside(base, p, allow_outside=outside_ok, entry=f"{name}: {where}")
                except DataError as exc:
                    escaping += exc.problems
            if escaping:
                problems += escaping
                continue
            duplicate = False
            for role, paths in (("image", images), ("label", labels)):
                for p in paths:
                    ident = (role, os.path.normcase(os.path.abspath(p)))
                    if ident in seen:
                        problems.append(f"{p}: listed more than once in {name} ({seen[ident]} and {where})")
                        duplicate = True
                    else:
                        seen[ident] = where
            if duplicate:
                continue
            problems += _entry_file_problems(images, labels, check_intensity, label_values, modality)
            if (i + 1) % 25 == 0:
                logger.info("  %s: %d/%d entries checked", key, i + 1, len(section))
    if problems:
        raise DataError(problems)
    logger.info("%s: all entries valid (%s)", name, ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check datalists (``*.json``), images and DICOM series folders; exit 1 on any problem."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.validation.checks",
        description="Check datalists (.json), images (NIfTI, NRRD, MetaImage) and DICOM series folders.",
    )
    parser.add_argument("paths", nargs="+", metavar="DATALIST_OR_IMAGE")
    parser.add_argument("--base-dir", default=None, help="folder datalist paths are relative to (default: its own)")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS), help="datalist sections to check")
    parser.add_argument("--no-label-required", action="store_true", help="accept entries without 'label'")
    parser.add_argument("--headers-only", action="store_true", help="skip reading voxel data (faster)")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        default=None,
        help="accept datalist paths outside --base-dir (checked only when --base-dir is given)",
    )
    parser.add_argument("--ndim", type=int, default=3, help="spatial dimensions expected of images (default 3)")
    parser.add_argument(
        "--label-values", type=int, nargs="+", default=None, help="the label values of the classes (e.g. 0 1 2)"
    )
    parser.add_argument("--modality", default=None, help="CT: check Hounsfield units; any: check images aren't blank")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    problems: list[str] = []
    for target in args.paths:
        if str(target).lower().endswith(".json"):
            try:
                counts = validate_datalist(
                    target,
                    base_dir=args.base_dir,
                    keys=args.keys,
                    label_required=not args.no_label_required,
                    check_intensity=not args.headers_only,
                    allow_outside_root=args.allow_outside_root,
                    label_values=args.label_values,
                    modality=args.modality,
                )
            except DataError as exc:
                problems += exc.problems
            else:
                print(f"ok {target}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        else:
            found = check_volume(
                target, expect_ndim=args.ndim, check_intensity=not args.headers_only, modality=args.modality
            )
            problems += found
            if not found:
                print(f"ok {target}")
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) found")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
