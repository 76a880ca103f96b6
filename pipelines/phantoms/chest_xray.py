"""Seeded synthetic frontal (PA) chest radiographs with lung masks, in four classes of the COVID-19 Radiography
Database: ``COVID``, ``Normal``, ``Lung_Opacity`` and ``Viral Pneumonia``.

The phantoms are the default data of the chest X-ray workflow: they let classification and lung segmentation run
anywhere, without downloading the database. They are not anatomy-accurate; they aim to look like a radiograph to a
small CNN: dark lung fields (the left one smaller, with the cardiac notch) with branching vascular markings, a
bright mediastinum and heart shadow, spine, clavicles, posterior and anterior ribs, diaphragm domes with a gastric
bubble, shoulders and humeral heads, sometimes breast shadows; then a film-like response, heel effect, blur and
noise, and a random pose (rotation, scale, shift) and inspiration depth. The acquisition varies as real
radiographs do: some are taken with a wider field of view (air beside the shoulders and flanks, black), and
burnt-in markers (side letters, a white label with text) and collimator or film edges lie outside the lungs.

The class sets the pathology inside the lungs, with a random severity so that some cases are subtle:

* ``Normal``: none.
* ``COVID``: bilateral, peripheral, lower-zone predominant patchy ground-glass haze.
* ``Lung_Opacity``: a focal or lobar consolidation, dense, usually in one lung, sometimes with a sharp fissure
  border and air bronchograms.
* ``Viral Pneumonia``: a diffuse bilateral interstitial (reticular) pattern with perihilar haze.

Image coordinates: the patient's right is on the image left (the PA convention); rows go from head to feet.
The anatomy, the pathology and the acquisition noise use three independent random streams of the seed, so two
classes drawn with the same seed show the same patient, pose and noise, differing only in the lungs.

Command line::

    python -m pipelines.phantoms.chest_xray --out data/COVID-19_Radiography_phantom --num-per-class 24 --seed 0
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.phantoms.chest_xray_anatomy import (
    DEFAULT_SIZE,
    Frame,
    draw_airways_and_bubble,
    draw_body,
    draw_bones,
    draw_heart,
    draw_lungs,
    draw_pathology,
    draw_vessels,
    film,
    smooth_field_2d,
    soft,
)
from pipelines.phantoms.common import phantom_parser, run_writer

__all__ = [
    "CATEGORIES",
    "GENERATOR_VERSION",
    "burn_in",
    "make_chest_xray_phantom",
    "write_chest_xray_phantom_dataset",
    "write_default_dataset",
    "main",
]

logger = logging.getLogger(__name__)

CATEGORIES = ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia")
GENERATOR_VERSION = 2
"""Changes with the images a seed gives; a dataset folder written by another version is rewritten.
2: wider fields of view, burnt-in markers and film edges."""
WIDE_FIELD_PROBABILITY = 0.4


# ---------------------------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------------------------


def make_chest_xray_phantom(seed: int, category: str, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic PA chest radiograph of ``category`` and its lung mask.

    Args:
        seed: seed of the anatomy, pose, pathology and noise; the same seed, category and size give identical
            output, and the same seed with another category gives the same patient with other lungs.
        category: one of ``CATEGORIES``: ``"COVID"``, ``"Normal"``, ``"Lung_Opacity"``, ``"Viral Pneumonia"``.
        size: width and height in pixels (at least 32).

    Returns:
        ``(image, lung_mask)``: ``image`` uint8 ``(size, size)`` grayscale (bright = dense); ``lung_mask`` uint8
        ``(size, size)``, 255 inside the two lung fields (two connected components), 0 elsewhere.

    Raises:
        ValueError: for an unknown ``category`` or a ``size`` below 32.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown chest X-ray category {category!r}; choose one of {list(CATEGORIES)}")
    if int(size) < 32:
        raise ValueError(f"chest X-ray phantom size must be at least 32 pixels, got {size}")
    n = int(size)
    streams = np.random.SeedSequence([int(seed), 7]).spawn(4)
    rng_anat, rng_path, rng_noise, rng_view = (np.random.default_rng(s) for s in streams)
    rng = rng_anat
    # a wider field of view now and then: the body narrower in the frame, air beside it
    zoom = rng_view.uniform(0.72, 0.9) if rng_view.random() < WIDE_FIELD_PROBABILITY else 1.0
    f = Frame(n, rng.normal(0, 0.04), rng.uniform(0.88, 1.02) * zoom, rng.normal(0, 0.03, 2))

    atten, width, shoulder_y = draw_body(rng, f)
    heart, knob = draw_heart(rng, f)
    right, left, info = draw_lungs(rng, f, np.minimum(heart, knob))
    lungs = right | left
    edt = ndimage.distance_transform_edt(lungs) / f.px_per_unit  # canonical units from the pleura
    soft_lungs = ndimage.gaussian_filter(lungs.astype(np.float32), 1.0 * n / DEFAULT_SIZE)
    # air thickness: thin at the pleura, thicker inwards
    air = soft_lungs * (0.4 + 0.25 * (1.0 - np.exp(-edt / 0.08))) * (1.0 + 0.06 * smooth_field_2d(rng, n, 5))
    atten += 0.05 * soft(heart, 0.02) * (1.0 - soft_lungs) + 0.04 * soft(knob, 0.02)
    atten += draw_airways_and_bubble(rng, f, info)
    atten += draw_vessels(rng, f, right, left) * soft_lungs
    atten += draw_bones(rng, f, width, shoulder_y, info)
    atten -= air
    opacity = draw_pathology(rng_path, category, f, right, left, edt, info)
    atten += ndimage.gaussian_filter(opacity, 1.0 * n / DEFAULT_SIZE) * air
    image = film(rng_noise, atten)
    burn_in(rng_view, image, lungs)
    return image, (lungs * 255).astype(np.uint8)


def _free(lungs: np.ndarray, rows: slice, cols: slice) -> bool:
    """True when the box holds no lung pixel (with a margin of a few pixels)."""
    margin = max(1, lungs.shape[0] // 64)
    r0, r1 = max(rows.start - margin, 0), rows.stop + margin
    c0, c1 = max(cols.start - margin, 0), cols.stop + margin
    return not lungs[r0:r1, c0:c1].any()


def burn_in(rng: np.random.Generator, image: np.ndarray, lungs: np.ndarray) -> None:
    """Draw, in place and outside the lungs, what radiographs carry besides anatomy: a side marker (a bright
    letter-like glyph), a white label with dark text strokes, and a collimator or film edge (a bright or black
    band along one side). Each appears with its own probability; none touches the lung mask."""
    n = image.shape[0]
    if rng.random() < 0.6:  # side marker "L"/"R": a bright glyph near a top corner
        h, w = int(n * rng.uniform(0.04, 0.07)), int(n * rng.uniform(0.03, 0.05))
        r, c = int(n * rng.uniform(0.02, 0.12)), int(rng.choice([n * 0.03, n * 0.9]))
        rows, cols = slice(r, r + h), slice(c, c + w)
        if _free(lungs, rows, cols):
            glyph = np.zeros((h, w), dtype=bool)
            stroke = max(1, w // 4)
            glyph[:, :stroke] = True  # an "L": the stem and the foot
            glyph[-stroke:, :] = True
            image[rows, cols][glyph] = np.uint8(rng.integers(220, 256))
    if rng.random() < 0.4:  # a white label with dark text strokes ("PA ERECT", a date)
        h, w = int(n * rng.uniform(0.04, 0.08)), int(n * rng.uniform(0.12, 0.25))
        r = int(rng.choice([n * 0.02, n * 0.9]))
        c = int(rng.uniform(0.02, 0.98) * (n - w))
        rows, cols = slice(r, min(r + h, n)), slice(c, c + w)
        if _free(lungs, rows, cols):
            box = image[rows, cols]
            box[...] = np.uint8(rng.integers(200, 256))
            for x in range(1, box.shape[1] - 1, 3):  # character strokes
                top, bottom = sorted(rng.integers(1, max(box.shape[0] - 1, 2), 2))
                box[top : bottom + 1, x] = np.uint8(rng.integers(0, 60))
    if rng.random() < 0.25:  # a collimator or film edge along one side: bright (film) or black (detector)
        width = max(1, int(n * rng.uniform(0.01, 0.05)))
        side = int(rng.integers(4))
        band = [(slice(0, width), slice(0, n)), (slice(n - width, n), slice(0, n)),
                (slice(0, n), slice(0, width)), (slice(0, n), slice(n - width, n))][side]  # fmt: skip
        if _free(lungs, *band):
            image[band] = np.uint8(rng.integers(225, 256) if rng.random() < 0.5 else rng.integers(0, 15))


# ---------------------------------------------------------------------------------------------------------------
# writing a COVID-19 Radiography Database style folder
# ---------------------------------------------------------------------------------------------------------------
def _image_seed(seed: int, category: str, index: int) -> int:
    """Independent, reproducible seed of image ``index`` of ``category``, whatever other classes are written."""
    state = np.random.SeedSequence([int(seed), CATEGORIES.index(category), int(index)]).generate_state(1)
    return int(state[0])


def _save_png(array: np.ndarray, path: Path) -> None:
    """Write a 2D uint8 array as an 8-bit grayscale PNG, atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG"))


