"""Build a MONAI datalist of 2D chest X-rays with lung masks and classes: COVID-19 Radiography Database layout.

Two layouts are read:

* COVID-19 Radiography Database: one folder per class under the root (``COVID/``, ``Normal/``,
  ``Lung_Opacity/``, ``Viral Pneumonia/``, any names), each with ``images/*.png`` and ``masks/*.png``; a mask has
  its image's file name, and may have another size (256 x 256 masks for 299 x 299 images: recorded, not an
  error). The split is random, seeded.
* COVID-QU-Ex: the root holds ``Train/``, ``Val/`` and ``Test/``, each with class folders holding ``images/``
  and ``lung masks/`` (or ``infection masks/``, see ``mask_kind``). The database's split is kept.

Neither database records patient ids: each image is its own patient for the split, so two images of one patient
may land in different sections. Entries are ``{"image", "label", "class", "class_name"}``; ``class`` is the index
of the class in the datalist's ``classes`` (sorted folder names unless chosen).

Command line::

    python -m data_manifests.chest_xray --root /data/COVID-19_Radiography_Dataset --output data_manifests/cxr.json
    python -m data_manifests.chest_xray --root "/data/COVID-QU-Ex/Infection Segmentation Data" \\
        --mask-kind infection --output data_manifests/qu_ex.json
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_manifests.driver import BuildOptions, Option, run_command_line
from data_manifests.splits import SECTIONS, finish_datalist, log_counts, split_by_patient
from pipelines.validation.errors import DataError

__all__ = ["MASK_FOLDERS", "SPLIT_FOLDERS", "find_chest_xray_images", "build_chest_xray_datalist", "main"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_FOLDERS = {"lung": "lung masks", "infection": "infection masks"}  # COVID-QU-Ex; the Radiography DB: "masks"
SPLIT_FOLDERS = {"Train": "training", "Val": "validation", "Test": "test"}
_MAX_LISTED = 10  # missing masks listed one by one per class folder; the rest are counted


def _class_folders(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` that hold an ``images/`` folder, by name."""
    return {
        d.name: d
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".") and (d / "images").is_dir()
    }


