"""What the MONAI Label app needs to know about the project's bundles, and the small steps its tasks are made of.

Nothing here imports MONAI Label, so these helpers run (and are tested) in the project's main environment as
well. The bundles are read through the project's registry (``pipelines.workflows``), from each stage's own file
(``configs/<stage>.yaml``), exactly as ``monai.bundle run`` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from monai.bundle import ConfigParser, ConfigWorkflow

from pipelines.api import load_weights
from pipelines.runner import run_stage
from pipelines.validation.path_safety import as_bool
from pipelines.workflows import REPO_ROOT, WORKFLOWS, get_workflow

__all__ = [
    "AppConf",
    "BundleInfo",
    "served_workflows",
    "label_value_map",
    "remap_label_file",
    "split_channels",
    "split_cases",
    "write_label_volume",
    "write_radiograph_label",
    "run_bundle_stage",
]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_ROOT = REPO_ROOT / "runs" / "monailabel"


def as_dict(value, name: str) -> dict:
    """A dict from a conf or request value: a dict, a JSON object string, or empty.

    Raises:
        ValueError: when the value is not a JSON object.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{name}: expected a JSON object of bundle config ids, got {value!r} ({e})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}: expected a JSON object of bundle config ids, got {value!r}")
    return parsed


def served_workflows() -> dict[str, int]:
    """The registry's workflows that have an inference stage, with the spatial dimensions of their network: 3 for
    the volumes (liver, lung, brain), 2 for the radiographs (chest X-ray)."""
    served = {}
    for name, workflow in WORKFLOWS.items():
        if "inference" in workflow.stages:
            served[name] = int(workflow.config_parser("inference").get("network_def#spatial_dims"))
    return served


@dataclass(frozen=True)
class AppConf:
    """The app's options, from ``monailabel start_server --conf KEY VALUE`` (every value arrives as a string).

    Attributes:
        models: workflows to serve (``--conf models liver,lung``; default: every workflow of the registry with an
            inference stage, the chest X-ray one included).
        ckpt_root: folder holding ``<workflow>/model.pt`` and ``<workflow>/classifier.pt``; training writes there
            too. None: each bundle's own ``ckpt_dir`` (``bundles/<bundle>/models``).
        output_root: training runs go to ``<output_root>/<workflow>`` (MLflow database, datalists, stats).
        overrides: bundle config ids set on every stage of every served bundle (``--conf overrides '{"pixdim":
            [4, 4, 6]}'``); the network ids must match between the checkpoints and the server.
        device: ``cpu`` or ``cuda:0``; None: the bundle's choice (CUDA when available).
        full_models: also serve ``<workflow>_full``, the plain sliding window over the whole volume.
        train_classifier: the Train button trains the slice classifier after the segmenter, on the same labels.
    """

    models: tuple[str, ...]
    ckpt_root: Path | None = None
    output_root: Path = DEFAULT_OUTPUT_ROOT
    overrides: dict = field(default_factory=dict)
    device: str | None = None
    full_models: bool = True
    train_classifier: bool = True

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None) -> AppConf:
        """Read the conf dict that MONAI Label hands to the app.

        Raises:
            ValueError: for an unknown workflow or a malformed value; the message names the option.
        """
        conf = dict(conf or {})
        requested = str(conf.get("models", "all")).strip()
        served = list(served_workflows())
        if requested in ("", "all"):
            models = tuple(served)
        else:
            models = tuple(m.strip() for m in requested.split(",") if m.strip())
            for name in models:
                get_workflow(name)  # unknown names: ValueError listing the known ones
                if name not in served:
                    raise ValueError(f"--conf models: {name!r} has no inference stage; MONAI Label serves {served}")
        ckpt_root = conf.get("ckpt_root")
        output_root = conf.get("output_root")
        return cls(
            models=models,
            ckpt_root=Path(ckpt_root).expanduser().resolve() if ckpt_root else None,
            output_root=Path(output_root).expanduser().resolve() if output_root else DEFAULT_OUTPUT_ROOT,
            overrides=as_dict(conf.get("overrides"), "--conf overrides"),
            device=conf.get("device") or None,
            full_models=as_bool(conf.get("full_models", "true"), "--conf full_models"),
            train_classifier=as_bool(conf.get("train_classifier", "true"), "--conf train_classifier"),
        )

    def stage_overrides(self, name: str) -> dict:
        """Ids set on every stage of workflow ``name``: the conf's overrides, checkpoints, output folder, device."""
        overrides = dict(self.overrides)
        if self.ckpt_root is not None:
            overrides["ckpt_dir"] = str(self.ckpt_root / name)
        overrides["output_dir"] = str(self.output_root / name)
        if self.device:
            overrides["device"] = f"$torch.device({self.device!r})"
        return overrides


