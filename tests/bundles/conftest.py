"""Fixtures for bundle tests: a tiny phantom MSD task with a datalist, and overrides that shrink a bundle."""

from pathlib import Path

import pytest

from data_manifests.msd import build_msd_datalist
from pipelines.phantoms import write_liver_phantom_task
from pipelines.workflows import get_workflow

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


def _shrink_overrides(task: Path, datalist: Path, out: Path) -> dict:
    """Overrides that make the liver bundle run in seconds on the CPU (the model-zoo smoke-test recipe)."""
    return {
        "dataset_dir": str(task),
        "data_list_file_path": str(datalist),
        "output_dir": str(out),
        "ckpt_dir": str(out / "models"),
        "pixdim": [4.0, 4.0, 6.0],
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