def _images_of_class(
    class_dir: Path, mask_folder: str, allow_missing_masks: bool, problems: list[str]
) -> list[tuple[Path, Path | None]]:
    """``(image, mask or None)`` for every image of one class folder, sorted by name."""
    images = sorted(
        p for p in (class_dir / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    mask_dir = class_dir / mask_folder
    if not mask_dir.is_dir():
        if not allow_missing_masks and images:
            problems.append(f"{mask_dir}: mask folder missing, so its {len(images)} images have no mask")
        return [(p, None) for p in images]
    pairs: list[tuple[Path, Path | None]] = []
    missing: list[Path] = []
    for image in images:
        mask = mask_dir / image.name
        if mask.is_file():
            pairs.append((image, mask))
        else:
            pairs.append((image, None))
            missing.append(image)
    if missing and not allow_missing_masks:
        problems += [f"{p}: has no mask {mask_dir / p.name}" for p in missing[:_MAX_LISTED]]
        if len(missing) > _MAX_LISTED:
            problems.append(f"{mask_dir}: {len(missing) - _MAX_LISTED} more images of {class_dir} have no mask")
    return pairs


def find_chest_xray_images(
    root: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    mask_kind: str = "lung",
    allow_missing_masks: bool = False,
) -> tuple[dict[str, list[dict]] | list[dict], list[str]]:
    """The images of ``root`` with their masks and classes.

    Args:
        root: the database folder (class folders, or ``Train/``, ``Val/``, ``Test/`` holding class folders).
        classes: class folder names to keep, in the order that gives their indices; default all, sorted.
        mask_kind: ``"lung"`` or ``"infection"``: which mask folder of COVID-QU-Ex to read.
        allow_missing_masks: an image without a mask gets an entry without ``label`` instead of an error.

    Returns:
        The entries (a list; or, for the COVID-QU-Ex layout, ``{section: list}`` with the given split) and the
        class names.

    Raises:
        DataError: missing folder, no class folders or images, a requested class that does not exist, an image
            without its mask, each naming the file.
        ValueError: unknown ``mask_kind``.
    """
    if mask_kind not in MASK_FOLDERS:
        raise ValueError(f"mask_kind must be one of {sorted(MASK_FOLDERS)}, got {mask_kind!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: chest X-ray folder not found")
    split_dirs = {section: root / name for name, section in SPLIT_FOLDERS.items() if (root / name).is_dir()}
    given_split = bool(split_dirs)
    groups = split_dirs if given_split else {"all": root}
    mask_folder = MASK_FOLDERS[mask_kind] if given_split else "masks"
    folders = {group: _class_folders(folder) for group, folder in groups.items()}
    found = sorted({name for by_name in folders.values() for name in by_name})
    if not found:
        where = " or ".join(str(g / "<class>" / "images") for g in groups.values())
        raise DataError(f"{root}: no class folders with images found ({where})")
    if classes is None:
        names = found
    else:
        names = list(classes)
        unknown = [c for c in names if c not in found]
        if unknown or len(set(names)) != len(names):
            raise DataError(
                [f"{root / c}: class folder not found (classes there: {', '.join(found)})" for c in unknown]
                or [f"{root}: classes listed twice in {names}"]
            )
    problems: list[str] = []
    entries: dict[str, list[dict]] = {}
    for group, by_name in folders.items():
        entries[group] = []
        for index, name in enumerate(names):
            if name not in by_name:
                logger.warning("%s: no class folder %s", groups[group], name)
                continue
            for image, mask in _images_of_class(by_name[name], mask_folder, allow_missing_masks, problems):
                entry = {"image": str(image), "class": index, "class_name": name}
                if mask is not None:
                    entry["label"] = str(mask)
                entries[group].append(entry)
    if problems:
        raise DataError(problems)
    if not any(entries.values()):
        raise DataError(f"{root}: the class folders {', '.join(names)} hold no images")
    if not given_split:
        return entries["all"], names
    return {section: entries.get(section, []) for section in SECTIONS}, names


def _inspect(entry: dict, read_image: bool, problems: list[str]) -> tuple[bool | None, dict[str, tuple[int, int]]]:
    """Whether the entry's mask is positive (None without a mask) and the (width, height) of its image and mask.

    The mask is always decoded; the image only with ``read_image`` (otherwise its header gives the size).
    """
    from PIL import Image

    sizes: dict[str, tuple[int, int]] = {}
    positive = None
    for key, read in (("image", read_image), ("label", True)):
        if key not in entry:
            continue
        try:
            with Image.open(entry[key]) as image:
                sizes[key] = image.size
                if read:
                    pixels = np.asarray(image)  # decodes the whole file: finds truncated ones
                    if key == "label":
                        positive = bool(np.any(pixels))
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
            reason = " ".join(str(exc).split())[:160]
            problems.append(f"{entry[key]}: cannot be read as an image: {type(exc).__name__}: {reason}")
    return positive, sizes


def _counts(
    splits: dict[str, list[dict]], names: list[str], read_images: bool, read_masks: bool
) -> tuple[dict[str, dict], dict[tuple, int]]:
    """Per-section counts (images, per class, without mask, positive / negative masks, mask size differences)
    and how often each differing (image size, mask size) pair occurs; raises on unreadable files."""
    problems: list[str] = []
    counts: dict[str, dict] = {}
    size_pairs: dict[tuple, int] = {}
    for section in SECTIONS:
        entries = splits[section]
        c: dict = {
            "images": len(entries),
            "classes": {n: sum(e["class_name"] == n for e in entries) for n in names},
            "without_mask": sum("label" not in e for e in entries),
        }
        if read_images or read_masks:
            c.update(positive_images=0, negative_images=0, mask_size_differs=0)
            for entry in entries:
                positive, sizes = _inspect(entry, read_images, problems)
                if positive is not None:
                    c["positive_images" if positive else "negative_images"] += 1
                if len(sizes) == 2 and sizes["image"] != sizes["label"]:
                    c["mask_size_differs"] += 1
                    pair = (sizes["image"], sizes["label"])
                    size_pairs[pair] = size_pairs.get(pair, 0) + 1
        counts[section] = c
    if problems:
        raise DataError(problems)
    return counts, size_pairs


def build_chest_xray_datalist(
    root: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    mask_kind: str = "lung",
    allow_missing_masks: bool = False,
    **options: Any,
) -> dict:
    """Split the chest X-rays of ``root`` into training / validation / test and return the datalist.

    In the Radiography Database layout the images are shuffled with ``numpy.random.default_rng(seed)`` and split
    by image (the database has no patient ids); in the COVID-QU-Ex layout the ``Train``/``Val``/``Test`` split is
    kept and the fractions and seed are not used.

    Args:
        root: the database folder.
        classes: class folder names to keep, in the order that gives their indices; default all, sorted.
        mask_kind: COVID-QU-Ex masks to use: ``"lung"`` (``lung masks/``) or ``"infection"``.
        allow_missing_masks: an image without a mask gets an entry without ``label`` instead of an error.
        **options: the split and output options, see :class:`data_manifests.driver.BuildOptions`: the fractions
            and seed apply to the random split only; ``validate`` decodes every image and mask (finds unreadable
            files and truncated ones); ``slice_counts`` decodes every mask to count positive / negative images
            per section (and reads the image headers, to compare sizes). With neither no file is opened.

    Returns:
        The datalist: ``name``, ``description``, ``classes``, ``labels``, ``split`` (``"random"`` or
        ``"given"``), ``seed`` (random split only), ``source``, ``counts`` (per section: ``images``, ``classes``
        (images per class), ``without_mask`` and, when files are read, ``positive_images``, ``negative_images``,
        ``mask_size_differs``), ``mask_sizes`` (differing image / mask sizes and how often they occur) and the
        sections.

    Raises:
        DataError: see :func:`find_chest_xray_images`; unreadable images or masks; too few images to split.
        ValueError: invalid fractions or ``mask_kind``.
    """
    opts = BuildOptions(**options)
    root = Path(root)
    found, names = find_chest_xray_images(
        root, classes=classes, mask_kind=mask_kind, allow_missing_masks=allow_missing_masks
    )
    given = isinstance(found, dict)
    if given:
        logger.info("%s: keeping the database's Train/Val/Test split (fractions and seed unused)", root)
        splits = found
    else:
        splits = split_by_patient(
            found, lambda e: e["image"], opts.val_fraction, opts.test_fraction, opts.seed, source=root
        )
    counts, size_pairs = _counts(
        splits, names, read_images=opts.validate, read_masks=opts.validate or opts.slice_counts
    )
    log_counts(root, counts)
    for (image_size, mask_size), n in sorted(size_pairs.items()):
        logger.info("%s: %d masks are %dx%d while their images are %dx%d", root, n, *mask_size, *image_size)
    n_images = sum(c["images"] for c in counts.values())
    split_text = "/".join(str(counts[k]["images"]) for k in SECTIONS)
    how = "as given by its Train/Val/Test folders" if given else f"at random with seed {opts.seed}"
    header = {
        "name": "chest X-ray",
        "description": f"Chest X-rays with {mask_kind if given else 'lung'} masks: {n_images} images of "
        f"{len(names)} classes ({', '.join(names)}) under {root}, split {split_text} (training/validation/test) "
        f"{how}. The database has no patient ids: each image is its own patient, so images of one patient may "
        "be in different sections.",
        "classes": names,
        "labels": {"0": "background", "1": f"{mask_kind if given else 'lung'}"},
        "split": "given" if given else "random",
        **({} if given else {"seed": int(opts.seed)}),
        "source": str(root),
        "counts": counts,
        "mask_sizes": [
            {"image": list(image_size), "mask": list(mask_size), "count": n}
            for (image_size, mask_size), n in sorted(size_pairs.items())
        ],
    }
    return finish_datalist(header, splits, output_path=opts.output_path, relative_to=opts.relative_to)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data_manifests.chest_xray --root DIR --output FILE.json``."""
    options = [
        Option("--classes", nargs="+", default=None, help="class folders to keep, in index order"),
        Option(
            "--mask-kind", choices=sorted(MASK_FOLDERS), default="lung", help="COVID-QU-Ex masks: lung or infection"
        ),
        Option("--allow-missing-masks", action="store_true", help="keep images without a mask (entries without label)"),
    ]
    return run_command_line(
        argv,
        module="data_manifests.chest_xray",
        doc=__doc__,
        build=build_chest_xray_datalist,
        source=Option("--root", help="database folder: class folders, or Train/ Val/ Test/"),
        options=options,
        logger=logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
