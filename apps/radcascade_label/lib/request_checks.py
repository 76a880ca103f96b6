"""Checks of what a MONAI Label client sends: each problem becomes one line, the reason of an HTTP 4xx.

Nothing here imports MONAI Label (the app turns a :class:`RequestProblem` into FastAPI's ``HTTPException``), so
these checks run, and are tested, in the project's main environment too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_volume, count_channels
from pipelines.xray.radiograph_reader import is_radiograph_file, read_radiograph

__all__ = [
    "RequestProblem",
    "check_uploaded_image",
    "check_image_for_model",
    "check_radiograph_for_model",
    "check_model_name",
]

# HTTP status codes of the problems
NOT_FOUND = 404
UNSUPPORTED_MEDIA = 415  # the upload is no image any reader here opens
UNPROCESSABLE = 422  # an image, but not one the model can segment


class RequestProblem(Exception):
    """A request the server refuses: ``status`` is the HTTP status, ``reason`` the one-line answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_model_name(model: str | None, served: Iterable[str]) -> None:
    """Refuse a model this server does not serve (404), naming the ones it does."""
    served = sorted(served)
    if model not in served:
        listed = ", ".join(served)
        raise RequestProblem(NOT_FOUND, f"no model {model!r} on this server; it serves {listed} (GET /info/)")


def _channels_of(path: str, shown: str) -> int:
    try:
        return count_channels(path)
    except ValueError:
        raise RequestProblem(
            UNSUPPORTED_MEDIA,
            f"{shown}: not an image this server reads (NIfTI .nii/.nii.gz, NRRD, MetaImage .mha/.mhd, DICOM)",
        ) from None


def _first_problem(problems: list[str], path: str, shown: str) -> str:
    return problems[0].replace(path, shown, 1)


def _radiograph_problem(path: str, shown: str, allow_lateral: bool) -> RequestProblem | None:
    """The project's radiograph reader on ``path``: None when it reads a frontal grey radiograph, else the problem:
    415 for a file that is no image, 422 for an image it refuses (colour, lateral view, blank, another modality)."""
    try:
        read_radiograph(path, allow_lateral=allow_lateral)
    except DataError as error:
        reason = "; ".join(error.problems).replace(path, shown)
        unreadable = "cannot be read" in reason or "file is empty" in reason
        return RequestProblem(UNSUPPORTED_MEDIA if unreadable else UNPROCESSABLE, reason)
    return None


def check_uploaded_image(path: str | os.PathLike, shown: str, radiographs: bool = False) -> None:
    """Refuse an upload that is no readable 3D or 4D (multi-sequence) image: not an image at all (415), or
    truncated, NaN-filled or of another dimension (422). ``shown`` names the upload in the reason (its id).

    With ``radiographs`` (a server that serves the chest X-ray workflow), a PNG, JPEG, TIFF or single DICOM file
    is taken when the radiograph reader reads it (lateral views included: the model refuses them, with a reason)."""
    path = str(path)
    if radiographs and is_radiograph_file(path):  # by suffix or DICM preamble: never a NIfTI, NRRD or MetaImage
        problem = _radiograph_problem(path, shown, allow_lateral=True)
        if problem is not None:
            raise problem
        return
    channels = _channels_of(path, shown)
    problems = check_volume(path, expect_ndim=3 if channels == 1 else 4, check_intensity=True)
    if problems:
        raise RequestProblem(UNPROCESSABLE, _first_problem(problems, path, shown))


def check_image_for_model(path: str | os.PathLike, model: str, in_channels: int, modality: str | None) -> None:
    """Refuse an image that ``model`` cannot segment (422): the wrong number of channels, or contents that are not
    an image of ``modality`` (a blank volume without a body; for CT, values that are not Hounsfield units).

    Raises:
        RequestProblem: 404 when ``path`` does not exist, 415 when it is no image, 422 as above.
    """
    path = str(path)
    shown = os.path.basename(path.rstrip(os.sep)) or path
    if not os.path.exists(path):
        raise RequestProblem(NOT_FOUND, f"{model}: image {shown!r} not found")
    channels = _channels_of(path, shown)
    if channels != in_channels:
        raise RequestProblem(UNPROCESSABLE, f"{model} takes {in_channels}-channel images, {shown} has {channels}")
    problems = check_volume(path, expect_ndim=3 if in_channels == 1 else 4, check_intensity=True, modality=modality)
    if problems:
        raise RequestProblem(UNPROCESSABLE, f"{model}: {_first_problem(problems, path, shown)}")


def check_radiograph_for_model(path: str | os.PathLike, model: str, allow_lateral: bool = False) -> None:
    """Refuse an image that the radiograph model ``model`` cannot segment: 404 when ``path`` does not exist, 415
    when it is no image, 422 for a volume (CT, MRI: a 3D model's input), a colour photograph, a lateral view, a
    blank image or a DICOM of another modality; the reason names the file and the problem."""
    path = str(path)
    shown = os.path.basename(path.rstrip(os.sep)) or path
    if not os.path.exists(path):
        raise RequestProblem(NOT_FOUND, f"{model}: image {shown!r} not found")
    if not is_radiograph_file(path):
        raise RequestProblem(
            UNPROCESSABLE,
            f"{model} segments radiographs (PNG, JPEG, TIFF, DICOM CR/DX), {shown} is not one: send volumes to the "
            "3D models",
        )
    problem = _radiograph_problem(path, shown, allow_lateral)
    if problem is not None:
        raise RequestProblem(problem.status, f"{model}: {problem.reason}")
