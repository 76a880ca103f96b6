"""The error type of the data checks, the datalist sections they read, and the short text of a reader's error.

:mod:`pipelines.validation.checks` and :mod:`pipelines.validation.path_safety` both raise :class:`DataError`;
it lives here so that neither imports the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["DEFAULT_KEYS", "DataError", "find_data_error", "short_error"]

DEFAULT_KEYS = ("training", "validation", "test")
_MAX_REASON = 160


class DataError(ValueError):
    """One or more problems with input data; each problem is a line that names the file it concerns.

    Args:
        problems: the problems, or a single problem as a string.

    Attributes:
        problems: list of problem strings, in the order they were found.
    """

    def __init__(self, problems: Sequence[str] | str):
        self.problems = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        n = len(self.problems)
        head = f"{n} data problem{'s' if n != 1 else ''} found:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))

    def __reduce__(self):
        return (self.__class__, (self.problems,))


def find_data_error(error: BaseException | None) -> DataError | None:
    """The :class:`DataError` behind ``error``, following ``__cause__``/``__context__`` (MONAI's config parser
    wraps the errors of a failing expression in ``RuntimeError``); None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, DataError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def short_error(exc: BaseException) -> str:
    """One-line, bounded description of an exception from an image reader.

    Args:
        exc: the exception.

    Returns:
        ``"<type>: <message>"`` on one line, without ITK's source-file preamble, at most about 160 characters.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    itk_error = re.search(r"itk::ERROR: \w+\(0x[0-9a-fA-F]+\): (.*)", text)  # drop ITK's source-file preamble
    if itk_error:
        text = itk_error.group(1)
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}"
