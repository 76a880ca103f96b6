"""MLflow tracking of the liver bundle: on by default, compatible with --tracking mlflow, never left RUNNING."""

import mlflow
import pytest


def _runs(out):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test_liver")
    return client, client.search_runs([experiment.experiment_id])


def test_monai_tracking_switch_joins_our_run_without_logging_twice(
    tiny_liver_task, tmp_path, shrink_overrides, make_liver_workflow
):
    task, datalist = tiny_liver_task
    workflow = make_liver_workflow("train", shrink_overrides(task, datalist, tmp_path), tracking="mlflow")
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    client, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    iterations = len(workflow.parser.get_parsed_content("train#dataloader"))
    losses = client.get_metric_history(run_id, "train_loss")
    assert len(losses) == iterations, "train_loss must be logged once per iteration"
    assert len(client.get_metric_history(run_id, "val_mean_dice")) == 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "model.pt" in artifacts


def test_crash_during_training_marks_the_run_failed(tiny_liver_task, tmp_path, shrink_overrides, make_liver_workflow):
    task, datalist = tiny_liver_task
    # Two output channels for labels 0..2: one-hot encoding of the label fails in the first iteration.
    workflow = make_liver_workflow("train", {**shrink_overrides(task, datalist, tmp_path), "num_classes": 2})
    workflow.initialize()
    with pytest.raises(Exception):  # noqa: B017 - any error from inside the engine will do
        workflow.run()
    _, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