def _dataset_is_complete(out_dir: Path, params: dict) -> bool:
    """True when ``out_dir/phantom.json`` was written with ``params`` and every file it lists exists."""
    try:
        with open(out_dir / "phantom.json", encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("params") != params:
        return False
    images = record.get("images")
    expected = params["num_per_class"] * len(params["classes"])
    if not isinstance(images, list) or len(images) != expected:
        return False
    for item in images:
        if not isinstance(item, dict):
            return False
        for key in ("image", "mask"):
            p = out_dir / str(item.get(key, ""))
            if not p.is_file() or p.stat().st_size == 0:
                return False
    return True


def write_chest_xray_phantom_dataset(
    out_dir: str | os.PathLike,
    num_per_class: int = 24,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    classes: Sequence[str] = CATEGORIES,
) -> Path:
    """Write ``num_per_class`` phantoms of each class in the layout of the COVID-19 Radiography Database.

    Layout: ``<class>/images/<class>-<i>.png`` (8-bit grayscale) and ``<class>/masks/<class>-<i>.png`` (lung
    mask, 0/255, same name), ``i`` from 1, then ``phantom.json``: the generator parameters and the file list.
    Every file is written to a temporary name and renamed, and ``phantom.json`` is written last, so an interrupted
    run never looks complete. Image ``i`` of a class has a seed derived from ``(seed, class, i)``, so it does not
    depend on ``num_per_class`` or on the other classes.

    Idempotent: when ``phantom.json`` records the same parameters and all its files exist, nothing is rewritten.

    Args:
        out_dir: folder to create or complete (e.g. ``data/COVID-19_Radiography_phantom``).
        num_per_class: images per class, at least 1.
        seed: base seed of the dataset.
        size: image width and height in pixels (at least 32).
        classes: the classes to write, a subset of ``CATEGORIES``.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: if ``num_per_class`` < 1, ``size`` < 32, or a class is unknown or repeated.
    """
    if int(num_per_class) < 1:
        raise ValueError(f"{out_dir}: num_per_class must be at least 1, got {num_per_class}")
    if int(size) < 32:
        raise ValueError(f"{out_dir}: chest X-ray phantom size must be at least 32 pixels, got {size}")
    classes = [str(c) for c in classes]
    unknown = [c for c in classes if c not in CATEGORIES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"{out_dir}: classes must be distinct names from {list(CATEGORIES)}; got {classes}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    out_dir = Path(out_dir)
    params = {"seed": int(seed), "size": int(size), "num_per_class": int(num_per_class), "classes": classes}
    params["generator_version"] = GENERATOR_VERSION
    if _dataset_is_complete(out_dir, params):
        logger.info("chest X-ray phantom dataset %s is already complete; nothing to do", out_dir)
        return out_dir
    images = []
    for category in classes:
        for i in range(1, int(num_per_class) + 1):
            name = f"{category}-{i}.png"
            image, mask = make_chest_xray_phantom(_image_seed(seed, category, i), category, size=int(size))
            _save_png(image, out_dir / category / "images" / name)
            _save_png(mask, out_dir / category / "masks" / name)
            images.append({"image": f"{category}/images/{name}", "mask": f"{category}/masks/{name}", "class": category})
        logger.info("wrote %d %s phantom radiographs", num_per_class, category)
    record = {
        "name": "COVID-19 Radiography Database phantom",
        "description": "Synthetic frontal chest radiographs with lung masks (seeded, generated by "
        "pipelines.phantoms.chest_xray), laid out like the COVID-19 Radiography Database. Not patient data.",
        "reference": "pipelines/phantoms/chest_xray.py",
        "licence": "CC0 (synthetic data)",
        "modality": "CXR",
        "classes": classes,
        "numImages": len(images),
        "images": images,
        "params": params,
    }
    write_json_atomic(record, out_dir / "phantom.json")
    logger.info("chest X-ray phantom dataset written to %s (%d images)", out_dir, len(images))
    return out_dir


def write_default_dataset(out_dir: str | os.PathLike, num_cases: int = 24, seed: int = 0) -> Path:
    """The chest X-ray workflow's default data (the registry's generator signature): ``num_cases`` images per class.

    See :func:`write_chest_xray_phantom_dataset`.
    """
    return write_chest_xray_phantom_dataset(out_dir, num_per_class=num_cases, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pipelines.phantoms.chest_xray --out DIR --num-per-class N --seed S``."""
    parser = phantom_parser(
        "chest_xray",
        __doc__,
        "folder to write (COVID-19 Radiography Database layout)",
        "--num-per-class",
        24,
        "images per class",
    )
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"image size in pixels (default {DEFAULT_SIZE})")
    parser.add_argument("--classes", nargs="+", default=list(CATEGORIES), choices=CATEGORIES, help="classes to write")
    args = parser.parse_args(argv)
    return run_writer(
        lambda: write_chest_xray_phantom_dataset(args.out, args.num_per_class, args.seed, args.size, args.classes),
        logger,
    )


if __name__ == "__main__":
    raise SystemExit(main())
