"""The registry of workflows: the single source of truth that the command line, the tests and the docs read.

Each workflow lives in a MONAI bundle under ``bundles/<bundle>/``. Each of its stages runs from one file,
``configs/<stage>.yaml`` (linked as ``<stage>.yaml`` at the bundle's root), written by
:mod:`pipelines.cli.compose_configs` from three layers: the bundle's facts (``configs/common.yaml``: network,
label classes, deterministic transforms), the stage shared by the bundles of its family
(``bundles/stages/3d/train.yaml``) and the bundle's own overrides of that stage, if any
(``configs/overrides/train.yaml``). A bundle may hold more than one workflow: the lung bundle has the 3D CT
workflow (``common.yaml``, ``train.yaml``...) and the 2D chest X-ray one (``common_xray.yaml``,
``train_xray.yaml``...).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "Workflow",
    "WORKFLOWS",
    "get_workflow",
    "bundle_dir",
    "config_files",
    "prepare_default_data",
    "ensure_default_data",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = ("train", "evaluate", "inference", "train_classifier", "evaluate_classifier")
STAGES_ROOT = REPO_ROOT / "bundles" / "stages"
# Stages that extend another stage's layers: multi_gpu_train is train plus the distributed overrides, train_gpu is
# train from a downloaded dataset on one GPU.
STAGE_BASES = {"multi_gpu_train": "train", "train_gpu": "train"}
# MONAI workflow type of each stage (``ConfigWorkflow(workflow_type=...)``).
STAGE_TYPES = {
    "train": "train",
    "evaluate": "eval",
    "inference": "infer",
    "train_classifier": "train",
    "evaluate_classifier": "eval",
}


@dataclass(frozen=True)
class Workflow:
    """One bundle of the product and what its command line needs to know about it.

    Attributes:
        name: short name used on the command line (``liver``).
        description: one line for ``--help`` and the README.
        modality: imaging modality of the input (``CT``, ``MR``, ``CXR``).
        default_data: folder (relative to the repo root) holding the embedded default dataset.
        default_datalist: datalist (relative to the repo root) over the default dataset.
        data_generator: dotted name of ``f(out_dir, num_cases=, seed=) -> Path`` writing the default data.
        default_cases: number of cases of the default data.
        demo_overrides: config ids that ``radcascade demo`` sets on every stage (a short training).
        stages: the stage names that have a config file in ``configs/``.
        bundle: folder under ``bundles/`` (default: ``name``).
        config_suffix: suffix of this workflow's config files in a shared bundle (``_xray``: ``train_xray.yaml``).
        family: folder of ``bundles/stages/`` holding the shared stage configs (``3d``, ``xray``).
        extra_stages: stages with a config file that the command line does not run (``multi_gpu_train``: torchrun;
            ``train_gpu``: a GPU preset over a downloaded dataset).
    """

    name: str
    description: str
    modality: str
    default_data: str
    default_datalist: str
    data_generator: str
    default_cases: int = 16
    demo_overrides: dict = field(default_factory=dict)
    stages: tuple[str, ...] = field(default=STAGES)
    bundle: str = ""
    config_suffix: str = ""
    family: str = "3d"
    extra_stages: tuple[str, ...] = ("multi_gpu_train", "train_gpu")

    @property
    def bundle_dir(self) -> Path:
        """Absolute path of the bundle folder."""
        return REPO_ROOT / "bundles" / (self.bundle or self.name)

    @property
    def classes(self) -> tuple[str, ...]:
        """Label names by class index, background first: ``class_names`` of the bundle's common config (its one
        source), read as plain YAML so that commands which never load MONAI can list them."""
        import yaml

        common = self.bundle_dir / "configs" / f"common{self.config_suffix}.yaml"
        return tuple(yaml.safe_load(common.read_text(encoding="utf-8"))["class_names"])

    @property
    def composed_stages(self) -> tuple[str, ...]:
        """Every stage with a config file: the command line's and the extra ones."""
        return self.stages + self.extra_stages

    def config_files(self, stage: str) -> list[str]:
        """The config file to pass to ``monai.bundle run`` for ``stage`` (one file, holding every id).

        Raises:
            ValueError: when the workflow has no such stage.
        """
        if stage not in self.composed_stages:
            raise ValueError(f"workflow {self.name!r} has no stage {stage!r}; choose one of {list(self.stages)}")
        return [str(self.bundle_dir / "configs" / f"{stage}{self.config_suffix}.yaml")]

    def config_sources(self, stage: str) -> list[Path]:
        """The layers that ``configs/<stage>.yaml`` is composed from, first to last: the family's common file (if
        any), the bundle's common file, the shared stage (after the stage it extends, if any) and the bundle's
        overrides of each."""
        if stage not in self.composed_stages:
            raise ValueError(f"workflow {self.name!r} has no stage {stage!r}; choose one of {list(self.stages)}")
        configs = self.bundle_dir / "configs"
        family_common = STAGES_ROOT / self.family / "common.yaml"
        sources = [family_common] if family_common.is_file() else []
        sources.append(configs / f"common{self.config_suffix}.yaml")
        for name in filter(None, (STAGE_BASES.get(stage), stage)):
            sources.append(STAGES_ROOT / self.family / f"{name}.yaml")
            override = configs / "overrides" / f"{name}{self.config_suffix}.yaml"
            if override.is_file():
                sources.append(override)
        return sources

    def config_parser(self, stage: str, overrides: dict | None = None):
        """A ``monai.bundle.ConfigParser`` holding ``stage``'s config (the bundle's metadata, the stage file) and
        ``overrides``, as ``ConfigWorkflow`` builds it; nothing is parsed yet."""
        from monai.bundle import ConfigParser  # here: the registry serves commands that never load MONAI

        parser = ConfigParser()
        parser.read_meta(str(self.bundle_dir / "configs" / "metadata.json"))
        parser.read_config(self.config_files(stage))
        if overrides:
            parser.update(overrides)
        return parser


