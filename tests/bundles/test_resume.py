"""An interrupted training resumes from its last state with ``resume=true``: the pieces of
``pipelines.training.resume`` on
small engines, then a liver training killed with SIGKILL in the middle of an epoch and resumed from the command line.
"""

import json
import random
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset, ThreadDataLoader
from monai.handlers import EarlyStopHandler
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandRotated, RandSpatialCropd
from monai.utils import set_determinism

from data_manifests.msd import build_msd_datalist
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.training import resume
from pipelines.training.batch_digests import BatchDigestRecorder
from pipelines.training.random_state import capture_random_state, randomizable_transforms, restore_random_state
from pipelines.training.resumable_run import ResumableRunHandler
from pipelines.training.resume import BestCheckpointSaver, TrainingStateHandler
from pipelines.training.tracking import default_tracking_uri
from pipelines.training.training_state import STATE_VERSION, TrainingState

from .conftest import TINY_SHAPE, TINY_SPACING, bundle_workflow
from .kill_resume import MAX_EPOCHS, kill_after_epoch, resume_to_the_end, train_command


@pytest.mark.slow
def test_killed_training_resumes_where_it_stopped(tmp_path, shrink_overrides):
    task = tmp_path / "task"
    write_liver_phantom_task(task, num_cases=5, seed=3, shape=TINY_SHAPE, spacing=TINY_SPACING)
    datalist = task / "datalist.json"
    build_msd_datalist(task, val_fraction=0.2, test_fraction=0.2, seed=0, output_path=datalist)
    out = tmp_path / "out"
    overrides = {**shrink_overrides(task, datalist, out), "max_epochs": MAX_EPOCHS, "val_interval": 1}
    state, model, record = (
        out / "models" / "train_state.pt",
        out / "models" / "model.pt",
        out / "models" / "model.best.json",
    )

    # 1. start a training and kill it (no clean-up possible) as soon as the state of epoch 2 is on disk
    killed_at = kill_after_epoch(train_command("liver", overrides), state, tmp_path / "first.log")

    # 2. resume: same command plus resume=true
    resume_to_the_end(train_command("liver", {**overrides, "resume": True}), tmp_path / "second.log", killed_at)
    saved = torch.load(state, map_location="cpu", weights_only=True)["meta"]
    assert saved["epoch"] == MAX_EPOCHS and saved["finished"]

    # 3. one MLflow run, continued and FINISHED, its epochs logged once each up to the kill
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("test_liver").experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == str(killed_at)
    assert saved["mlflow_run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "val_mean_dice")
    steps = [m.step for m in history]
    assert max(steps) == MAX_EPOCHS and set(steps) == set(range(1, MAX_EPOCHS + 1))
    assert all(steps.count(epoch) == 1 for epoch in range(1, killed_at + 1)), steps

    # 4. the best model is intact, loadable, and the best of all validations
    best = json.loads(record.read_text())
    assert best["score"] == pytest.approx(max(m.value for m in history), abs=1e-6)
    network = UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="instance", dropout=0.1)
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))


# ---- the pieces, on small engines ------------------------------------------------------------------------------
def _validator(metric: float, epoch: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_dice": metric}
    engine.state.epoch = epoch
    return engine


def _best_saver(folder: Path, network: torch.nn.Module) -> BestCheckpointSaver:
    return BestCheckpointSaver(folder, {"model": network}, key_metric_filename="model.pt", key_metric_name="val_dice")


def test_best_model_is_a_plain_state_dict_with_a_record(tmp_path):
    network = torch.nn.Linear(2, 1)
    saver = _best_saver(tmp_path, network)
    saver(_validator(0.5, epoch=1))
    saver(_validator(0.4, epoch=2))  # worse: not saved
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}
    assert json.loads((tmp_path / "model.best.json").read_text())["score"] == 0.5
    assert saver.best["epoch"] == 1 and saver.best["metric"] == "val_dice"


def test_restored_saver_never_replaces_the_best_model_by_a_worse_one(tmp_path):
    _best_saver(tmp_path, torch.nn.Linear(2, 1))(_validator(0.5, epoch=1))
    saved = (tmp_path / "model.pt").read_bytes()
    saver = _best_saver(tmp_path, torch.nn.Linear(2, 1))  # a new process
    assert saver.restore()["score"] == 0.5
    saver(_validator(0.45, epoch=2))
    assert (tmp_path / "model.pt").read_bytes() == saved
    saver(_validator(0.55, epoch=3))
    assert (tmp_path / "model.pt").read_bytes() != saved and saver.best["epoch"] == 3