@dataclass(frozen=True)
class BundleInfo:
    """One served workflow, read from its layered configs with the app's overrides applied.

    Attributes:
        name: the workflow's name in the registry (``liver``).
        description: the registry's one-line description.
        class_names: label names by class index, background first.
        label_values: the value on disk (and in the served label volumes) of each class.
        in_channels: input channels of the network (4 for the brain: FLAIR, T1, T1ce, T2).
        dimension: spatial dimensions of the network: 3 (volumes) or 2 (radiographs).
        sequences: the channels' names when the bundle declares them (``sequences``), else empty.
        modality: the images' modality (``CT``, ``MR``), which the input checks hold the images to.
        ckpt_dir: where the checkpoints are read and written.
        model_path: the segmenter's checkpoint (``ckpt_path``: ``model.pt``; ``model_xray.pt`` for chest X-ray).
        classifier_path: the classifier's (``classifier_ckpt_path``).
        max_epochs: the segmenter's default number of epochs (``train.yaml``).
        classifier_max_epochs: the slice classifier's (``train_classifier.yaml``).
    """

    name: str
    description: str
    class_names: tuple[str, ...]
    label_values: tuple[int, ...]
    in_channels: int
    dimension: int
    sequences: tuple[str, ...]
    modality: str
    ckpt_dir: Path
    model_path: Path
    classifier_path: Path
    max_epochs: int
    classifier_max_epochs: int

    @classmethod
    def read(cls, name: str, overrides: Mapping | None = None) -> BundleInfo:
        """Read workflow ``name``'s bundle (common + inference / train configs) with ``overrides`` applied."""
        workflow = get_workflow(name)

        def parser_of(stage: str) -> ConfigParser:
            return workflow.config_parser(stage, dict(overrides or {}))

        infer = parser_of("inference")
        class_names = tuple(infer.get_parsed_content("class_names"))
        values = infer.get_parsed_content("label_values") if "label_values" in infer else range(len(class_names))
        values = tuple(int(v) for v in values)
        if len(values) != len(class_names):
            raise ValueError(f"{workflow.bundle_dir}: label_values {values} do not match class_names {class_names}")
        sequences = tuple(infer.get_parsed_content("sequences")) if "sequences" in infer else ()
        classifier_epochs = 0
        if "train_classifier" in workflow.stages:
            classifier_epochs = int(parser_of("train_classifier").get_parsed_content("max_epochs"))
        return cls(
            name=name,
            description=workflow.description,
            class_names=class_names,
            label_values=values,
            in_channels=int(infer.get_parsed_content("in_channels")),
            dimension=int(infer.get("network_def#spatial_dims")),
            sequences=sequences,
            modality=str(infer.get_parsed_content("modality")) if "modality" in infer else workflow.modality,
            ckpt_dir=Path(infer.get_parsed_content("ckpt_dir")),
            model_path=Path(infer.get_parsed_content("ckpt_path")),
            classifier_path=Path(infer.get_parsed_content("classifier_ckpt_path")),
            max_epochs=int(parser_of("train").get_parsed_content("max_epochs")),
            classifier_max_epochs=classifier_epochs,
        )

    @property
    def labels(self) -> dict[str, int]:
        """MONAI Label's ``labels``: foreground class name -> its value in the served label volumes."""
        return dict(zip(self.class_names[1:], self.label_values[1:], strict=True))

    @property
    def channel_names(self) -> tuple[str, ...]:
        """A file-name suffix per input channel: the sequences in lower case (``flair``...), else ``c0``, ``c1``..."""
        if len(self.sequences) == self.in_channels:
            return tuple(s.lower() for s in self.sequences)
        return tuple(f"c{i}" for i in range(self.in_channels))


