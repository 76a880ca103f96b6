"""Checks driven by a workflow's bundle config: ``--set`` overrides, and the data a workflow would read.

``radcascade run liver train --set max_epoch=5`` should fail at once with "did you mean max_epochs", not train
for hours with the default. :func:`check_overrides` compares each override with the merged config (common file,
stage file, metadata): the id must exist (nested ids ``a#b`` too) and the value must fit the type of the default.
Ids the config does not define are refused unless given with ``--set-new``: a typo then costs one run of the
command, while an id that is meant to be new (read by an expression the user adds) remains possible.

:func:`validate_workflow` runs the data checks of :mod:`pipelines.validation.checks` with the settings of a
workflow's bundle
(datalist, dataset root, label values, modality, 2D or 3D), for ``radcascade validate``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pipelines.validation.checks import validate_datalist
from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_volume
from pipelines.workflows import REPO_ROOT, Workflow, get_workflow

__all__ = [
    "ConfigOverrideError",
    "load_stage_config",
    "check_overrides",
    "DataSettings",
    "data_settings",
    "validate_workflow",
]

logger = logging.getLogger(__name__)

_EXPRESSION_PREFIXES = ("$", "@", "%")  # MONAI bundle expressions, references and macros
_MAX_FLATTEN_DEPTH = 4
DATALIST_SECTIONS = ("training", "validation", "test")
OPTIONAL_SECTIONS = ("negatives",)  # checked when the datalist has them (the slice gate's negatives)


class ConfigOverrideError(ValueError):
    """One or more ``--set`` overrides that do not fit the config; each problem names the id.

    Attributes:
        problems: list of problem strings.
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__("\n".join([f"{n} bad override{'s' if n != 1 else ''}:", *(f"  - {p}" for p in problems)]))

    def __reduce__(self):
        return (self.__class__, (self.problems,))


def load_stage_config(name: str, stage: str):
    """The merged, unparsed config of a workflow's stage (metadata, common file, stage file), as ``ConfigWorkflow``
    builds it before overrides."""
    return get_workflow(name).config_parser(stage)


# ---------------------------------------------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------------------------------------------
def _all_ids(config: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Every id of a nested config, ``a#b#0`` style, down to ``_MAX_FLATTEN_DEPTH`` levels."""
    if depth >= _MAX_FLATTEN_DEPTH:
        return []
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    ids = []
    for key, value in items:
        full = f"{prefix}#{key}" if prefix else str(key)
        ids.append(full)
        ids += _all_ids(value, full, depth + 1)
    return ids


def _unknown_id_problem(id_: str, value: Any, parsers: Sequence, where: str) -> str:
    depth = id_.count("#")  # suggest ids at the same depth: a top-level typo gets top-level ids
    known = sorted(
        {
            i
            for parser in parsers
            for i in _all_ids(parser.get())
            if i.count("#") == depth and not i.startswith("_meta_")
        }
    )
    close = difflib.get_close_matches(id_, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{id_}={value!r}: {where} defines no id {id_!r}; {hint}(use --set-new {id_}=... to add an id on purpose)"


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_EXPRESSION_PREFIXES)


def _type_name(value: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, (list, tuple)) else "a mapping"
    )


def _fit(default: Any, value: Any) -> tuple[bool, Any]:
    """``(fits, value to use)`` for an override of an id whose default is ``default`` (not an expression)."""
    if isinstance(default, bool):
        return isinstance(value, bool), value
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(default, float):
        if isinstance(value, bool):
            return False, value
        try:  # YAML reads 1e-4 as a string (its 1.1 floats need a dot: 1.0e-4)
            return True, float(value)
        except (TypeError, ValueError):
            return False, value
    if default == "auto":  # a sentinel for "work it out": the id's real values are numbers, booleans or null
        return True, value
    if isinstance(default, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)  # output_dir=2024 is a folder name
        return isinstance(value, str), value
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)), value
    if isinstance(default, dict):
        return isinstance(value, dict), value
    return True, value


