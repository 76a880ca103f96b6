"""Paths read from datalists stay inside the dataset root unless the user allows otherwise.

A datalist is data, often shipped with a downloaded dataset: an entry such as ``../../home/user/.ssh/id_rsa`` or
``/etc/passwd`` must not make a pipeline read (and later log, cache or copy) a file outside the dataset folder.
Every path is checked twice: as written (``..`` resolved without touching the disk) and with symbolic links
followed, so a link inside the dataset that points elsewhere is refused too::

    resolve_inside("data/Task03_Liver", "imagesTr/liver_0.nii.gz")     # data/Task03_Liver/imagesTr/... (absolute)
    resolve_inside("data/Task03_Liver", "../secret.nii.gz")            # DataError naming the entry
    resolve_inside("data/Task03_Liver", "/scans/ct.nii.gz", allow_outside=True)   # the user allowed it
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.validation.errors import DEFAULT_KEYS, DataError

__all__ = ["as_bool", "resolve_inside", "is_inside", "check_datalist_paths"]

_HINT = "set allow_outside_root=true if this is intended"


def as_bool(value: Any, name: str = "value") -> bool:
    """A config flag, request field or ``--conf`` value as a bool. ``python -m monai.bundle run --dicom_seg false``
    passes the *string* ``"false"`` (fire parses only ``True``/``False``), which plain ``bool()`` would take for
    true; MONAI Label's requests and ``--conf`` pass strings too.

    Raises:
        ValueError: for anything but a bool, 0/1, or true/false, yes/no, on/off, 1/0 in any case.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when absolute, normalised ``path`` is ``root`` or lies below it (no file system access)."""
    try:
        return os.path.commonpath([os.fspath(path), os.fspath(root)]) == os.fspath(root)
    except ValueError:  # different drives (Windows), or a mix of absolute and relative paths
        return False


def resolve_inside(
    base_dir: str | os.PathLike,
    path: str | os.PathLike,
    allow_outside: bool = False,
    entry: str | None = None,
) -> Path:
    """The absolute path of a datalist path, checked to lie inside ``base_dir``.

    Relative paths start at ``base_dir`` (as ``monai.data.load_decathlon_datalist`` joins them); absolute paths
    are taken as they are and must lie inside ``base_dir`` too.

    Args:
        base_dir: the dataset root.
        path: the path as written in the datalist.
        allow_outside: skip the check (the path is still made absolute and normalised).
        entry: where the path was found, for the message (``"datalist.json: training[3]"``).

    Returns:
        The absolute, normalised path (symbolic links not followed).

    Raises:
        DataError: naming the entry and the path, when it is not a path, or lies outside ``base_dir`` as written
            or once symbolic links are followed.
    """
    where = f"{entry}: " if entry else ""
    allow_outside = as_bool(allow_outside, "allow_outside_root")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise DataError(f"{where}{path!r} is not a file path")
    try:
        root = os.path.abspath(base_dir)
        resolved = os.path.abspath(os.path.join(root, os.fspath(path)))
        if allow_outside:
            return Path(resolved)
        real_root = os.path.realpath(root)
        real = os.path.realpath(resolved)
    except (TypeError, ValueError) as err:  # embedded NUL byte, bytes path...
        raise DataError(f"{where}{os.fspath(path)!r} is not a usable file path ({err})") from None
    if not is_inside(resolved, root):
        raise DataError(f"{where}{os.fspath(path)} lies outside the dataset root {root} ({_HINT})")
    if not is_inside(real, real_root):
        raise DataError(
            f"{where}{os.fspath(path)} leads outside the dataset root {root} through a symbolic link "
            f"(to {real}; {_HINT})"
        )
    return Path(resolved)


def _paths(value: Any) -> list[Any]:
    """The path(s) of an ``image``/``label`` value: a string, or a list of them (multi-sequence MRI)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_datalist_paths(
    datalist: str | os.PathLike | Mapping,
    base_dir: str | os.PathLike | None = None,
    keys: Sequence[str] = DEFAULT_KEYS,
    allow_outside: bool = False,
) -> None:
    """Check that every ``image`` and ``label`` path of a datalist lies inside the dataset root.

    A datalist that cannot be read, entries that are not dicts, sections that are missing and files that do
    not exist are left to :func:`pipelines.validation.checks.validate_datalist`; this check only reports paths that
    escape.

    Args:
        datalist: path of the JSON datalist, or the datalist already loaded.
        base_dir: the dataset root; default: the datalist's folder (the current folder for a dict), as
            ``load_decathlon_datalist`` does.
        keys: sections to check (a missing one is skipped).
        allow_outside: accept any path (then nothing is checked).

    Raises:
        DataError: listing every entry whose path escapes the root.
    """
    if as_bool(allow_outside, "allow_outside_root"):
        return
    if isinstance(datalist, Mapping):
        data, name, folder = dict(datalist), "datalist", Path.cwd()
    else:
        try:
            with open(datalist, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return  # a missing or broken datalist is validate_datalist's to report
        name, folder = str(datalist), Path(datalist).parent
    root = Path(base_dir) if base_dir is not None else folder
    problems = []
    for key in (keys,) if isinstance(keys, str) else keys:
        section = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(section, list):
            continue
        for i, item in enumerate(section):
            item = {"image": item} if isinstance(item, str) else item
            if not isinstance(item, Mapping):
                continue
            for role in ("image", "label"):
                for path in _paths(item.get(role)) if role in item else []:
                    if not isinstance(path, (str, os.PathLike)):
                        continue  # validate_datalist reports values that are not paths
                    try:
                        resolve_inside(root, path, entry=f"{name}: {key}[{i}] {role}")
                    except DataError as err:
                        problems += err.problems
    if problems:
        raise DataError(problems)
