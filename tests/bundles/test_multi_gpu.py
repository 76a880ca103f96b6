"""The liver bundle's multi_gpu_train.yaml (the training stage with the shared distributed overlay,
bundles/stages/3d/multi_gpu_train.yaml), run by torchrun with two CPU processes (gloo) for one epoch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from data_manifests.msd import build_msd_datalist
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.workflows import REPO_ROOT

CONFIGS = REPO_ROOT / "bundles" / "liver" / "configs"


@pytest.mark.slow
def test_two_cpu_ranks_train_one_epoch(tmp_path, shrink_overrides):
    task = tmp_path / "Task03_Liver_tiny"
    write_liver_phantom_task(task, num_cases=5, seed=3, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0))
    datalist = task / "datalist.json"
    # 4 training cases: two disjoint shards of two on two ranks; the single validation case is shared (padded).
    build_msd_datalist(task, val_fraction=0.2, test_fraction=0.0, seed=0, output_path=datalist, relative_to=task)
    # The training cases get the same voxels (under their own names): the ranks' batches then differ only when
    # their random augmentation does.
    training = json.loads(datalist.read_text())["training"]
    for item in training[1:]:
        for key in ("image", "label"):
            shutil.copyfile(task / training[0][key], task / item[key])
    out = tmp_path / "run"
    shards = out / "shards"
    overrides = {
        **shrink_overrides(task, datalist, out),
        "cache_rate": 1.0,  # each rank caches its shard
        "every_rank_handlers": [
            {
                "_target_": "pipelines.training.distributed.RankWeightsSaver",
                "network": "@network",
                "output_dir": str(shards),
            },
            {
                "_target_": "pipelines.training.batch_digests.BatchDigestRecorder",
                "output_path": str(shards / "batches_rank{rank}.json"),
                "keys": ["image", "label"],
            },
        ],
    }
    override_file = tmp_path / "overrides.json"
    override_file.write_text(json.dumps(overrides))
    configs = [str(CONFIGS / "multi_gpu_train.yaml"), str(override_file)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run"]
    command += ["--config_file", repr(configs), "--meta_file", str(CONFIGS / "metadata.json")]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    # the ranks held different training cases, all of them between them
    held = [json.loads((shards / f"train_rank{r}.json").read_text())["cases"] for r in (0, 1)]
    assert held[0] and held[1] and not set(held[0]) & set(held[1])
    assert sorted(held[0] + held[1]) == sorted(Path(item["image"]).name for item in training)

    # one checkpoint (and one training state, when pipelines.training.resume's handler is in train.yaml), one MLflow run
    written = {p.name for p in (out / "models").glob("*.pt")}
    assert "model.pt" in written and written <= {"model.pt", "train_state.pt"}, written
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test_liver")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    checkpoint = torch.load(out / "models" / "model.pt", map_location="cpu")
    assert not any(key.startswith("module.") for key in checkpoint)

    # the ranks augmented their (identical) cases differently: seed + rank
    batches = [json.loads((shards / f"batches_rank{r}.json").read_text())["epochs"]["1"] for r in (0, 1)]
    assert len(batches[0]) == len(batches[1]) == len(held[0])
    assert not set(batches[0]) & set(batches[1]), batches

    # the ranks ended with the same weights, those of the checkpoint (validated after the only epoch)
    weights = [torch.load(shards / f"rank{r}_weights.pt", map_location="cpu") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys() == checkpoint.keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
        assert torch.equal(weights[0][key], checkpoint[key]), key
