"""Reading radiographs for the chest X-ray workflow: PNG, JPEG, TIFF of any bit depth and DICOM CR/DX/secondary
capture, as one grey channel, refused with a :class:`~pipelines.validation.errors.DataError` naming the file when
the file is not a frontal grey radiograph.

* :func:`read_radiograph`: one file to ``(rows, columns)`` float32 grey levels and a small meta dict;
* :class:`RadiographReader`: MONAI's ``ImageReader`` over it, for ``LoadImaged(reader=...)``; it gives the same
  layout as ``PILReader`` (spatial shape ``(width, height)``, the transposed numpy image), so that masks,
  ``Invertd`` and the PNG writer work as before, and DICOM pixel spacing in the affine;
* :func:`is_dicom_file`, :func:`is_radiograph_file` and :func:`radiograph_header_problems` (the cheap checks).

DICOM grey levels follow the display chain of PS3.4 N.2: stored values, then the Modality LUT (Rescale
Slope/Intercept or Modality LUT Sequence), then the VOI LUT (VOI LUT Sequence, else Window Center/Width; the first
view when there are several), through pydicom's ``apply_modality_lut`` / ``apply_voi_lut``; MONOCHROME1 is then
inverted within its own range, so that lungs are dark and bone bright as in MONOCHROME2. Compressed transfer syntaxes
are decoded by pydicom's handlers: Pillow (JPEG baseline, JPEG 2000), pyjpegls (JPEG-LS), GDCM (``python-gdcm``:
JPEG lossless, the common CR/DX one) and pydicom itself (RLE, deflate).

What is refused, and why:

* a colour image: more than ``max_colour_fraction`` (5 %) of its pixels have channels differing by more than
  ``colour_tolerance`` (10 %) of the range. A grey radiograph saved as RGB (equal channels, or JPEG's small chroma
  noise) or with a coloured marker burnt in is read as grey (ITU-R 601 luma);
* a DICOM whose modality is not a projection radiograph (CT, MR, US...; :data:`RADIOGRAPH_MODALITIES` lists the
  accepted ones), with several frames, without pixel data, or a lateral view (View Position LL/RL/LATERAL, or a
  View Code "lateral" that is not "decubitus"): the segmenter and the classifier learned frontal (PA/AP) views.
  A PNG cannot say which view it is;
* a blank image (one grey level), a multi-page TIFF.

Bit depth is kept, never stretched: a 16-bit PNG whose values all lie in 0..255 (an 8-bit image in a 16-bit
container) or in 0..4095 (12-bit detector data) is read as it is, since the workflow rescales and z-scores every
radiograph on its own; the meta records the bits actually used (``bits_used``).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.errors
from monai.data import ImageReader
from monai.utils import ensure_tuple
from PIL import Image

from pipelines.validation.errors import DataError, short_error

__all__ = [
    "RADIOGRAPH_SUFFIXES",
    "DICOM_SUFFIXES",
    "RADIOGRAPH_MODALITIES",
    "LATERAL_VIEWS",
    "is_dicom_file",
    "is_radiograph_file",
    "radiograph_header_problems",
    "read_radiograph",
    "RadiographReader",
]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
RADIOGRAPH_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", *DICOM_SUFFIXES)
"""File types an X-ray run reads; a DICOM file is also recognised by its ``DICM`` preamble, whatever its name."""
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG", "OT", "")
"""DICOM modalities read as radiographs: computed and digital radiography, "DR" (not a DICOM term, written by some
vendors), radiographic film (RG), and other / none (secondary captures of digitised films)."""
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL")
"""View Position values of a lateral view."""

_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "PA": "RGB"}
_COLOUR_MODES = ("RGB", "P", "CMYK", "YCbCr", "LAB", "HSV")
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
# what pydicom raises on a damaged file, also later: it parses each value when it is first read
_DICOM_ERRORS = (
    *_READ_ERRORS,
    AttributeError,
    KeyError,
    TypeError,
    IndexError,
    NotImplementedError,
    struct.error,
    pydicom.errors.InvalidDicomError,
    pydicom.errors.BytesLengthException,
)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM Part 10 preamble (``DICM`` at byte 128), whatever its name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_radiograph_file(path: str | os.PathLike) -> bool:
    """Whether an X-ray run reads ``path``: a :data:`RADIOGRAPH_SUFFIXES` name, or a DICOM file (``DICOMDIR``, an
    index without pixels, excepted)."""
    path = Path(path)
    if path.suffix.lower() in RADIOGRAPH_SUFFIXES:
        return True
    return path.name.upper() != "DICOMDIR" and path.is_file() and is_dicom_file(path)


def _is_dicom_path(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


# ---------------------------------------------------------------------------------------------------- DICOM


def _open_dicom(path: Path, header_only: bool):
    try:
        # header only: large values (the pixel data) are left unread, but their presence is known
        return pydicom.dcmread(path, defer_size="4 KB" if header_only else None)
    except _DICOM_ERRORS as error:
        raise DataError(f"{path}: cannot be read as DICOM: {short_error(error)}") from error


def _view_is_lateral(ds) -> str | None:
    """The lateral view ``ds`` declares (its View Position or View Code), or None."""
    position = str(ds.get("ViewPosition", "") or "").strip().upper()
    if position in LATERAL_VIEWS:
        return f"View Position {position}"
    for item in ds.get("ViewCodeSequence", None) or []:
        meaning = str(item.get("CodeMeaning", "")).lower()
        if "lateral" in meaning and "decubitus" not in meaning and "oblique" not in meaning:
            return f"View Code {meaning!r}"
    return None


def _dicom_problems(path: Path, ds, *, is_mask: bool, allow_lateral: bool) -> list[str]:
    """Problems of a DICOM header: no pixel data, not a radiograph's modality, several frames, lateral view..."""
    sop = ds.get("SOPClassUID", None)
    kind = getattr(sop, "name", None) or str(sop or "no SOP class")
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return [f"{path}: DICOM has no pixel data ({kind})"]
    problems = []
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not is_mask and modality not in RADIOGRAPH_MODALITIES:
        accepted = ", ".join(m for m in RADIOGRAPH_MODALITIES if m)
        problems.append(
            f"{path}: DICOM modality {modality} ({kind}) is not a projection radiograph "
            f"(this workflow reads {accepted})"
        )
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        frames = 1  # an unreadable count: decoding tells
    if frames > 1:
        problems.append(f"{path}: DICOM has {frames} frames; a radiograph is a single 2D frame")
    rows, columns = ds.get("Rows", 0) or 0, ds.get("Columns", 0) or 0
    if not rows or not columns:
        problems.append(f"{path}: DICOM image has a zero-sized side ({columns} x {rows} pixels)")
    samples = ds.get("SamplesPerPixel", 1)
    if samples not in (1, 3):
        problems.append(f"{path}: DICOM has {samples} samples per pixel (1 grey or 3 colour expected)")
    lateral = None if is_mask or allow_lateral else _view_is_lateral(ds)
    if lateral:
        problems.append(f"{path}: a lateral view ({lateral}); the chest X-ray models read frontal (PA/AP) views")
    return problems