def _lookup(parsers: Sequence, id_: str) -> tuple[bool, Any]:
    """``(found, default)``: the first config of ``parsers`` that defines ``id_``."""
    for parser in parsers:
        if id_ in parser:
            return True, parser[id_]
    return False, None


CHOICES: dict[str, tuple[str, str]] = {
    "skull_strip": ("transforms.brain_extraction", "MODES"),
    "cascade_smoothing": ("pipelines.inference.slabs", "SMOOTHING_METHODS"),
    "cascade_merge": ("pipelines.inference.slabs", "MERGE_MODES"),
    "sw_precision": ("pipelines.inference.fast_inference", "PRECISIONS"),
    "architecture": ("pipelines.models.segmenters", "ARCHITECTURES"),
}
"""Ids whose value is one of a few words, and where those words are defined (module, constant): an override
outside them is refused before anything runs. The module is imported only when the id is overridden."""


def _choices(id_: str) -> tuple:
    module, name = CHOICES[id_]
    return tuple(getattr(importlib.import_module(module), name))


def check_overrides(
    parsers: Sequence,
    overrides: Mapping[str, Any],
    new_ids: Mapping[str, Any] | None = None,
    where: str = "the config",
    elsewhere: Sequence = (),
) -> dict[str, Any]:
    """Check ``--set`` overrides against merged configs; return them ready for ``ConfigWorkflow``.

    An id must be defined by one of ``parsers`` (``a#b`` reaches into nested items), or by one of ``elsewhere``
    (the workflow's other stages: one set of overrides may serve every stage; such an id is logged as unused);
    an unknown id is reported with the closest known ids. An id of :data:`CHOICES` takes one of its words. A
    value must fit the type of the default: true/false
    for a bool, an integer for an int, a number for a float (``1e-4`` included), a list for a list, a mapping for a
    dict; a number given for a string becomes that string. Defaults that are expressions (``$...``, ``@...``) or
    null, and values that are, are not type-checked. ``new_ids`` are added as they are, unchecked.

    Args:
        parsers: ``monai.bundle.ConfigParser`` objects, e.g. one per stage the overrides go to
            (:func:`load_stage_config`).
        overrides: ``{id: value}`` from ``--set``, values already read as YAML.
        new_ids: ``{id: value}`` from ``--set-new``.
        where: what the parsers are, for messages (``"the liver train config"``).
        elsewhere: configs whose ids are accepted although this run does not use them.

    Returns:
        The overrides (values converted where needed) and the new ids, in one dict.

    Raises:
        ConfigOverrideError: listing every unknown id and every value of the wrong type.
    """
    problems, checked = [], {}
    for id_, value in overrides.items():
        if id_ in CHOICES and value not in _choices(id_):
            problems.append(f"{id_}={value!r}: must be one of {', '.join(_choices(id_))}")
            continue
        found, default = _lookup(parsers, id_)
        if not found:
            found, default = _lookup(elsewhere, id_)
            if found:
                logger.warning("override %s is not used by %s (another stage defines it)", id_, where)
        if not found:
            problems.append(_unknown_id_problem(id_, value, [*parsers, *elsewhere], where))
            continue
        if default is None or _is_expression(default) or _is_expression(value):
            checked[id_] = value
            continue
        fits, converted = _fit(default, value)
        if fits:
            checked[id_] = converted
        else:
            problems.append(
                f"{id_}={value!r}: expected {_type_name(default)} (the default is {default!r}), got {_type_name(value)}"
            )
    if problems:
        raise ConfigOverrideError(problems)
    return {**checked, **(new_ids or {})}