def label_value_map(label_info: Sequence[Mapping], class_names: Sequence[str], label_values: Sequence[int]):
    """Map the values of a label that 3D Slicer submitted to the bundle's label values, by segment name.

    Slicer's MONAI Label module writes segment ``i`` of its segmentation as value ``i`` (``label_info``: ``[{"name":
    "liver", "idx": 1}, ...]``), whatever values the model uses: the brain's "enhancing tumour" is 4 in BraTS
    files but may come back as 3 or 6. Names are matched without regard to case; a segment whose name is no class
    of the bundle becomes background (logged).

    Returns:
        ``{submitted value: bundle value}``, background ``0 -> 0`` included.

    Raises:
        ValueError: when an entry has no ``name`` or ``idx``.
    """
    by_name = {str(n).strip().lower(): int(v) for n, v in zip(class_names, label_values, strict=True)}
    mapping = {0: 0}
    for entry in label_info:
        try:
            name, idx = str(entry["name"]).strip().lower(), int(entry["idx"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"label_info entry {entry!r} has no name and integer idx") from None
        if name not in by_name:
            logger.warning("segment %r (value %d) is no class of %s: written as background", name, idx, class_names)
        mapping[idx] = by_name.get(name, 0)
    return mapping


def remap_label_file(src: str | os.PathLike, dst: str | os.PathLike, mapping: Mapping[int, int]) -> Path:
    """Write label image ``src`` to ``dst`` (NIfTI or NRRD, any) with its values mapped; unmapped values become 0.

    The geometry (spacing, origin, direction) is copied unchanged.
    """
    image = sitk.ReadImage(str(src))
    values = sitk.GetArrayViewFromImage(image)
    out = np.zeros(values.shape, dtype=np.uint8)
    for old, new in mapping.items():
        out[values == old] = new
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(result, str(dst), useCompression=True)
    return Path(dst)


def split_channels(image: str | os.PathLike, out_dir: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Write each channel of a 4D NIfTI ``(X, Y, Z, C)`` as a 3D NIfTI ``<out_dir>/<case>_<name>.nii.gz``.

    A multi-sequence bundle trains on one file per sequence (the BraTS layout its datalist checks expect), while
    MONAI Label's datastore holds one file per study. Affine and header are kept.

    Returns:
        the channel files, in channel order.

    Raises:
        ValueError: when ``image`` is no 4D NIfTI with ``len(names)`` channels.
    """
    path = str(image)
    if not path.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a multi-channel study must be a 4D NIfTI (X, Y, Z, {len(names)})")
    source = nib.load(path)
    if source.ndim != 4 or source.shape[3] != len(names):
        raise ValueError(f"{path}: shape {source.shape}; expected a 4D NIfTI (X, Y, Z, {len(names)}): {list(names)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    case = Path(path).name.removesuffix(".gz").removesuffix(".nii")
    files = []
    for c, name in enumerate(names):
        channel = nib.Nifti1Image(np.asarray(source.dataobj[..., c]), source.affine, source.header)
        files.append(str(out_dir / f"{case}_{name}.nii.gz"))
        nib.save(channel, files[-1])
    return files


def split_cases(ids: Sequence[str], val_split: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split labelled image ids into training and validation: a seeded shuffle, at least one case in each.

    Raises:
        ValueError: with fewer than two ids, or ``val_split`` outside (0, 1).
    """
    ids = sorted(ids)
    if len(ids) < 2:
        raise ValueError(
            f"training needs at least 2 labelled images (one is held out for validation), found {len(ids)}: "
            "submit more labels first (Slicer: Submit Label)"
        )
    if not 0.0 < float(val_split) < 1.0:
        raise ValueError(f"val_split must be between 0 and 1, got {val_split}")
    random.Random(seed).shuffle(ids)
    n_val = min(len(ids) - 1, max(1, round(len(ids) * float(val_split))))
    return sorted(ids[n_val:]), sorted(ids[:n_val])


def write_label_volume(mask, affine, path: str | os.PathLike) -> Path:
    """Write a label map ``(X, Y, Z)`` or ``(1, X, Y, Z)`` as a uint8 NIfTI with ``affine`` (RAS, as MONAI's)."""
    array = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if array.ndim == 4:
        array = array[0]
    image = nib.Nifti1Image(array.astype(np.uint8), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    nib.save(image, str(path))
    return Path(path)


def write_radiograph_label(mask, source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write a radiograph's mask ``(1, width, height)`` or ``(width, height)`` (the layout of ``PILReader`` and
    :class:`~pipelines.xray.radiograph_reader.RadiographReader`) as a uint8 NIfTI on ``source``'s geometry as ITK
    reads it (origin, spacing and direction of the PNG, JPEG, TIFF or DICOM file), which is how 3D Slicer loads
    both the radiograph and the label (``sitk.ReadImage``): the mask lies on the image, pixel for pixel.

    Raises:
        ValueError: when the mask's size is not the source's.
    """
    array = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if array.ndim == 3:
        array = array[0]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    try:
        reader.ReadImageInformation()
        size, spacing = reader.GetSize(), reader.GetSpacing()
        origin, direction = reader.GetOrigin(), reader.GetDirection()
    except RuntimeError:  # a file ITK cannot open (a damaged header the project's reader got past): pixel grid
        logger.warning("%s: ITK cannot read its geometry; the label is written with 1 mm pixels at the origin", source)
        size, spacing, origin, direction = array.shape, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)
    if tuple(size[:2]) != array.shape:
        raise ValueError(f"{source}: mask of {array.shape[0]} x {array.shape[1]} pixels for an image of {size}")
    pixels = array.T.astype(np.uint8)  # ITK's numpy view is (rows, columns)
    label = sitk.GetImageFromArray(pixels[None] if len(size) == 3 else pixels)
    label.SetSpacing(spacing)
    label.SetOrigin(origin)
    label.SetDirection(direction)
    sitk.WriteImage(label, str(path), useCompression=True)
    return Path(path)


def run_bundle_stage(name: str, stage: str, overrides: Mapping, init_checkpoint: Path | None = None, on_epoch=None):
    """Run one stage of workflow ``name``'s bundle in this process with the project's stage runner
    (:func:`pipelines.runner.run_stage`); return the workflow.

    Args:
        name: workflow name in the registry.
        stage: ``train`` or ``train_classifier`` (any stage of the bundle works).
        overrides: config ids to set.
        init_checkpoint: a state dict to load into the stage's ``network`` before training (fine-tuning); one
            that does not fit the network is skipped with a warning.
        on_epoch: ``f(epoch, max_epochs)`` called after each training epoch (progress for MONAI Label's stats).
    """

    def after_initialize(workflow: ConfigWorkflow) -> None:
        if init_checkpoint is not None and Path(init_checkpoint).is_file():
            network = workflow.parser.get_parsed_content("network")
            try:
                load_weights(network, str(init_checkpoint)).train()
                logger.info("%s %s: starting from %s", name, stage, init_checkpoint)
            except RuntimeError as e:
                logger.warning("%s does not fit the %s network, training from scratch: %s", init_checkpoint, stage, e)
        if on_epoch is not None and "train#trainer" in workflow.parser:
            from ignite.engine import Events

            trainer = workflow.parser.get_parsed_content("train#trainer")
            trainer.add_event_handler(
                Events.EPOCH_COMPLETED, lambda engine: on_epoch(engine.state.epoch, engine.state.max_epochs)
            )

    return run_stage(
        name, stage, overrides, logging_file=False, executed_prefix="monailabel_", after_initialize=after_initialize
    )