WORKFLOWS: dict[str, Workflow] = {
    "liver": Workflow(
        name="liver",
        description="Liver and liver tumour segmentation in abdominal CT (3D U-Net).",
        modality="CT",
        default_data="data/Task03_Liver_phantom",
        default_datalist="data_manifests/liver_phantom.json",
        data_generator="pipelines.phantoms.liver_ct.write_liver_default_task",
        demo_overrides={"max_epochs": 25},
    ),
    "lung": Workflow(
        name="lung",
        description="Lung lesion (COVID-19 infection, nodule) segmentation in chest CT (3D U-Net).",
        modality="CT",
        default_data="data/COVID-19-20_phantom",
        default_datalist="data_manifests/lung_phantom.json",
        data_generator="pipelines.phantoms.lung_ct.write_lung_ct_phantom_task",
        # 40: the default data's longer scans (chest to thighs and neck) need more than 25 epochs (docs/performance.md)
        demo_overrides={"max_epochs": 40},
    ),
    "brain": Workflow(
        name="brain",
        description="Glioma sub-region segmentation in multi-sequence brain MRI (FLAIR, T1, T1ce, T2; 3D U-Net).",
        modality="MR",
        default_data="data/BraTS_phantom",
        default_datalist="data_manifests/brain_phantom.json",
        data_generator="pipelines.phantoms.brain_mr.write_brain_phantom_task",
        demo_overrides={"max_epochs": 25},
    ),
    "chest_xray": Workflow(
        name="chest_xray",
        bundle="lung",
        config_suffix="_xray",
        family="xray",
        extra_stages=(),
        description="Chest X-ray: COVID / normal / lung opacity / viral pneumonia classification and 2D lung "
        "segmentation.",
        modality="CXR",
        default_data="data/COVID-19_Radiography_phantom",
        default_datalist="data_manifests/chest_xray_phantom.json",
        data_generator="pipelines.phantoms.chest_xray.write_default_dataset",
        default_cases=24,
    ),
}


def get_workflow(name: str) -> Workflow:
    """Look up a workflow by name, with an error that lists the known ones."""
    try:
        return WORKFLOWS[name]
    except KeyError:
        raise ValueError(f"unknown workflow {name!r}; known workflows: {sorted(WORKFLOWS)}") from None


def bundle_dir(name: str) -> str:
    """Absolute path of a workflow's bundle folder, as a string for bundle configs (``bundle_root``)."""
    return str(get_workflow(name).bundle_dir)


def config_files(name: str, stage: str) -> list[str]:
    """Config files of ``stage`` of workflow ``name`` (see :meth:`Workflow.config_files`)."""
    return get_workflow(name).config_files(stage)


def prepare_default_data(name: str, num_cases: int | None = None, seed: int = 0) -> Path:
    """Write the embedded default dataset of workflow ``name`` under the repo root (idempotent); return its folder.

    The default datalist in ``data_manifests/`` was built from the default ``num_cases`` and ``seed``.
    """
    workflow = get_workflow(name)
    module, _, func = workflow.data_generator.rpartition(".")
    generate = getattr(importlib.import_module(module), func)
    cases = workflow.default_cases if num_cases is None else num_cases
    return generate(REPO_ROOT / workflow.default_data, num_cases=cases, seed=seed)


def ensure_default_data(name: str, dataset_dir: str | os.PathLike) -> None:
    """Write the default data of workflow ``name`` if ``dataset_dir`` is its default folder; else do nothing.

    Bundle configs call it in ``initialize``, so that a fresh clone trains on the embedded data with no extra step,
    while a user's own ``dataset_dir`` is never touched.
    """
    default = (REPO_ROOT / get_workflow(name).default_data).resolve()
    if Path(dataset_dir).resolve() == default:
        prepare_default_data(name)