# ---------------------------------------------------------------------------------------------------------------
# a workflow's data settings and their validation
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSettings:
    """What a workflow's bundle says about its input data.

    Attributes:
        workflow: the workflow's name.
        datalist: the configured datalist (``data_list_file_path``).
        dataset_dir: the folder the datalist's relative paths start from (``dataset_dir``).
        allow_outside_root: datalist paths may lead outside ``dataset_dir`` (``allow_outside_root``).
        label_values: the label value on disk of each class (``label_values``, else ``0 .. len(class_names) - 1``).
        modality: the input modality (``modality``, else ``metadata.json``'s ``network_data_format.inputs.image``).
        spatial_dims: 2 for radiographs, 3 for volumes (``network_def#spatial_dims``).
        allow_lateral_views: radiographs: lateral views are accepted (``allow_lateral_views``; else refused).
        sequence_suffixes: multi-sequence MRI: the file-name suffix of each sequence in a patient folder.
        allow_missing_sequences: a patient folder may hold only some of the sequences.
    """

    workflow: str
    datalist: Path
    dataset_dir: Path
    allow_outside_root: bool
    label_values: tuple[int, ...]
    modality: str
    spatial_dims: int
    allow_lateral_views: bool = False
    sequence_suffixes: tuple[str, ...] | None = None
    allow_missing_sequences: bool = False


def _modality(workflow: Workflow, parser) -> str:
    """The config's ``modality`` id, else the input modality in the bundle's metadata (the registry's for a workflow
    that shares another's bundle and so its metadata)."""
    if "modality" in parser:
        return str(parser.get_parsed_content("modality"))
    if workflow.config_suffix:  # e.g. chest_xray in the lung bundle, whose metadata.json describes the CT workflow
        return workflow.modality
    with open(workflow.bundle_dir / "configs" / "metadata.json", encoding="utf-8") as f:
        inputs = json.load(f)["network_data_format"]["inputs"]
    return str(inputs["image"]["modality"])


def _label_values(parser) -> tuple[int, ...]:
    if "label_values" in parser:
        return tuple(int(v) for v in parser.get_parsed_content("label_values"))
    if "class_names" in parser:
        return tuple(range(len(parser.get_parsed_content("class_names"))))
    channels = parser.get("_meta_#network_data_format#outputs#pred#channel_def", {})
    return tuple(sorted(int(k) for k in channels))


def data_settings(name: str, overrides: Mapping[str, Any] | None = None) -> DataSettings:
    """Read the data settings of workflow ``name`` from its bundle (common and first stage config, ``overrides``
    applied), relative paths taken from the current folder as ``radcascade run`` does."""
    from pipelines.validation.path_safety import as_bool

    workflow = get_workflow(name)
    parser = load_stage_config(name, workflow.stages[0])
    parser.update(dict(overrides or {}))
    allow = parser.get_parsed_content("allow_outside_root") if "allow_outside_root" in parser else False
    lateral = parser.get_parsed_content("allow_lateral_views") if "allow_lateral_views" in parser else False
    return DataSettings(
        workflow=name,
        datalist=Path(parser.get_parsed_content("data_list_file_path")),
        dataset_dir=Path(parser.get_parsed_content("dataset_dir")),
        allow_outside_root=as_bool(allow, "allow_outside_root"),
        label_values=_label_values(parser),
        modality=_modality(workflow, parser),
        spatial_dims=int(parser.get_parsed_content("network_def#spatial_dims")),
        allow_lateral_views=as_bool(lateral, "allow_lateral_views"),
        sequence_suffixes=tuple(parser.get_parsed_content("sequence_suffixes"))
        if "sequence_suffixes" in parser
        else None,
        allow_missing_sequences=as_bool(
            parser.get_parsed_content("allow_missing_sequences") if "allow_missing_sequences" in parser else False,
            "allow_missing_sequences",
        ),
    )


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items())


def _check_datalist(settings: DataSettings, path: Path, base_dir: Path, check_intensity: bool) -> str:
    """Validate one datalist the way the workflow reads it; return its summary, raise DataError."""
    if settings.spatial_dims == 2:
        from pipelines.xray.radiographs import validate_xray_datalist

        counts = validate_xray_datalist(
            path,
            base_dir=base_dir,
            keys=DATALIST_SECTIONS,
            require=("label", "class"),
            check_intensity=check_intensity,
            allow_lateral=settings.allow_lateral_views,
        )
    else:
        from pipelines.training.datalist_sections import present_sections

        counts = validate_datalist(
            path,
            base_dir=base_dir,
            keys=DATALIST_SECTIONS + present_sections(path, OPTIONAL_SECTIONS),
            check_intensity=check_intensity,
            allow_outside_root=settings.allow_outside_root,
            label_values=settings.label_values,
            modality=settings.modality,
        )
    return f"{path} ({_counts(counts)})"


