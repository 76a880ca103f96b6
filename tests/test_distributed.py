"""pipelines.training.distributed: handler filtering, data shards, process-group set-up, per-rank weights."""

import json
import socket

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import StatsHandler, ValidationHandler

from pipelines.training import distributed
from pipelines.training.distributed import (
    RankWeightsSaver,
    check_resume_unsupported,
    rank_seed,
    rank_zero_only,
    shard_datalist,
)


class TrainingStateHandler:  # stands in for pipelines.training.resume's class: matched by name
    pass


class LoudStats(StatsHandler):  # a subclass of a rank-0-only class
    pass


def _handlers():
    return [StatsHandler(), ValidationHandler(interval=1), TrainingStateHandler(), LoudStats(), "not a handler"]


def test_rank_zero_keeps_every_handler():
    handlers = _handlers()
    assert rank_zero_only(handlers, rank=0) == handlers


def test_other_ranks_drop_writers_by_class_name_and_base_class():
    kept = rank_zero_only(_handlers(), rank=1)
    assert [type(h).__name__ for h in kept] == ["ValidationHandler", "str"]


def test_rank_zero_only_takes_custom_names_and_none():
    assert rank_zero_only(None, rank=1) == []
    kept = rank_zero_only(_handlers(), names=["ValidationHandler"], rank=1)
    assert [type(h).__name__ for h in kept] == ["StatsHandler", "TrainingStateHandler", "LoudStats", "str"]


def test_rank_zero_only_names_the_resume_handlers():
    assert {"TrackedRunHandler", "ResumableRunHandler", "BestCheckpointSaver", "TrainingStateHandler"} <= set(
        distributed.RANK_ZERO_ONLY
    )


def _datalist(n):
    return [{"image": f"imagesTr/case_{i}.nii.gz", "label": f"labelsTr/case_{i}.nii.gz"} for i in range(n)]


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_shards_are_disjoint_and_cover_an_evenly_divisible_list(world_size):
    data = _datalist(8)
    shards = [shard_datalist(data, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    images = [[item["image"] for item in shard] for shard in shards]
    assert all(len(s) == 8 // world_size for s in images)
    assert sorted(sum(images, [])) == sorted(item["image"] for item in data)


def test_uneven_shards_have_equal_lengths_and_leave_no_case_out():
    data = _datalist(5)
    shards = [shard_datalist(data, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert {item["image"] for s in shards for item in s} == {item["image"] for item in data}


def test_a_list_shorter_than_the_ranks_is_repeated():
    data = _datalist(1)
    assert [shard_datalist(data, shuffle=False, rank=r, world_size=3) for r in range(3)] == [data, data, data]


def test_the_same_seed_gives_the_same_shards_and_another_seed_others():
    data = _datalist(16)
    assert shard_datalist(data, seed=1, rank=0, world_size=2) == shard_datalist(data, seed=1, rank=0, world_size=2)
    assert shard_datalist(data, seed=1, rank=0, world_size=2) != shard_datalist(data, seed=2, rank=0, world_size=2)


def test_shard_record_names_the_cases(tmp_path):
    shard = shard_datalist(_datalist(4), shuffle=False, record_dir=tmp_path, name="val", rank=1, world_size=2)
    record = json.loads((tmp_path / "val_rank1.json").read_text())
    assert record == {"rank": 1, "world_size": 2, "name": "val", "cases": ["case_1.nii.gz", "case_3.nii.gz"]}
    assert [item["image"] for item in shard] == ["imagesTr/case_1.nii.gz", "imagesTr/case_3.nii.gz"]


def test_an_empty_list_is_an_error():
    with pytest.raises(ValueError, match="train datalist is empty"):
        shard_datalist([], rank=0, world_size=2)


def test_without_torchrun_init_is_a_clear_error(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        distributed.init_distributed()


def test_cpu_backend_and_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.default_backend() == "gloo"
    assert distributed.rank_device() == torch.device("cpu")
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1


def test_each_rank_gets_its_own_seed_the_same_for_a_given_rank():
    assert [rank_seed(7, rank=r) for r in range(3)] == [7, 8, 9]
    assert rank_seed(7, rank=2) == rank_seed(7, rank=2) and rank_seed(0) == 0  # rank 0 without a process group
    assert rank_seed(2**32 - 1, rank=1) == 0  # stays a valid NumPy seed
    assert rank_seed(None, rank=1) is None  # no seed: no determinism on any rank


def test_resume_is_refused():
    check_resume_unsupported(False)
    with pytest.raises(ValueError, match="resume"):
        check_resume_unsupported(True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_group_wraps_ddp_and_saves_unwrapped_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="unknown distributed backend"):
        distributed.init_distributed("mpi-ish")
    try:
        assert distributed.init_distributed() == 0
        assert distributed.init_distributed() == 0  # a second call joins nothing new
        assert distributed.get_world_size() == 1
        distributed.barrier()
        network = distributed.wrap_ddp(torch.nn.Linear(3, 2), "cpu")
        assert isinstance(network, torch.nn.parallel.DistributedDataParallel)
        engine = Engine(lambda engine, batch: None)
        RankWeightsSaver(network, tmp_path / "shards").attach(engine)
        engine.run([0], max_epochs=1)
        saved = torch.load(tmp_path / "shards" / "rank0_weights.pt")
        assert saved.keys() == {"weight", "bias"}
        assert torch.equal(saved["weight"], network.module.weight.detach())
    finally:
        distributed.destroy_distributed()
    assert distributed.get_world_size() == 1
