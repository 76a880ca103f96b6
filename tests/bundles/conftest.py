"""Fixtures for bundle tests: a tiny phantom MSD task with a datalist, and overrides that shrink a bundle."""

from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from data_manifests.msd import build_msd_datalist
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.workflows import STAGE_TYPES, get_workflow

TINY_SHAPE = (64, 64, 24)
TINY_SPACING = (4.0, 4.0, 6.0)


@pytest.fixture(scope="module")
def tiny_liver_task(tmp_path_factory) -> tuple[Path, Path]:
    """A 5-case phantom task folder (MSD layout) and its datalist; returns ``(task_dir, datalist_path)``."""
    task = tmp_path_factory.mktemp("Task03_Liver_tiny")
    write_liver_phantom_task(task, num_cases=5, seed=3, shape=TINY_SHAPE, spacing=TINY_SPACING)
    datalist = task / "datalist.json"
    build_msd_datalist(task, val_fraction=0.2, test_fraction=0.2, seed=0, output_path=datalist)
    return task, datalist


# Ids that make any 3D bundle's network, patches and training tiny (the model-zoo smoke-test recipe).
SHRINK_NETWORK = {
    "roi_size": [32, 32, 16],
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
    "max_epochs": 1,
    "val_interval": 1,
    "batch_size": 1,
    "num_samples": 1,
    "cache_rate": 0.0,
    "num_workers": 0,
    "sw_batch_size": 2,
}


def _shrink_overrides(task: Path, datalist: Path, out: Path) -> dict:
    """Overrides that make the liver bundle run in seconds on the CPU on ``task``, writing under ``out``."""
    return {
        "dataset_dir": str(task),
        "data_list_file_path": str(datalist),
        "output_dir": str(out),
        "ckpt_dir": str(out / "models"),
        "pixdim": [4.0, 4.0, 6.0],
        **SHRINK_NETWORK,
        "experiment_name": "test_liver",
    }


@pytest.fixture(scope="session")
def shrink_overrides():
    """``shrink_overrides(task_dir, datalist, output_dir) -> dict`` of ids that make the liver bundle tiny."""
    return _shrink_overrides


@pytest.fixture
def liver_configs() -> dict[str, list[str]]:
    """Config file lists of the liver bundle per stage."""
    workflow = get_workflow("liver")
    return {stage: workflow.config_files(stage) for stage in workflow.stages}


def bundle_workflow(name: str, stage: str, overrides: dict, **kwargs) -> ConfigWorkflow:
    """A ``ConfigWorkflow`` of one stage of workflow ``name``'s bundle, not yet initialised."""
    workflow = get_workflow(name)
    configs = workflow.bundle_dir / "configs"
    return ConfigWorkflow(
        config_file=workflow.config_files(stage),
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        workflow_type=STAGE_TYPES[stage],
        **kwargs,
        **overrides,
    )


def run_bundle_stage(name: str, stage: str, overrides: dict, check: bool = False) -> ConfigWorkflow:
    """Run one stage of workflow ``name`` through MONAI's ``ConfigWorkflow`` (initialize, run, finalize)."""
    workflow = bundle_workflow(name, stage, overrides)
    workflow.initialize()
    if check:
        assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return workflow


def run_liver_stage(stage: str, overrides: dict, check: bool = False) -> ConfigWorkflow:
    """Run one stage of the liver bundle (see :func:`run_bundle_stage`)."""
    return run_bundle_stage("liver", stage, overrides, check)


def liver_workflow(stage: str, overrides: dict, **kwargs) -> ConfigWorkflow:
    """A ``ConfigWorkflow`` of one stage of the liver bundle, not yet initialised."""
    return bundle_workflow("liver", stage, overrides, **kwargs)


@pytest.fixture(scope="session")
def liver_stage():
    """``liver_stage(stage, overrides, check=False)`` runs one stage of the liver bundle."""
    return run_liver_stage


@pytest.fixture(scope="session")
def make_liver_workflow():
    """``make_liver_workflow(stage, overrides, **kwargs)`` builds a stage's ``ConfigWorkflow``."""
    return liver_workflow


@pytest.fixture(scope="module")
def trained(tiny_liver_task, tmp_path_factory):
    """The shrunk liver segmenter trained once per test module; returns the overrides that locate it."""
    task, datalist = tiny_liver_task
    overrides = _shrink_overrides(task, datalist, tmp_path_factory.mktemp("liver_run"))
    run_liver_stage("train", overrides, check=True)
    return overrides
