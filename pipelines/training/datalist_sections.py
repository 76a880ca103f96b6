"""Optional sections of a MONAI datalist: read them when the datalist has them, nothing when it does not."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from monai.data import load_decathlon_datalist

from pipelines.validation.checks import read_datalist_json

__all__ = ["optional_section", "present_sections"]


def optional_section(
    datalist_path: str | os.PathLike, section: str | None, base_dir: str | os.PathLike | None = None
) -> list[dict]:
    """The entries of ``section`` of the datalist, with paths resolved as ``monai.data.load_decathlon_datalist``
    resolves them; ``[]`` when ``section`` is empty or the datalist has no such section.

    The slice gate's training uses it for ``negatives``: scans without the target (head CTs for the liver) whose
    slices are all negative, listed apart from ``training`` so that the segmenter does not train on them.
    """
    if not section or section not in read_datalist_json(datalist_path):
        return []
    base = Path(base_dir) if base_dir is not None else None
    return load_decathlon_datalist(str(datalist_path), True, section, base)


def present_sections(datalist_path: str | os.PathLike, sections: Iterable[str | None]) -> tuple[str, ...]:
    """Those of ``sections`` the datalist has, in order (for :func:`pipelines.validation.checks.validate_datalist`)."""
    data = read_datalist_json(datalist_path)
    return tuple(s for s in sections if s and s in data)
