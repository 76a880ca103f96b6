"""MLflow runs of the project: the experiments open on MLflow 3's model-training view (the runs table)."""

import mlflow
from ignite.engine import Engine

from pipelines.training.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, TrackedRunHandler


def _run_once(uri: str, experiment: str) -> None:
    engine = Engine(lambda engine, batch: {"loss": 0.0})
    TrackedRunHandler(tracking_uri=uri, experiment_name=experiment, iteration_log=False, close_on_complete=True).attach(
        engine
    )
    engine.run([0], max_epochs=1)


def test_new_and_existing_experiments_get_the_model_development_kind(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_experiment("made_before_the_tag")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment_by_name("made_before_the_tag").tags

    for name in ("made_before_the_tag", "new_experiment"):
        _run_once(uri, name)
        experiment = client.get_experiment_by_name(name)
        assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
