"""Training curves: the run chosen, the histories read, the PNG and the command line, on a real MLflow store."""

import mlflow
import pytest
from monai.utils import path_to_sqlite_uri
from PIL import Image

from pipelines.reports.training_curves import TrainingCurvesHandler, find_training_run, main, read_curves

EXPERIMENT = "liver_ct_segmentation"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An SQLite store with a training run (3 epochs of 4 iterations) and a later evaluation run.

    Module-scoped: creating an MLflow database takes seconds. Tests only add to it (artifacts, experiments).
    """
    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = path_to_sqlite_uri(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "mlruns").as_uri())
    train = client.create_run(experiment_id, run_name="train_1")
    run_id = train.info.run_id
    client.log_param(run_id, "epoch_length", 4)
    for iteration in range(1, 13):
        client.log_metric(run_id, "train_loss", 2.0 / iteration, step=iteration)
        client.log_metric(run_id, "lr_group_0", 0.002 * (0.9**iteration), step=iteration)
    for epoch in range(1, 4):
        client.log_metric(run_id, "train_mean_dice", 0.2 * epoch, step=epoch)
        client.log_metric(run_id, "val_mean_dice", 0.25 * epoch, step=epoch)
        client.log_metric(run_id, "val_tumour_dice", 0.1 * epoch, step=epoch)
    client.log_metric(run_id, "val_tversky", 0.5, step=1)  # not a curve of the plot
    client.set_terminated(run_id)
    evaluation = client.create_run(experiment_id, run_name="evaluate_1")
    client.log_metric(evaluation.info.run_id, "test_mean_dice", 0.7)
    client.set_terminated(evaluation.info.run_id)
    return uri, run_id, evaluation.info.run_id


def test_latest_training_run_is_found_past_evaluation_runs(store):
    uri, run_id, evaluation_id = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert find_training_run(client, EXPERIMENT).info.run_id == run_id
    assert find_training_run(client, EXPERIMENT, evaluation_id).info.run_id == evaluation_id


def test_curves_are_read_on_the_epoch_axis(store):
    uri, run_id, _ = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    curves = read_curves(client, client.get_run(run_id))
    assert sorted(curves) == ["lr_group_0", "train_loss", "train_mean_dice", "val_mean_dice", "val_tumour_dice"]
    assert curves["train_loss"][0] == (0.25, 2.0) and curves["train_loss"][-1][0] == 3.0  # iteration 1 of 4
    assert curves["val_mean_dice"] == [(1, 0.25), (2, 0.5), (3, 0.75)]


def test_command_line_writes_the_png_and_logs_it(store, tmp_path, capsys):
    uri, run_id, _ = store
    output = tmp_path / "plots" / "curves.png"
    assert main(["--tracking-uri", uri, "--experiment", EXPERIMENT, "--output", str(output), "--log-artifact"]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    with Image.open(output) as png:
        assert png.format == "PNG" and png.size == (1200, 380)
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert "curves.png" in [a.path for a in client.list_artifacts(run_id)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiment", "nope"], "no MLflow experiment 'nope' at sqlite:"),
        (["--experiment", EXPERIMENT, "--run-id", "0123abc"], "no MLflow run '0123abc' in experiment"),
    ],
)
def test_command_line_errors_name_the_store_and_experiment(store, tmp_path, capsys, args, message):
    uri, _, _ = store
    with pytest.raises(SystemExit) as exit_info:
        main(["--tracking-uri", uri, *args, "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and uri in err
    assert not (tmp_path / "x.png").exists()


def test_missing_database_is_not_created(tmp_path, capsys):
    uri = path_to_sqlite_uri(tmp_path / "typo.db")
    with pytest.raises(SystemExit):
        main(["--tracking-uri", uri, "--experiment", EXPERIMENT])
    assert "no MLflow database at" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()


def test_an_experiment_without_training_run_is_reported(store, tmp_path):
    uri, _, _ = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_experiment("empty", artifact_location=(tmp_path / "empty").as_uri())
    with pytest.raises(ValueError, match="no MLflow run with a 'train_loss' metric in experiment 'empty'"):
        find_training_run(client, "empty")


def test_handler_warns_instead_of_failing_a_finished_training(store, tmp_path, caplog):
    uri, run_id, _ = store
    stale = tmp_path / "training_curves.png"
    stale.write_bytes(b"an older training's plot")
    assert TrainingCurvesHandler(stale, uri, "missing")() is None
    assert not stale.exists() and "training curves not written" in caplog.text
    state = type("State", (), {"run_id": run_id})()
    assert TrainingCurvesHandler(stale, uri, EXPERIMENT, state)() == stale and stale.is_file()
