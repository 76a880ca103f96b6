"""MLflow tracking of the liver bundle: on by default, compatible with --tracking mlflow, never left RUNNING."""

import mlflow
import pytest
from monai.bundle import ConfigWorkflow

from pipelines.workflows import get_workflow

CONFIGS = get_workflow("liver").bundle_dir / "configs"


def _train_workflow(overrides, tracking=None) -> ConfigWorkflow:
    return ConfigWorkflow(
        config_file=get_workflow("liver").config_files("train"),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        tracking=tracking,
        **overrides,
    )


def _runs(out):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test_liver")
    return client, client.search_runs([experiment.experiment_id])


def test_monai_tracking_switch_joins_our_run_without_logging_twice(tiny_liver_task, tmp_path, shrink_overrides):
    task, datalist = tiny_liver_task
    workflow = _train_workflow(shrink_overrides(task, datalist, tmp_path), tracking="mlflow")
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    client, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    iterations = len(workflow.train_dataset_loader) if hasattr(workflow, "train_dataset_loader") else None
    losses = client.get_metric_history(run_id, "train_loss")
    assert len({m.step for m in losses}) == len(losses), "train_loss logged twice for a step"
    if iterations is not None:
        assert len(losses) == iterations
    assert len(client.get_metric_history(run_id, "val_mean_dice")) == 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "model.pt" in artifacts


def test_crash_during_training_marks_the_run_failed(tiny_liver_task, tmp_path, shrink_overrides):
    task, datalist = tiny_liver_task
    # Two output channels for labels 0..2: one-hot encoding of the label fails in the first iteration.
    workflow = _train_workflow({**shrink_overrides(task, datalist, tmp_path), "num_classes": 2})
    workflow.initialize()
    with pytest.raises(Exception):  # noqa: B017 - any error from inside the engine will do
        workflow.run()
    _, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
