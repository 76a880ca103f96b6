"""The driver every datalist builder shares: its split and output options, the common build and the command line.

A dataset module keeps what is specific to it: a ``find_*_cases(root, ...)`` that reads the dataset's native
layout, the header of its datalist, its module docstring (whose first line describes the command) and any
options of its own. The rest is here:

* :class:`BuildOptions`: the keyword options of every ``build_*_datalist`` (output, fractions, seed, checks),
  with their defaults, checked when made.
* :func:`build_from_cases`: options checked, cases found, then :func:`data_manifests.splits.build_datalist`.
* :func:`run_command_line`: ``python -m data_manifests.<name> --root DIR [options] --output FILE.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from data_manifests.splits import (
    _check_fractions,
    add_common_arguments,
    build_datalist,
    common_kwargs,
    configure_logging,
)

__all__ = ["BuildOptions", "Option", "build_from_cases", "run_command_line"]

#: What a dataset's case finder gives: the datalist entries (sorted) and the datalist header.
Found = tuple[Sequence[Mapping[str, Any]], Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """The keyword options every ``build_*_datalist`` takes; the fractions are checked when it is made.

    Attributes:
        output_path: JSON file to write (atomically); ``None`` only returns the datalist.
        val_fraction: fraction of patients (cases, images) for validation.
        test_fraction: fraction of patients (cases, images) for test.
        seed: seed of the shuffle.
        validate: read and check every file (see each builder for what is checked).
        relative_to: folder the written paths are relative to (only with ``output_path``; default its folder).
        slice_counts: read every label to count positive / negative slices (images) per section.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.
    """

    output_path: str | os.PathLike | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    seed: int = 0
    validate: bool = True
    relative_to: str | os.PathLike | None = None
    slice_counts: bool = True

    def __post_init__(self) -> None:
        _check_fractions(self.val_fraction, self.test_fraction)


def build_from_cases(root: str | os.PathLike, find: Callable[[str | os.PathLike], Found], **options: Any) -> dict:
    """Check the options, find the cases, then split, check, count and write them with ``build_datalist``.

    The options are checked before ``find`` runs, so that bad fractions fail before any file is read or written.

    Args:
        root: the dataset folder, named by errors and recorded as the datalist's ``source``.
        find: finds the cases under ``root``: returns the entries ``{"image", "label", "patient", ...}`` and the header
            (``name``, ``description`` and dataset keys, see :func:`data_manifests.splits.build_datalist`).
        **options: the fields of :class:`BuildOptions`.

    Returns:
        The datalist of :func:`data_manifests.splits.build_datalist`.

    Raises:
        TypeError: an unknown option.
        ValueError: invalid fractions; whatever ``find`` and ``build_datalist`` raise (``DataError``).
    """
    opts = BuildOptions(**options)
    entries, header = find(root)
    return build_datalist(entries, header, source=root, **dataclasses.asdict(opts))


class Option:
    """A dataset-specific command-line option: the arguments of ``ArgumentParser.add_argument``.

    Its ``dest`` (``--mask-kind`` -> ``mask_kind``) must be the name of the builder's keyword argument.

    Args:
        *flags: the option strings (``"--mask-kind"``).
        **kwargs: the other arguments of ``add_argument`` (``help``, ``default``, ``choices``, ...).
    """

    def __init__(self, *flags: str, **kwargs: Any) -> None:
        self.flags = flags
        self.kwargs = kwargs


def run_command_line(
    argv: Sequence[str] | None,
    *,
    module: str,
    doc: str,
    build: Callable[..., dict],
    source: Option,
    options: Sequence[Option] = (),
    logger: logging.Logger,
    errors: type[Exception] | tuple[type[Exception], ...] = ValueError,
    on_success: Callable[[dict, argparse.Namespace], None] | None = None,
) -> int:
    """Parse ``argv``, call ``build(source, **dataset options, **common options)`` and return the exit status.

    The options are, in this order, ``source`` (the dataset folder, passed first), the dataset's ``options``
    and those of :func:`data_manifests.splits.add_common_arguments`. Logging goes to stderr
    (:func:`data_manifests.splits.configure_logging`); an error of type ``errors`` is logged on ``logger`` and
    gives 1, without a traceback.

    Args:
        argv: the arguments; ``None`` reads ``sys.argv``.
        module: the module run with ``python -m`` (``data_manifests.brats``), for the usage line.
        doc: the module docstring: its first line is the command's description.
        build: the dataset's ``build_*_datalist``.
        source: the option naming the dataset folder (``--root``, ``--task-dir``), required.
        options: the dataset's own options.
        logger: the logger of the dataset module.
        errors: the exceptions reported as a failed build (exit status 1).
        on_success: called with the datalist and the parsed arguments after a successful build.

    Returns:
        0 on success, 1 when the build raised one of ``errors``; argparse exits with 2 on bad arguments.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    source_dest = parser.add_argument(*source.flags, required=True, **source.kwargs).dest
    dests = [parser.add_argument(*o.flags, **o.kwargs).dest for o in options]
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        datalist = build(getattr(args, source_dest), **{d: getattr(args, d) for d in dests}, **common_kwargs(args))
    except errors as exc:
        logger.error("%s", exc)
        return 1
    if on_success is not None:
        on_success(datalist, args)
    return 0
