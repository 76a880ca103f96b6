"""Inference over many cases that skips a bad case, says why, and goes on with the others.

Three guards, each catching what the one before cannot:

1. :func:`inference_inputs` lists the cases and checks each input before the loop (a header read per file with
   :func:`pipelines.validation.volume_checks.check_volume`: missing, empty or unreadable files, 2D instead of 3D,
   zero-sized dimensions) and, for a datalist, that its paths stay inside the dataset root; bad cases are dropped.
2. :class:`GuardedDataset` turns an error while loading or preprocessing a case (a truncated file whose header
   was fine, a failed ``CheckVolumed``) into a marked item instead of an exception.
3. :class:`RobustEvaluator` skips marked items, and catches the errors of one case's inference and
   postprocessing (prediction writing included).

Every failure goes to one :class:`FailureReport`, written atomically to ``<output_dir>/predictions/failures.json``
(``case``, ``file``, ``stage``, ``error`` per failure) and logged as a summary at the end (``finalize``);
``radcascade run <workflow> inference`` exits with status 3 when a case failed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Events
from monai.data import Dataset, MetaTensor
from monai.engines import SupervisedEvaluator

from pipelines.io.atomic import write_json_atomic
from pipelines.io.inputs import case_name, is_dicom_series_dir, list_inference_inputs
from pipelines.validation.errors import DataError, find_data_error
from pipelines.validation.path_safety import as_bool, resolve_inside
from pipelines.validation.volume_checks import check_volume, sequence_grid_problems

__all__ = [
    "FAILED_KEY",
    "SOURCE_KEY",
    "FailureReport",
    "inference_inputs",
    "checked_inputs",
    "GuardedDataset",
    "RobustEvaluator",
    "failed_cases",
    "read_ahead_worker",
]

logger = logging.getLogger(__name__)

FAILED_KEY = "inference_error"  # marks an item whose loading failed: the error message
SOURCE_KEY = "inference_source"  # the file(s) of that item
_MAX_ERROR = 400


def _files(image: Any) -> str:
    """The file(s) of an ``image`` value (a path, or a list of paths for multi-sequence MRI) as one string."""
    if isinstance(image, (list, tuple)):
        return ", ".join(str(p) for p in image)
    return str(image)


def _case(files: str) -> str:
    first = files.split(", ")[0]
    return case_name(first) if first else "?"


def describe_error(error: BaseException) -> str:
    """One bounded line for a case's error: the data problems when there are some, else the innermost error of
    the chain (MONAI wraps a transform's error in ``RuntimeError: applying transform ...``)."""
    data_error = find_data_error(error)
    if data_error is not None:
        text = "; ".join(data_error.problems)
    else:
        root = error
        seen = set()
        while id(root) not in seen and (root.__cause__ or root.__context__) is not None:
            seen.add(id(root))
            root = root.__cause__ or root.__context__
        message = " ".join(str(root).split())
        text = f"{type(root).__name__}: {message}" if message else type(root).__name__
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


class FailureReport:
    """The cases an inference run could not segment, kept in memory and in a JSON file.

    The file, rewritten atomically after every change, holds ``total`` (cases listed), ``segmented``,
    ``failed`` and ``failures``: one ``{"case", "file", "stage", "error"}`` per failed case; ``stage`` is
    ``input check``, ``loading`` or ``inference``.

    Args:
        path: the JSON file (``<output_dir>/predictions/failures.json``); None keeps the report in memory only.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.total = 0
        self.segmented: list[str] = []
        self.failures: list[dict[str, str]] = []
        self.seconds: float | None = None  # the run over the cases, start-up excluded (set by RobustEvaluator)

    def __len__(self) -> int:
        return len(self.failures)

    def start(self, total: int) -> None:
        """A new run over ``total`` cases: forget earlier results (a workflow may run twice in one process)."""
        self.total = int(total)
        self.segmented = []
        self.failures = []
        self.seconds = None
        self.write()

    def record(self, files: str, error: BaseException | str, stage: str) -> None:
        """A case failed at ``stage``; logged at once, and written to the report.

        A workflow with several stages over the same cases (the chest X-ray one segments, then classifies) shares
        one report: a case is listed once, at the first stage that failed it, and no longer counts as done.
        """
        message = error if isinstance(error, str) else describe_error(error)
        logger.error("case %s skipped (%s failed): %s", files, stage, message)
        if any(f["file"] == files for f in self.failures):
            return
        self.failures.append({"case": _case(files), "file": files, "stage": stage, "error": message})
        if files in self.segmented:
            self.segmented.remove(files)
        self.write()

    def succeeded(self, files: str) -> None:
        """A case went through (every stage of a workflow that runs several must succeed for it to count)."""
        if files not in self.segmented and not any(f["file"] == files for f in self.failures):
            self.segmented.append(files)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "segmented": len(self.segmented),
            "failed": len(self.failures),
            "failures": list(self.failures),
        }

    def write(self) -> None:
        if self.path is not None:
            write_json_atomic(self.as_dict(), self.path)

    def finish(self) -> int:
        """Write the report and log the summary; returns the number of failed cases."""
        self.write()
        where = f" (details: {self.path})" if self.path is not None else ""
        summary = f"inference: {self.total} case(s), {len(self.segmented)} segmented, {len(self.failures)} failed"
        if self.seconds and self.total:
            rate = 60.0 * (len(self.segmented) + len(self.failures)) / self.seconds
            summary += f" in {self.seconds:.1f} s after start-up ({rate:.1f} scans per minute)"
        if self.failures:
            logger.error("%s%s", summary, where)
            for failure in self.failures:
                logger.error("  %s [%s]: %s", failure["file"], failure["stage"], failure["error"])
        else:
            logger.info(summary)
        return len(self.failures)


def inference_inputs(
    input_path: str | os.PathLike,
    failures: FailureReport,
    base_dir: str | os.PathLike | None = None,
    sequences: Sequence[str] | None = None,
    allow_missing_sequences: bool = False,
    expect_ndim: int = 3,
    check_intensity: bool = False,
    allow_outside_root: bool = False,
    section: str = "test",
    series_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """The cases to segment from ``input_path`` (see :func:`pipelines.io.inputs.list_inference_inputs`), each
    input checked first; the bad ones are recorded in ``failures`` and left out.

    A DICOM folder holding several image series (an export of a whole study) becomes one case per series when
    ``series_dir`` is given (:func:`pipelines.io.dicom_reader.split_image_series` links each series' files into
    ``<series_dir>/<folder>_s<k>``); without it, such a folder is refused with its series listed.

    Args:
        input_path: an image, a DICOM series folder, a folder of them, or a datalist JSON (its ``section``).
        failures: the run's report.
        base_dir: the dataset root of a datalist's relative paths (default: the datalist's folder).
        sequences: file-name suffixes of multi-sequence inputs (one item per patient folder).
        allow_missing_sequences: a patient folder may hold only some of the sequences (its item names them).
        expect_ndim: spatial dimensions expected of every image.
        check_intensity: also read the voxel data (finds truncated files and NaNs now rather than in the
            loop, at the cost of reading each volume twice).
        allow_outside_root: accept datalist paths outside the dataset root.
        section: datalist section to read.
        series_dir: where a multi-series DICOM folder is split into one folder per series; None refuses it.

    Raises:
        DataError: when ``input_path`` does not exist or holds no image (nothing to do at all).
    """
    try:
        items = list_inference_inputs(
            input_path,
            section=section,
            base_dir=base_dir,
            sequences=sequences,
            allow_missing_sequences=as_bool(allow_missing_sequences, "allow_missing_sequences"),
        )
    except DataError:
        raise
    except ValueError as err:
        raise DataError(str(err)) from err
    if series_dir is not None:
        items = _one_item_per_series(items, series_dir)
    allow_outside_root = as_bool(allow_outside_root, "allow_outside_root")
    check_intensity = as_bool(check_intensity, "input_check_intensity")
    from_datalist = Path(input_path).is_file() and str(input_path).lower().endswith(".json")
    root = Path(base_dir) if base_dir is not None else Path(input_path).parent

    def check(item: dict[str, Any]) -> list[str]:
        files = item["image"] if isinstance(item["image"], (list, tuple)) else [item["image"]]
        problems = []
        for path in files:
            if from_datalist and not allow_outside_root:
                try:
                    resolve_inside(root, path, entry=f"{input_path}: {section}")
                except DataError as err:
                    problems += err.problems
                    continue
            problems += check_volume(path, expect_ndim=expect_ndim, check_intensity=check_intensity)
        if len(files) > 1 and not problems:  # one study, one file per sequence: one grid
            problems += sequence_grid_problems(files, expect_ndim=expect_ndim)
        return problems

    return checked_inputs(items, check, failures)


def _one_item_per_series(items: Sequence[dict[str, Any]], series_dir: str | os.PathLike) -> list[dict[str, Any]]:
    from pipelines.io.dicom_reader import split_image_series

    expanded = []
    for item in items:
        image = item["image"]
        if isinstance(image, str) and is_dicom_series_dir(image):
            expanded += [{**item, "image": str(f)} for f in split_image_series(image, series_dir)]
        else:
            expanded.append(item)
    return expanded


def checked_inputs(
    items: Sequence[dict[str, Any]],
    check: Callable[[dict[str, Any]], list[str]],
    failures: FailureReport,
    what: str = "case",
) -> list[dict[str, Any]]:
    """The ``items`` in which ``check`` finds no problem; each other one is recorded in ``failures`` (a new run of
    ``len(items)`` cases) at the ``input check`` stage, with all its problems."""
    failures.start(len(items))
    good = []
    for item in items:
        problems = check(item)
        if problems:
            failures.record(_files(item["image"]), "; ".join(problems), stage="input check")
        else:
            good.append(item)
    logger.info("inference: %d of %d %s(s) passed the input check", len(good), len(items), what)
    return good


class GuardedDataset(Dataset):
    """``monai.data.Dataset`` that returns a marked item instead of raising when a case cannot be prepared.

    The marked item is ``{FAILED_KEY: <error>, SOURCE_KEY: <file(s)>}``; :class:`RobustEvaluator` records and
    skips it. The mark travels with the item, so failures in DataLoader worker processes are not lost.

    Args:
        data: the items (``{"image": path}``).
        transform: the preprocessing.
        image_key: key of the input file(s), named in the failure.
    """

    def __init__(self, data: Sequence, transform=None, image_key: Hashable = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.image_key = image_key

    def _transform(self, index: int):
        try:
            return super()._transform(index)
        except Exception as err:  # any reader or transform error: this case only
            item = self.data[index]
            source = _files(item.get(self.image_key, "?")) if isinstance(item, Mapping) else str(item)
            return {FAILED_KEY: describe_error(err), SOURCE_KEY: source}


def _batch_files(batchdata: Mapping, image_key: Hashable) -> list[str]:
    """The source file of each item of a batch (MetaTensor metadata), or ``"?"``."""
    image = batchdata.get(image_key) if isinstance(batchdata, Mapping) else None
    if isinstance(image, MetaTensor):
        names = image.meta.get("filename_or_obj")
        if isinstance(names, (list, tuple)) and names:
            return [_files(n) for n in names]
        if names:
            return [_files(names)]
    return ["?"]


class RobustEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` for inference over many cases: a case that fails is recorded and skipped.

    Batches marked by :class:`GuardedDataset` are not run; an error in the network, the inferer or the
    postprocessing (which runs inside the iteration) fails that batch only. Keep ``batch_size: 1`` so a failure
    costs one case. ``KeyboardInterrupt`` and other non-``Exception`` errors still stop the run.

    The previous case's output (its full-resolution prediction among it) is dropped before the next case is read:
    ignite keeps ``state.output`` until the next batch has arrived, so a folder of scans would otherwise hold two
    cases at once. The output is gone once the run completes (the bundles' handlers log metrics, not outputs).

    Args:
        failures: the run's :class:`FailureReport`.
        image_key: key of the input image in a batch.
        *args, **kwargs: the arguments of ``SupervisedEvaluator``.
    """

    def __init__(self, *args, failures: FailureReport, image_key: Hashable = "image", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures
        self.image_key = image_key
        self.add_event_handler(Events.GET_BATCH_STARTED, self._drop_previous_output)

    @staticmethod
    def _drop_previous_output(engine: SupervisedEvaluator) -> None:
        engine.state.output = None

    def run(self, *args, **kwargs) -> None:
        """Run over every case, timing the run (reads included, start-up excluded) for the report's rate."""
        start = time.perf_counter()
        try:
            super().run(*args, **kwargs)
        finally:
            self.failures.seconds = time.perf_counter() - start

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict) -> dict:
        if isinstance(batchdata, Mapping) and FAILED_KEY in batchdata:
            errors, sources = batchdata[FAILED_KEY], batchdata[SOURCE_KEY]
            for error, source in zip(_as_list(errors), _as_list(sources), strict=False):
                self.failures.record(source, str(error), stage="loading")
            return {}
        files = _batch_files(batchdata, self.image_key)
        try:
            output = super()._iteration(engine, batchdata)
        except Exception as err:  # this case only: the next one may well work
            for source in files:
                self.failures.record(source, err, stage="inference")
            return {}
        for source in files:
            self.failures.succeeded(source)
        return output


def read_ahead_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the loader that reads the next scan: one thread, so that it takes one core from the
    network and the writing of this scan rather than contending with them for every core."""
    import torch

    torch.set_num_threads(1)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def failed_cases(workflow) -> list[dict[str, str]]:
    """The failures recorded by an inference ``ConfigWorkflow`` that has a ``failures`` id (else ``[]``)."""
    parser = getattr(workflow, "parser", None)
    if parser is None or "failures" not in parser:
        return []
    report = parser.get_parsed_content("failures")
    return list(report.failures) if isinstance(report, FailureReport) else []