def _dicom_spacing(ds) -> tuple[tuple[float, float], str]:
    """``(column spacing, row spacing)`` in mm (width axis first, as the reader's layout) and the attribute used."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = ds.get(keyword, None)
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and column > 0 and np.isfinite(row) and np.isfinite(column):
            return (column, row), keyword
    return (1.0, 1.0), ""


def _decode_dicom(path: Path, ds) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom's handlers raise many types; the message names the file
        file_meta = getattr(ds, "file_meta", None)
        syntax = file_meta.get("TransferSyntaxUID", None) if file_meta is not None else None
        hint = ""
        if syntax is not None and syntax.is_compressed:
            try:
                from pydicom.pixels import get_decoder  # pydicom 3
            except ImportError:  # pydicom 2 (the MONAI Label environment): its error message says it already
                get_decoder = None
            try:
                decoder = get_decoder(syntax) if get_decoder is not None else None
            except NotImplementedError:
                decoder = None
            if get_decoder is not None and (decoder is None or not decoder.is_available):
                missing = "; ".join(decoder.missing_dependencies) if decoder is not None else "no decoder in pydicom"
                hint = f" (no decoder installed: {missing})"
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise DataError(f"{path}: cannot decode its DICOM pixel data ({name}){hint}: {short_error(error)}") from error


def _read_dicom(path: Path, *, is_mask: bool, allow_lateral: bool, **colour: float):
    ds = _open_dicom(path, header_only=False)
    try:
        return _dicom_grey_levels(path, ds, is_mask=is_mask, allow_lateral=allow_lateral, **colour)
    except _DICOM_ERRORS as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: damaged DICOM: {short_error(error)}") from error


def _lut_functions():
    """pydicom's ``apply_color_lut``, ``apply_modality_lut`` and ``apply_voi_lut``: in ``pydicom.pixels`` since
    pydicom 3, in ``pydicom.pixel_data_handlers.util`` before (pydicom 2.4, which MONAI Label's environment pins)."""
    try:
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut, apply_voi_lut
    return apply_color_lut, apply_modality_lut, apply_voi_lut


def _dicom_grey_levels(path: Path, ds, *, is_mask: bool, allow_lateral: bool, **colour: float):
    apply_color_lut, apply_modality_lut, apply_voi_lut = _lut_functions()

    problems = _dicom_problems(path, ds, is_mask=is_mask, allow_lateral=allow_lateral)
    if problems:
        raise DataError(problems[0])  # the first is the most basic (no pixels, then modality); checks list all
    stored = _decode_dicom(path, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if not (stored.ndim == 2 or (stored.ndim == 3 and stored.shape[-1] == 3)):
        raise DataError(f"{path}: DICOM pixel data has shape {stored.shape}, not one 2D image")
    if photometric == "PALETTE COLOR":
        stored = apply_color_lut(stored, ds)
    if stored.ndim == 3:  # RGB (pydicom converts YBR to RGB): grey when its channels agree
        pixels = _fold_colour(path, stored, is_mask=is_mask, **colour)
    elif is_mask:
        pixels = stored.astype(np.float32)
    else:
        pixels = apply_modality_lut(stored, ds)
        try:
            pixels = apply_voi_lut(pixels, ds, index=0)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
            logger.warning("%s: VOI LUT ignored, it cannot be applied: %s", path, short_error(error))
        shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
        if photometric == "MONOCHROME1" or (photometric == "MONOCHROME2" and shape == "INVERSE"):
            pixels = pixels.min() + pixels.max() - pixels.astype(np.float64)  # within its own range
    spacing, spacing_from = _dicom_spacing(ds)
    meta = {
        "format": "DICOM",
        "mode": photometric,
        "modality": str(ds.get("Modality", "") or ""),
        "view_position": str(ds.get("ViewPosition", "") or ""),
        "spacing_source": spacing_from,
        "bits_used": int(ds.get("BitsStored", 0) or 0),
    }
    return pixels, spacing, meta


# ------------------------------------------------------------------------------------------ PNG / JPEG / TIFF


def _fold_colour(
    path: Path, rgb: np.ndarray, *, is_mask: bool, colour_tolerance: float, max_colour_fraction: float
) -> np.ndarray:
    """One grey channel (ITU-R 601-2 luma) from ``(rows, columns, 3)``; DataError when it is a colour image.
    A mask takes the largest channel instead: a lung painted red (255, 0, 0) stays 255, not a fractional luma."""
    rgb = rgb[..., :3]
    if is_mask:
        return rgb.max(axis=-1).astype(np.float32)
    if np.issubdtype(rgb.dtype, np.integer):
        scale = float(np.iinfo(rgb.dtype).max)
    else:
        scale = float(np.nanmax(rgb) - np.nanmin(rgb)) or 1.0
    wide = rgb.astype(np.float32)
    spread = wide.max(axis=-1) - wide.min(axis=-1)
    fraction = float(np.mean(spread > colour_tolerance * scale)) if spread.size else 0.0
    if fraction > max_colour_fraction:
        raise DataError(
            f"{path}: a colour image ({fraction:.0%} of its pixels coloured), not a grey radiograph "
            "(a grey radiograph saved as RGB has equal R, G and B)"
        )
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _pil_pixels(path: Path, image: Image.Image, **colour: Any) -> np.ndarray:
    mode = image.mode
    if getattr(image, "n_frames", 1) > 1:
        raise DataError(f"{path}: holds {image.n_frames} images (pages or frames); a radiograph is one 2D image")
    if mode in _ALPHA_MODES:
        image, mode = image.convert(_ALPHA_MODES[mode]), _ALPHA_MODES[mode]
    if mode in _GREY_MODES:
        return np.asarray(image)
    if mode in _COLOUR_MODES:
        rgb = np.asarray(image if mode == "RGB" else image.convert("RGB"))
        return _fold_colour(path, rgb, **colour)
    raise DataError(f"{path}: unsupported image mode {mode!r}")


def _read_tiff_fallback(path: Path, error: Exception) -> np.ndarray:
    """TIFFs Pillow cannot decode (12-bit, some compressions) through tifffile, when it is installed."""
    try:
        import tifffile
    except ImportError:
        raise DataError(f"{path}: cannot be read as an image: {short_error(error)}") from error
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) > 1:
                raise DataError(f"{path}: holds {len(tif.pages)} images (pages); a radiograph is one 2D image")
            return tif.pages[0].asarray()
    except DataError:
        raise
    except (*_READ_ERRORS, tifffile.TiffFileError) as tiff_error:
        raise DataError(f"{path}: cannot be read as an image: {short_error(error)}") from tiff_error


def _read_bitmap(path: Path, *, is_mask: bool, **colour: float):
    fmt = mode = ""
    try:
        with Image.open(path) as image:
            fmt, mode = image.format or "", image.mode
            image.load()
            pixels = _pil_pixels(path, image, is_mask=is_mask, **colour)
    except DataError:
        raise
    except _READ_ERRORS as error:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise DataError(f"{path}: cannot be read as an image: {type(error).__name__}: {error}") from error
        pixels, fmt, mode = _read_tiff_fallback(path, error), "TIFF", "tifffile"
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = _fold_colour(path, pixels, is_mask=is_mask, **colour)
    elif pixels.ndim == 3 and pixels.shape[-1] in (1, 2):
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise DataError(f"{path}: image has shape {pixels.shape}, not one 2D image")
    return pixels, (1.0, 1.0), {"format": fmt, "mode": mode, "modality": "", "view_position": "", "spacing_source": ""}


# --------------------------------------------------------------------------------------------------- checks


def _value_problems(path: Path, pixels: np.ndarray, is_mask: bool) -> list[str]:
    """Problems of the decoded grey levels: NaN/infinite, blank image; negative or fractional mask values."""
    if not pixels.size:
        return [f"{path}: has a zero-sized side (shape {pixels.shape})"]
    if np.issubdtype(pixels.dtype, np.floating):
        bad = int((~np.isfinite(pixels)).sum())
        if bad:
            return [f"{path}: has {bad} NaN or infinite pixel(s)"]
    low, high = float(pixels.min()), float(pixels.max())
    if is_mask:
        problems = []
        if np.issubdtype(pixels.dtype, np.floating) and not np.array_equal(pixels, np.round(pixels)):
            problems.append(f"{path}: mask has non-integer values")
        if low < 0:
            problems.append(f"{path}: mask has negative values (min {low:g})")
        return problems
    if low == high:
        return [f"{path}: image is blank (every pixel is {low:g})"]
    return []


def _bits_used(pixels: np.ndarray) -> int:
    """Bits the non-negative integer grey levels need (0 for floats or negative values)."""
    if not np.issubdtype(pixels.dtype, np.integer) or pixels.size == 0 or pixels.min() < 0:
        return 0
    return max(int(pixels.max()).bit_length(), 1)


def radiograph_header_problems(path: str | os.PathLike, *, is_mask: bool = False, allow_lateral: bool = False):
    """Problems found without decoding pixels (PIL mode and size, or the DICOM header); empty when none.

    The file must exist. Decoding problems (truncated files, colour images, blank images) need
    :func:`read_radiograph`.
    """
    path = Path(path)
    if _is_dicom_path(path):
        try:
            ds = _open_dicom(path, header_only=True)
            return _dicom_problems(path, ds, is_mask=is_mask, allow_lateral=allow_lateral)
        except DataError as error:
            return error.problems
        except _DICOM_ERRORS as error:
            return [f"{path}: damaged DICOM header: {short_error(error)}"]
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except _READ_ERRORS as error:
        if path.suffix.lower() in (".tif", ".tiff"):
            return []  # tifffile may read it: only decoding tells
        return [f"{path}: cannot be read as an image: {type(error).__name__}: {error}"]
    problems = []
    if mode not in _GREY_MODES + _COLOUR_MODES + tuple(_ALPHA_MODES):
        problems.append(f"{path}: unsupported image mode {mode!r}")
    if 0 in size:
        problems.append(f"{path}: has a zero-sized side (size {size})")
    return problems


def read_radiograph(
    path: str | os.PathLike,
    *,
    is_mask: bool = False,
    allow_lateral: bool = False,
    colour_tolerance: float = 0.1,
    max_colour_fraction: float = 0.05,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One radiograph (or lung mask) as ``(rows, columns)`` float32 grey levels, and its meta.

    Args:
        path: a PNG/JPEG/TIFF file or a DICOM file (by suffix or by its ``DICM`` preamble).
        is_mask: a mask: stored values as they are (no DICOM LUT, no inversion), colour folded without refusal;
            negative or fractional values are refused instead of blank images.
        allow_lateral: read DICOM lateral views too.
        colour_tolerance: channel difference, as a fraction of the value range, from which a pixel is coloured.
        max_colour_fraction: fraction of coloured pixels from which an RGB image is a colour image, refused.

    Returns:
        ``(pixels, meta)``: meta has ``format``, ``mode`` (PIL mode or Photometric Interpretation), ``modality``,
        ``view_position`` (empty for non-DICOM files), ``spacing`` (mm along columns then rows; 1 when the file
        has none), ``spacing_source`` (the DICOM attribute it came from, or empty) and ``bits_used``.

    Raises:
        DataError: naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    colour = {"colour_tolerance": colour_tolerance, "max_colour_fraction": max_colour_fraction}
    if _is_dicom_path(path):
        pixels, spacing, meta = _read_dicom(path, is_mask=is_mask, allow_lateral=allow_lateral, **colour)
    else:
        pixels, spacing, meta = _read_bitmap(path, is_mask=is_mask, **colour)
        meta["bits_used"] = _bits_used(pixels)
        if meta["bits_used"] and pixels.dtype.itemsize > 1 and not is_mask:
            logger.debug("%s: %d-bit image, %d bits used", path, 8 * pixels.dtype.itemsize, meta["bits_used"])
    problems = _value_problems(path, pixels, is_mask)
    if problems:
        raise DataError(problems)
    meta["spacing"] = spacing
    return np.asarray(pixels, dtype=np.float32), meta


class RadiographReader(ImageReader):
    """MONAI ``ImageReader`` of radiographs and lung masks (PNG, JPEG, TIFF, DICOM) through :func:`read_radiograph`.

    The array is ``(width, height)`` (the numpy image transposed, as ``PILReader`` gives it), float32, one channel
    (``ensure_channel_first`` adds it); the affine holds the DICOM pixel spacing (identity for other files), so a
    NIfTI mask written from it carries the spacing. Use it as
    ``LoadImaged(keys, reader=RadiographReader(), image_only=True, ensure_channel_first=True)``; masks take
    ``RadiographReader(is_mask=True)``.

    Args:
        is_mask: read lung masks (see :func:`read_radiograph`).
        allow_lateral: read DICOM lateral views too.
        colour_tolerance: see :func:`read_radiograph`.
        max_colour_fraction: see :func:`read_radiograph`.

    A problem with a file raises :class:`~pipelines.validation.errors.DataError` from ``get_data``, naming it.
    """

    def __init__(
        self,
        is_mask: bool = False,
        allow_lateral: bool = False,
        colour_tolerance: float = 0.1,
        max_colour_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        self.options = {
            "is_mask": is_mask,
            "allow_lateral": allow_lateral,
            "colour_tolerance": colour_tolerance,
            "max_colour_fraction": max_colour_fraction,
        }

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file is a radiograph file (:func:`is_radiograph_file`)."""
        return all(is_radiograph_file(name) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Path | list[Path]:
        """The file path(s): decoding waits for ``get_data``, so that its DataError reaches the caller as it is
        (``LoadImage`` wraps the errors of ``read`` in a RuntimeError)."""
        paths = [Path(name) for name in ensure_tuple(data)]
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: Path | Sequence[Path]) -> tuple[np.ndarray, dict]:
        """``(array, meta)`` of one file, or of several stacked as channels (same size required)."""
        arrays, metas = [], []
        for path in ensure_tuple(img):
            pixels, meta = read_radiograph(path, **self.options)
            arrays.append(pixels.T)  # (width, height), as PILReader
            metas.append(meta)
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DataError(f"{ensure_tuple(img)[0]}: files to stack differ in size: {sorted(shapes)}")
        meta = dict(metas[0])
        column_spacing, row_spacing = meta.pop("spacing")
        affine = np.diag([column_spacing, row_spacing, 1.0, 1.0])
        width, height = arrays[0].shape
        meta.update(
            {
                "affine": affine,
                "original_affine": affine.copy(),
                "spatial_shape": np.asarray((width, height)),
                "width": width,
                "height": height,
                "original_channel_dim": float("nan") if len(arrays) == 1 else 0,
            }
        )
        data = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)
        return data, meta