def _image_problems(settings: DataSettings, path: Path, check_intensity: bool) -> tuple[list[str], int]:
    """Problems of an image, a DICOM series folder or a folder of images; and the number of images checked."""
    if settings.spatial_dims == 2:
        from pipelines.xray.radiographs import check_radiograph, list_xray_inputs

        check = partial(check_radiograph, check_intensity=check_intensity, allow_lateral=settings.allow_lateral_views)
        listing = list_xray_inputs
    else:
        from pipelines.io.inputs import list_inference_inputs

        check = partial(
            check_volume, expect_ndim=settings.spatial_dims, check_intensity=check_intensity, modality=settings.modality
        )
        listing = partial(
            list_inference_inputs,
            sequences=settings.sequence_suffixes,
            allow_missing_sequences=settings.allow_missing_sequences,
        )
    if not path.is_dir():
        return check(path), 1
    try:
        items = listing(path)
    except ValueError as error:
        return [str(error)], 0
    # a patient folder of a multi-sequence bundle is one item listing one file per sequence
    files = [f for item in items for f in (item["image"] if isinstance(item["image"], list) else [item["image"]])]
    problems = [p for f in files for p in check(f)]
    return problems, len(items)


def validate_workflow(
    name: str,
    paths: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike | None = None,
    check_intensity: bool = True,
) -> tuple[list[str], str]:
    """Check the data a workflow would read, with its bundle's settings, and report every problem at once.

    With no ``paths``, the configured datalist (``data_list_file_path`` over ``dataset_dir``); else each path: a
    datalist (``*.json``, relative paths from ``base_dir``, default the configured ``dataset_dir``), an image, a
    DICOM series folder or a folder of them. Label values must be the bundle's (``label_values`` or the class
    indices), CT images must be in Hounsfield units, and images must not be blank
    (:mod:`pipelines.validation.checks`). The
    chest X-ray workflow (2D) uses :func:`pipelines.xray.radiographs.validate_xray_datalist` and
    :func:`pipelines.xray.radiographs.check_radiograph`.

    Args:
        name: the workflow (``liver``, ``lung``, ``brain``, ``chest_xray``).
        paths: what to check instead of the configured datalist.
        overrides: config ids to set first (``{"dataset_dir": "/data/liver"}``).
        base_dir: folder the relative paths of datalists in ``paths`` start from.
        check_intensity: read the voxel data (``False``: headers only, faster).

    Returns:
        The problems (each starting with the file or folder concerned) and a one-line summary.
    """
    settings = data_settings(name, overrides)
    workflow = get_workflow(name)
    default_data = (REPO_ROOT / workflow.default_data).resolve()
    if not paths and settings.dataset_dir.resolve() == default_data and not default_data.is_dir():
        problem = f"{settings.dataset_dir}: the default data is not written yet; run `radcascade prepare {name}` first"
        return [problem], f"{name}: 1 problem found"
    targets = [Path(p) for p in paths] or [settings.datalist]
    base = Path(base_dir) if base_dir is not None else settings.dataset_dir
    problems, checked = [], []
    for target in targets:
        if target.suffix.lower() == ".json":
            try:
                checked.append(_check_datalist(settings, target, base, check_intensity))
            except DataError as error:
                problems += error.problems
                checked.append(str(target))
        else:
            found, n_images = _image_problems(settings, target, check_intensity)
            problems += found
            checked.append(f"{target} ({n_images} image{'s' if n_images != 1 else ''})")
    n = len(problems)
    verdict = f"{n} problem{'s' if n != 1 else ''} found" if n else "no problems found"
    return problems, f"{name}: {verdict} in {'; '.join(checked)}"
