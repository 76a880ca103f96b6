"""The chest X-ray trainings (``train_xray.yaml``, ``train_classifier_xray.yaml``) resume with ``resume=true``: one
epoch, then a second run to ``max_epochs=2`` that goes on at epoch 2, in the same MLflow run, with the best model
intact; and a segmenter training killed with SIGKILL resumes from ``radcascade run``. The pieces themselves are
tested in ``test_resume.py``."""

import json
from pathlib import Path

import mlflow
import pytest
import torch
from ignite.engine import Events

from .kill_resume import MAX_EPOCHS, kill_after_epoch, resume_to_the_end, train_command
from .test_chest_xray_bundle import run_xray_stage, shrink_overrides, write_tiny_dataset, xray_workflow

STAGES = {
    # stage: (experiment, run name prefix, key metric, state file, best model)
    "train": ("chest_xray_segmentation", "train_", "val_mean_dice", "train_state_xray.pt", "model_xray.pt"),
    "train_classifier": (
        "chest_xray_classification",
        "train_classifier_",
        "val_macro_f1",
        "classifier_train_state_xray.pt",
        "classifier_xray.pt",
    ),
}


def _meta(state: Path) -> dict:
    return torch.load(state, map_location="cpu", weights_only=True)["meta"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_training_resumes_in_the_same_run_and_keeps_the_best_model(tmp_path, caplog, stage):
    experiment, prefix, metric, state_name, model_name = STAGES[stage]
    root = tmp_path / "data"
    overrides = shrink_overrides(root, write_tiny_dataset(root, num_per_class=3, seed=2), tmp_path / "out")
    models = Path(overrides["ckpt_dir"])
    state, model, record = models / state_name, models / model_name, models / f"{Path(model_name).stem}.best.json"

    # 1. one epoch: its state, the best model and its record are on disk
    run_xray_stage(stage, overrides)
    first = _meta(state)
    assert first["epoch"] == 1 and first["finished"]
    assert json.loads(record.read_text())["epoch"] == 1
    model_before = model.read_bytes()

    # 2. the same stage with resume=true and one more epoch: only epoch 2 is trained
    workflow = xray_workflow(stage, {**overrides, "resume": True, "max_epochs": 2})
    workflow.initialize()
    epochs: list[int] = []
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: epochs.append(engine.state.epoch))
    with caplog.at_level("INFO", logger="pipelines.training.resume"):
        workflow.run()
    workflow.finalize()
    assert epochs == [2]
    assert "resumed the training from" in caplog.text and "at epoch 1 of 2" in caplog.text
    second = _meta(state)
    assert second["epoch"] == 2 and second["finished"]
    assert trainer.state.iteration == 2 * trainer.state.epoch_length

    # 3. one MLflow run, reopened and finished, with each validation logged once
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(overrides['output_dir']) / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_name.startswith(prefix) for r in runs] == [True]
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == "1"
    assert second["mlflow_run_id"] == first["mlflow_run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, metric)
    assert sorted(m.step for m in history) == [1, 2]

    # 4. the best model is the best of both validations, replaced only by a better score, and loadable
    best = json.loads(record.read_text())
    assert best["metric"] == metric
    assert best["score"] == pytest.approx(max(m.value for m in history), abs=1e-6)
    if best["epoch"] == 1:
        assert model.read_bytes() == model_before
    network = workflow.parser.get_parsed_content("network")
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))


def test_resume_keeps_a_better_model_from_before(tmp_path):
    """A resumed run beats the score on record, not a fresh start: an unbeatable record keeps the old model."""
    root = tmp_path / "data"
    overrides = shrink_overrides(root, write_tiny_dataset(root, num_per_class=3, seed=2), tmp_path / "out")
    models = Path(overrides["ckpt_dir"])
    run_xray_stage("train", overrides)
    record = models / "model_xray.best.json"
    unbeatable = {**json.loads(record.read_text()), "score": 2.0}  # a Dice never reaches 2
    record.write_text(json.dumps(unbeatable))
    model_before = (models / "model_xray.pt").read_bytes()

    run_xray_stage("train", {**overrides, "resume": True, "max_epochs": 2})
    assert (models / "model_xray.pt").read_bytes() == model_before
    assert json.loads(record.read_text()) == unbeatable
    assert _meta(models / "train_state_xray.pt")["best"]["score"] == 2.0


@pytest.mark.slow
def test_killed_training_resumes_where_it_stopped(tmp_path):
    root = tmp_path / "data"
    out = tmp_path / "out"
    overrides = {**shrink_overrides(root, write_tiny_dataset(root), out), "max_epochs": MAX_EPOCHS}
    state, record = out / "models" / "train_state_xray.pt", out / "models" / "model_xray.best.json"

    # 1. start a training and kill it (no clean-up possible) as soon as the state of epoch 2 is on disk
    killed_at = kill_after_epoch(train_command("chest_xray", overrides), state, tmp_path / "first.log")

    # 2. resume: same command plus resume=true
    resume_to_the_end(train_command("chest_xray", {**overrides, "resume": True}), tmp_path / "second.log", killed_at)
    saved = _meta(state)
    assert saved["epoch"] == MAX_EPOCHS and saved["finished"]

    # 3. one MLflow run, continued and FINISHED
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("chest_xray_segmentation").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == str(killed_at)
    assert saved["mlflow_run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "val_mean_dice")
    assert {m.step for m in history} == set(range(1, MAX_EPOCHS + 1))

    # 4. the best model is the best of all validations
    assert json.loads(record.read_text())["score"] == pytest.approx(max(m.value for m in history), abs=1e-6)
