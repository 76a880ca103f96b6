"""Pieces every datalist builder shares: split sizes, the seeded patient-level split, slice counts, paths, writing.

A builder finds its items (one dict per image / label pair), splits them with :func:`split_by_patient` so that
all the items of one patient land in the same section, counts what each section holds (:func:`count_slices`,
:func:`section_counts`), and hands the sections to :func:`finish_datalist`, which makes the paths absolute or
relative, adds the header and writes the JSON atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipelines.io.atomic import write_json_atomic
from pipelines.validation.checks import validate_datalist
from pipelines.validation.errors import DataError

__all__ = [
    "SECTIONS",
    "PATH_KEYS",
    "split_counts",
    "split_by_patient",
    "count_slices",
    "section_counts",
    "relative_paths",
    "absolute_paths",
    "finish_datalist",
    "build_datalist",
    "write_datalist",
    "is_hidden",
    "add_common_arguments",
    "common_kwargs",
    "configure_logging",
    "log_counts",
]

logger = logging.getLogger(__name__)

SECTIONS = ("training", "validation", "test")
PATH_KEYS = ("image", "label")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

T = TypeVar("T")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ``ValueError`` unless both fractions are in [0, 1) and sum to less than 1."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:  # also rejects NaN
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")


def split_counts(n: int, val_fraction: float, test_fraction: float, *, unit: str = "case") -> tuple[int, int, int]:
    """Sizes of the (training, validation, test) splits of ``n`` cases (or patients).

    Each size is the rounded fraction, but a split with a non-zero fraction gets at least one case, and
    training always keeps at least one.

    Args:
        n: number of cases (patients) to split.
        val_fraction: fraction for validation.
        test_fraction: fraction for test.
        unit: what is counted, for the error message (``"case"``, ``"patient"``).

    Returns:
        ``(n_training, n_validation, n_test)``.

    Raises:
        ValueError: for fractions outside [0, 1) or summing to 1 or more, or too few cases for the splits.
    """
    _check_fractions(val_fraction, test_fraction)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise ValueError(
            f"{n} {unit}(s) cannot be split into training"
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


def split_by_patient(
    items: Sequence[T],
    patient_of: Callable[[T], Hashable],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    source: str | os.PathLike | None = None,
) -> dict[str, list[T]]:
    """Split ``items`` into training / validation / test so that no patient is in two sections.

    The distinct patients are sorted, shuffled with ``numpy.random.default_rng(seed).permutation`` and cut with
    :func:`split_counts` over patients: the first ``n_validation`` shuffled patients go to validation, the next
    ``n_test`` to test, the rest to training. Each item follows its patient; within a section items keep the
    order they have in ``items``. With one item per patient and items sorted by patient this is exactly the
    case-level split of :func:`data_manifests.msd.build_msd_datalist`.

    Args:
        items: the items (datalist entries or anything else).
        patient_of: the patient of an item; patients must be mutually sortable (all ``str`` or all ``int``).
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the shuffle.
        source: the dataset folder; when given, too few patients raise a :class:`DataError` naming it.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``.

    Raises:
        ValueError: invalid fractions, or too few patients for the requested sections (a ``DataError``, which
            is a ``ValueError``, naming ``source`` when given).
    """
    _check_fractions(val_fraction, test_fraction)
    patients = sorted({patient_of(item) for item in items})
    try:
        _, n_val, n_test = split_counts(len(patients), val_fraction, test_fraction, unit="patient")
    except ValueError as exc:
        if source is None:
            raise
        raise DataError(f"{source}: {exc}") from None
    shuffled = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    section_of = {p: "validation" for p in shuffled[:n_val]}
    section_of.update({p: "test" for p in shuffled[n_val : n_val + n_test]})
    splits: dict[str, list[T]] = {k: [] for k in SECTIONS}
    for item in items:
        splits[section_of.get(patient_of(item), "training")].append(item)
    return splits


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _read_label(path: Path) -> np.ndarray:
    """Voxel array of a label in (x, y, z) order, only as far as zero / non-zero matters.

    NIfTI is read with nibabel, unscaled when the scaling keeps zero at zero (a float64 copy of a big CT label
    would cost 8 bytes a voxel); anything else with SimpleITK, multi-component pixels (an RGB mask) reduced to
    "any component non-zero".
    """
    if _is_nifti(path):
        import nibabel as nib

        proxy = nib.load(str(path)).dataobj
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        if hasattr(proxy, "get_unscaled") and inter == 0 and slope != 0:
            return np.asarray(proxy.get_unscaled())
        return np.asanyarray(proxy)
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(image)  # (z, y, x[, c]) -> (x, y, z)
    if image.GetNumberOfComponentsPerPixel() > 1:
        data = (data != 0).any(axis=-1)
    return np.transpose(data, tuple(range(image.GetDimension() - 1, -1, -1)))


def count_slices(label_path: str | os.PathLike) -> tuple[int, int]:
    """Positive and negative slices of a label along its last spatial axis.

    A slice is positive when any of its voxels is non-zero. Trailing singleton axes (``(x, y, z, 1)``) are
    dropped first; a 2D label (a mask image, grey or RGB) counts as one slice. NIfTI files are read with
    nibabel, anything else (NRRD, MetaImage, PNG, TIFF) with SimpleITK.

    Args:
        label_path: the label file.

    Returns:
        ``(positive, negative)``.

    Raises:
        DataError: the file is missing or cannot be read, naming it.
    """
    path = Path(label_path)
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    try:
        data = _read_label(path)
    except Exception as exc:  # nibabel and SimpleITK raise many types for truncated or foreign files
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"{path}: cannot be read as a label image: {type(exc).__name__}: {reason}") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim < 3:
        positive = int(np.any(data))
        return positive, 1 - positive
    per_slice = np.asarray(data != 0).reshape(-1, data.shape[-1]).any(axis=0)
    positive = int(per_slice.sum())
    return positive, int(per_slice.size - positive)


def section_counts(
    splits: Mapping[str, Sequence[Mapping]],
    patient_of: Callable[[Mapping], Hashable],
    *,
    slices: bool = True,
    label_key: str = "label",
) -> dict[str, dict[str, int]]:
    """Per-section counts: ``cases``, ``patients`` and, with ``slices``, ``positive_slices`` / ``negative_slices``.

    Args:
        splits: the sections, lists of entries with absolute (or current-folder relative) label paths.
        patient_of: the patient of an entry.
        slices: read every label and count its positive / negative slices (:func:`count_slices`).
        label_key: the entry key of the label.

    Returns:
        ``{section: {"cases": n, "patients": n, "positive_slices": n, "negative_slices": n}}``.

    Raises:
        DataError: a label that cannot be read (only with ``slices``).
    """
    counts: dict[str, dict[str, int]] = {}
    for section, entries in splits.items():
        c = {"cases": len(entries), "patients": len({patient_of(e) for e in entries})}
        if slices:
            c["positive_slices"] = c["negative_slices"] = 0
            for entry in entries:
                if label_key in entry:
                    pos, neg = count_slices(entry[label_key])
                    c["positive_slices"] += pos
                    c["negative_slices"] += neg
        counts[section] = c
    return counts


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` with forward slashes (absolute if no relative path exists)."""
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # different drives on Windows
        return Path(path).as_posix()