def test_a_kill_between_record_and_model_keeps_the_older_model(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 1)
    _best_saver(tmp_path, network)(_validator(0.5, epoch=1))
    saved = (tmp_path / "model.pt").read_bytes()

    def killed(obj, path):
        raise KeyboardInterrupt  # the process dies after the record, before the model is renamed into place

    monkeypatch.setattr(resume, "_save_torch", killed)
    with pytest.raises(KeyboardInterrupt):
        _best_saver(tmp_path, network)(_validator(0.7, epoch=2))
    monkeypatch.undo()
    assert (tmp_path / "model.pt").read_bytes() == saved
    saver = _best_saver(tmp_path, network)
    saver.restore()
    saver(_validator(0.6, epoch=3))  # better than the model on disk, worse than the record: kept out, never worse
    assert (tmp_path / "model.pt").read_bytes() == saved


def test_restore_without_record_saves_at_the_next_validation(tmp_path, caplog):
    saver = _best_saver(tmp_path, torch.nn.Linear(2, 1))
    assert saver.restore() is None and "no readable record" in caplog.text
    saver(_validator(0.1, epoch=1))
    assert (tmp_path / "model.pt").is_file()


def _training(folder: Path, resume_flag: bool, max_epochs: int, seen_epochs: list):
    """A tiny training on an ignite Engine with the handler attached; returns (engine, objects)."""
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    def step(engine, batch):
        optimizer.zero_grad()
        loss = network(torch.ones(2, 3) * batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    engine = Engine(step)
    engine.state.max_epochs = max_epochs  # MONAI's workflows set it at construction
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen_epochs.append(e.state.epoch))
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    early_stop = EarlyStopHandler(patience=5, score_function=lambda e: 0.0, trainer=engine)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1, -1
    best = _best_saver(folder, network)
    best(_validator(0.3, epoch=1))
    state = TrainingState(folder / "train_state.pt", resume=resume_flag)
    handler = TrainingStateHandler(
        state, {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler}, evaluator, best, early_stop
    )
    handler.attach(engine)
    return engine, dict(network=network, optimizer=optimizer, scheduler=scheduler, early_stop=early_stop, ev=evaluator)


def test_state_round_trip_continues_the_epochs(tmp_path):
    first: list[int] = []
    engine, objs = _training(tmp_path, False, 2, first)
    objs["early_stop"]._handler.counter = 3
    engine.run([1.0, 2.0, 3.0], max_epochs=2)
    assert first == [1, 2]
    saved = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert saved["meta"]["epoch"] == 2 and saved["meta"]["finished"] and saved["early_stop"]["counter"] == 3

    second: list[int] = []
    engine, resumed = _training(tmp_path, True, 4, second)
    engine.run([1.0, 2.0, 3.0], max_epochs=4)
    assert second == [3, 4] and engine.state.iteration == 12
    assert resumed["scheduler"].last_epoch == 4 and resumed["optimizer"].state_dict()["state"][0]["step"] == 12
    assert resumed["ev"].state.best_metric == 0.3 and resumed["ev"].state.best_metric_epoch == 1


@pytest.mark.parametrize("flag, expected", [(True, True), ("false", False), ("True", True), ("no", False), (0, False)])
def test_resume_flag_from_any_command_line(tmp_path, flag, expected):
    assert TrainingState(tmp_path / "s.pt", resume=flag).resume is expected


def test_resume_flag_rejects_other_values(tmp_path):
    with pytest.raises(ValueError, match="resume must be true or false"):
        TrainingState(tmp_path / "s.pt", resume="sometimes")


def test_resume_without_state_starts_fresh(tmp_path, caplog):
    state = TrainingState(tmp_path / "train_state.pt", resume=True)
    assert not state.resuming and "starting a new training" in caplog.text
    assert state.run_name_or("train_").startswith("train_")


def test_new_training_removes_an_earlier_state(tmp_path):
    engine, _ = _training(tmp_path, False, 1, [])
    engine.run([1.0], max_epochs=1)
    (tmp_path / ".train_state-x1.pt").write_bytes(b"half")  # left by a kill during a save
    engine, _ = _training(tmp_path, False, 1, [])
    removed = []
    engine.add_event_handler(Events.STARTED, lambda e: removed.append(not (tmp_path / "train_state.pt").exists()))
    engine.run([1.0], max_epochs=1)
    assert removed == [True] and not (tmp_path / ".train_state-x1.pt").exists()