def _map_paths(entry: Mapping[str, Any], keys: Iterable[str], fn: Callable[[str], str]) -> dict[str, Any]:
    out = dict(entry)
    for key in keys:
        if key in out:
            value = out[key]
            out[key] = [fn(str(v)) for v in value] if isinstance(value, (list, tuple)) else fn(str(value))
    return out


def relative_paths(
    entries: Iterable[Mapping[str, Any]], base: str | os.PathLike, keys: Iterable[str] = PATH_KEYS
) -> list[dict[str, Any]]:
    """Copies of ``entries`` whose paths under ``keys`` (a path or a list of paths) are relative to ``base``.

    Paths are made absolute first (from the current folder), then relative to ``base`` with forward slashes,
    which is how ``monai.data.load_decathlon_datalist`` resolves them with ``base_dir=base``.
    """
    base = Path(os.path.abspath(base))
    keys = tuple(keys)
    return [_map_paths(e, keys, lambda p: _relative(os.path.abspath(p), base)) for e in entries]


def absolute_paths(entries: Iterable[Mapping[str, Any]], keys: Iterable[str] = PATH_KEYS) -> list[dict[str, Any]]:
    """Copies of ``entries`` whose paths under ``keys`` (a path or a list of paths) are absolute."""
    keys = tuple(keys)
    return [_map_paths(e, keys, os.path.abspath) for e in entries]


def write_datalist(datalist: Mapping[str, Any], output_path: str | os.PathLike) -> Path:
    """Write ``datalist`` as JSON to ``output_path`` atomically (creating its folder); return the path."""
    path = write_json_atomic(dict(datalist), output_path)
    logger.info("datalist written to %s", path)
    return path