def test_incompatible_or_finished_state_is_refused_before_the_run(tmp_path):
    engine, _ = _training(tmp_path, False, 2, [])
    engine.run([1.0], max_epochs=2)
    with pytest.raises(ValueError, match="reached epoch 2 of max_epochs 2"):
        _training(tmp_path, True, 2, [])
    saved = torch.load(tmp_path / "train_state.pt", weights_only=True)
    saved["network"]["weight"] = torch.zeros(1, 4)
    torch.save(saved, tmp_path / "train_state.pt")
    with pytest.raises(ValueError, match="does not match this configuration"):
        _training(tmp_path, True, 5, [])
    (tmp_path / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the training state"):
        TrainingState(tmp_path / "train_state.pt", resume=True).checkpoint  # noqa: B018


def test_mlflow_run_is_reopened_by_id_and_joined(tmp_path):
    uri = default_tracking_uri(tmp_path)
    first = TrainingState(tmp_path / "train_state.pt")
    handler = ResumableRunHandler(
        first, tracking_uri=uri, experiment_name="e", run_name="r1", experiment_param={"a": 1}
    )
    engine = Engine(lambda e, b: None)
    handler.start(engine)
    run_id = first.run_id
    handler.client.set_terminated(run_id, "FAILED")
    torch.save({"meta": {"version": STATE_VERSION, "epoch": 3, "mlflow_run_id": run_id}}, first.path)

    state = TrainingState(first.path, resume=True)
    trainer_handler = ResumableRunHandler(
        state, tracking_uri=uri, experiment_name="e", run_name="r2", experiment_param={"a": 2, "b": 3}
    )
    trainer_handler.start(engine)  # a changed parameter is reported, not an error
    ResumableRunHandler(state, tracking_uri=uri, experiment_name="e", run_name="r2").start(engine)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "RUNNING" and runs[0].data.tags["resumed_from_epoch"] == "3"
    assert runs[0].data.params == {"a": "1", "b": "3", "max_epochs": "None", "epoch_length": "None"}
    trainer_handler.close()


# ---- the random generators -------------------------------------------------------------------------------------
def _augmenting_loader(loader_class=ThreadDataLoader, generator=None):
    """Six tiny volumes through random crops, flips, rotations and noise, shuffled."""
    data = [{"image": np.full((1, 8, 8, 6), float(i), np.float32)} for i in range(6)]
    transform = Compose(
        [
            RandSpatialCropd("image", roi_size=(4, 4, 4), random_size=False),
            RandFlipd("image", prob=0.5, spatial_axis=0),
            RandRotated("image", range_x=0.4, prob=0.5),
            RandGaussianNoised("image", prob=0.5),
        ]
    )
    return loader_class(Dataset(data, transform), batch_size=2, shuffle=True, generator=generator)


@pytest.fixture
def seeded():
    """``set_determinism(seed=0)``, undone after the test."""
    set_determinism(seed=0)
    yield
    set_determinism(seed=None)


def _epoch(loader) -> list[torch.Tensor]:
    return [batch["image"].as_tensor().clone() for batch in loader]


def _weights_only_round_trip(state: dict, path: Path) -> dict:
    torch.save(state, path)
    return torch.load(path, weights_only=True)


def test_randomizable_transforms_are_found_inside_the_compose_and_inside_dictionary_transforms():
    paths = [path for path, _ in randomizable_transforms(_augmenting_loader())]
    assert paths[0] == "dataset.transform" and "dataset.transform.transforms[2].rand_rotate" in paths
    assert "dataset.transform.transforms[3].rand_gaussian_noise" in paths and len(paths) == len(set(paths))


@pytest.mark.parametrize(
    "loader_class, generator", [(ThreadDataLoader, None), (DataLoader, torch.Generator().manual_seed(3))]
)
def test_restored_random_state_replays_the_next_epoch_and_the_global_draws(seeded, tmp_path, loader_class, generator):
    loader = _augmenting_loader(loader_class, generator)
    _epoch(loader)  # the random state is saved after an epoch, as at EPOCH_COMPLETED
    saved = _weights_only_round_trip(capture_random_state(loader), tmp_path / "random.pt")
    expected = _epoch(loader), random.random(), float(np.random.rand()), torch.rand(3)

    set_determinism(seed=1)  # another process, seeded as the bundle's initialize does
    loader.dataset.transform.set_random_state(seed=7)
    if generator is not None:
        generator.manual_seed(99)
    restore_random_state(saved, loader)
    replayed = _epoch(loader), random.random(), float(np.random.rand()), torch.rand(3)
    assert len(replayed[0]) == len(expected[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(replayed[0], expected[0], strict=True))
    assert replayed[1:3] == expected[1:3] and torch.equal(replayed[3], expected[3])
    assert (generator is not None) == bool(saved["generators"])


def test_changed_transforms_keep_their_seed_and_say_so(seeded, tmp_path, caplog):
    saved = _weights_only_round_trip(capture_random_state(_augmenting_loader()), tmp_path / "random.pt")
    draw = torch.rand(2)
    loader = _augmenting_loader()
    loader.dataset.transform.transforms = loader.dataset.transform.transforms[:2]  # the augmentation changed
    before = [transform.R.get_state()[2] for _, transform in randomizable_transforms(loader)]
    restore_random_state(saved, loader, source="state.pt")
    assert "state.pt: the random transforms changed" in caplog.text and "transforms[2].rand_rotate" in caplog.text
    assert [transform.R.get_state()[2] for _, transform in randomizable_transforms(loader)] == before
    assert torch.equal(torch.rand(2), draw)  # the global generators are restored all the same


def test_batch_digests_per_epoch_are_kept_across_a_resume(tmp_path):
    batches = [{"image": torch.full((1, 2, 2), float(i)), "label": torch.zeros(1, 2, 2)} for i in (0, 1, 0)]
    recorder = BatchDigestRecorder(tmp_path / "digests_{rank}.json", keys=["image", "label"])
    engine = Engine(lambda engine, batch: None)
    recorder.attach(engine)
    recorder.attach(engine)  # attached once
    engine.run(batches, max_epochs=1)
    first = json.loads((tmp_path / "digests_0.json").read_text())
    digests = first["epochs"]["1"]
    assert first["rank"] == 0 and len(digests) == 3 and digests[0] == digests[2] != digests[1]

    resumed = BatchDigestRecorder(tmp_path / "digests_{rank}.json", keys=["image", "label"])
    engine = Engine(lambda engine, batch: None)
    resumed.attach(engine)
    engine.load_state_dict({"epoch": 1, "epoch_length": 3, "max_epochs": 2})
    engine.run(batches, max_epochs=2)
    assert json.loads((tmp_path / "digests_0.json").read_text())["epochs"] == {"1": digests, "2": digests}
    with pytest.raises(ValueError, match="no 'mask' entry"):
        BatchDigestRecorder(tmp_path / "d.json", keys="mask").digest(batches[0])


def _train_liver_to_epoch_2(overrides: dict, out: Path, snapshot: Path | None = None):
    """Train the shrunk liver bundle up to epoch 2 in ``out``; returns its final weights and batch digests.

    With ``snapshot``, the training state saved at the end of epoch 1 is copied there: the file that a kill during
    epoch 2 would leave behind.
    """
    workflow = bundle_workflow(
        "liver", "train", {**overrides, "output_dir": str(out), "ckpt_dir": str(out / "models"), "max_epochs": 2}
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    if snapshot is not None:
        state = out / "models" / "train_state.pt"
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: shutil.copy(state, snapshot))
    recorder = BatchDigestRecorder(out / "batches.json", keys=["image", "label"])
    recorder.attach(trainer)
    workflow.run()
    workflow.finalize()
    weights = {
        k: v.detach().cpu().clone() for k, v in workflow.parser.get_parsed_content("network").state_dict().items()
    }
    return weights, recorder.epochs


@pytest.mark.slow
def test_resumed_training_draws_the_batches_and_reaches_the_weights_of_an_uninterrupted_one(
    tiny_liver_task, shrink_overrides, tmp_path, caplog
):
    task, datalist = tiny_liver_task
    overrides = shrink_overrides(task, datalist, tmp_path)
    snapshot = tmp_path / "state_after_epoch_1.pt"
    weights, batches = _train_liver_to_epoch_2(overrides, tmp_path / "whole", snapshot=snapshot)
    saved = torch.load(snapshot, map_location="cpu", weights_only=True)
    assert saved["meta"]["epoch"] == 1 and len(saved["random"]["transforms"]["paths"]) >= 7

    def resume_from(state: dict, name: str):
        out = tmp_path / name
        (out / "models").mkdir(parents=True)
        torch.save(state, out / "models" / "train_state.pt")
        return _train_liver_to_epoch_2({**overrides, "resume": True}, out)

    # resumed from the state of epoch 1: epoch 2 sees the same crops, flips and order, and ends at the same weights
    resumed_weights, resumed_batches = resume_from(saved, "resumed")
    assert resumed_batches == {"2": batches["2"]}
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)

    # the same state without its random generators (a state file of an older version) draws other batches
    del saved["random"]
    _, other_batches = resume_from(saved, "resumed_without_random_state")
    assert "holds no random state" in caplog.text
    assert other_batches["2"] != batches["2"]