def finish_datalist(
    header: Mapping[str, Any],
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    output_path: str | os.PathLike | None = None,
    relative_to: str | os.PathLike | None = None,
    path_keys: Iterable[str] = PATH_KEYS,
    extra_sections: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The datalist ``{**header, "training": ..., "validation": ..., "test": ...}``, written if asked.

    Paths are absolute, unless the datalist is written to ``output_path``: then they are relative to
    ``relative_to`` if given, else to the output file's folder, which is where
    ``monai.data.load_decathlon_datalist`` resolves them when called without ``base_dir``.

    Args:
        header: the keys that come before the sections (name, description, seed, source, counts, ...).
        splits: the sections, entries with absolute or current-folder relative paths.
        output_path: JSON file to write atomically; ``None`` only returns the datalist.
        relative_to: folder the written paths are relative to (only with ``output_path``).
        path_keys: entry keys that hold paths.
        extra_sections: sections outside the split, written after it with their paths treated the same way
            (``negatives``: scans without the target, for the slice gate only).

    Returns:
        The datalist, as written.
    """
    names = (*SECTIONS, *(extra_sections or {}))
    all_sections = {**splits, **(extra_sections or {})}
    if output_path is not None:
        base = relative_to if relative_to is not None else Path(os.path.abspath(output_path)).parent
        sections = {k: relative_paths(all_sections.get(k, []), base, path_keys) for k in names}
    else:
        sections = {k: absolute_paths(all_sections.get(k, []), path_keys) for k in names}
    datalist = {**header, **sections}
    if output_path is not None:
        write_datalist(datalist, output_path)
    return datalist


def build_datalist(
    entries: Sequence[Mapping[str, Any]],
    header: Mapping[str, Any],
    *,
    source: str | os.PathLike,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    validate: bool,
    slice_counts: bool,
    output_path: str | os.PathLike | None,
    relative_to: str | os.PathLike | None,
    patient_key: str = "patient",
) -> dict[str, Any]:
    """Split, check, count and write the entries of a volume dataset: the common tail of the NIfTI builders.

    Args:
        entries: ``{"image": path or [paths], "label": path, patient_key: id, ...}``, sorted.
        header: ``name``, ``description`` (a sentence about the data; the split is appended) and other keys.
        source: the dataset folder, named by errors and recorded in the datalist.
        val_fraction: fraction of patients for validation.
        test_fraction: fraction of patients for test.
        seed: seed of the patient shuffle.
        validate: check every entry with :func:`pipelines.validation.checks.validate_datalist` (reads every file).
        slice_counts: count positive / negative label slices per section (reads every label).
        output_path: JSON file to write atomically, or ``None``.
        relative_to: folder the written paths are relative to (only with ``output_path``).
        patient_key: entry key holding the patient id.

    Note:
        ``monai.data.load_decathlon_datalist`` joins its base folder to the value of any key other than
        ``image`` / ``label`` that then names an existing path: a ``patient`` that equals a folder name under the
        base folder (BraTS with ``relative_to=root``) comes back as that folder's path, still one per patient.

    Returns:
        The datalist: ``header`` with the split added to its description, ``seed``, ``source``, ``counts``
        (see :func:`section_counts`), then ``training``, ``validation`` and ``test``.

    Raises:
        DataError: too few patients for the sections, or (with ``validate`` / ``slice_counts``) unreadable or
            inconsistent files, each problem naming the file.
        ValueError: invalid fractions.
    """

    def patient_of(entry: Mapping[str, Any]) -> Hashable:
        return entry[patient_key]

    splits = split_by_patient(entries, patient_of, val_fraction, test_fraction, seed, source=source)
    if validate:
        validate_datalist(splits, keys=SECTIONS)
    counts = section_counts(splits, patient_of, slices=slice_counts)
    log_counts(source, counts)
    split_text = "/".join(str(counts[k]["patients"]) for k in SECTIONS)
    n_patients = sum(counts[k]["patients"] for k in SECTIONS)
    full_header = {
        **header,
        "description": f"{header.get('description', '')} {n_patients} patients split {split_text} "
        f"(training/validation/test) with seed {seed}.".lstrip(),
        "seed": int(seed),
        "source": str(source),
        "counts": counts,
    }
    return finish_datalist(full_header, splits, output_path=output_path, relative_to=relative_to)


def is_hidden(path: Path) -> bool:
    """macOS metadata (``._x``, ``.DS_Store``) and other dot files, which every builder skips."""
    return path.name.startswith(".")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every builder's command line shares (``--output``, fractions, seed, validation)."""
    parser.add_argument("--output", required=True, help="datalist JSON file to write")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of patients for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="fraction of patients for test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle")
    parser.add_argument("--no-validate", action="store_true", help="skip reading and checking every file")
    parser.add_argument(
        "--no-slice-counts", action="store_true", help="skip reading every label to count positive slices"
    )
    parser.add_argument(
        "--relative-to", default=None, help="folder the written paths are relative to (default: the output's)"
    )


def common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The builder keyword arguments that :func:`add_common_arguments` options give."""
    return {
        "output_path": args.output,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "validate": not args.no_validate,
        "slice_counts": not args.no_slice_counts,
        "relative_to": args.relative_to,
    }


def configure_logging() -> None:
    """Log INFO and above to stderr, as every builder's command line does."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _describe(counts: Mapping[str, Any]) -> str:
    parts = []
    for key, value in counts.items():
        name = key.replace("_", " ")
        if isinstance(value, Mapping):
            parts.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            parts.append(f"{value} {name}")
    return ", ".join(parts)


def log_counts(source: str | os.PathLike, counts: Mapping[str, Mapping[str, Any]]) -> None:
    """One INFO line per section: ``<source>: training 7 cases, 7 patients, 120 positive slices, ...``."""
    for section in SECTIONS:
        if section in counts:
            logger.info("%s: %s %s", source, section, _describe(counts[section]))
