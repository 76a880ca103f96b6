"""The inference stage's MLflow Model Registry entries: one version per checkpoint, with a signature, loadable."""

from __future__ import annotations

import torch
from mlflow import MlflowClient
from monai.networks.nets import UNet

from pipelines.training.model_registry import ModelRegistration, file_sha256
from pipelines.training.tracking import default_tracking_uri


def _network() -> UNet:
    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)


def test_a_checkpoint_is_registered_once_with_its_signature_and_loads_back(tmp_path):
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    experiment = client.create_experiment("liver_ct_segmentation")
    network = _network().eval()
    ckpt = tmp_path / "model.pt"
    torch.save(network.state_dict(), ckpt)
    registration = ModelRegistration(network, "liver_segmenter", ckpt, in_channels=1, out_channels=3)

    first_run = client.create_run(experiment).info.run_id
    version = registration.log(client, first_run)
    assert str(version.version) == "1" and version.tags["checkpoint_sha256"] == file_sha256(ckpt)
    second_run = client.create_run(experiment).info.run_id
    assert str(registration.log(client, second_run).version) == "1"  # the same checkpoint: no second version
    assert client.get_run(second_run).data.tags["registered_model_version"] == "liver_segmenter/1"

    torch.save({k: v + 0.01 for k, v in network.state_dict().items()}, ckpt)  # a new training's checkpoint
    assert str(registration.log(client, second_run).version) == "2"

    import mlflow.pytorch
    from mlflow.models import get_model_info

    info = get_model_info(version.source)
    inputs, outputs = info.signature.inputs.inputs[0], info.signature.outputs.inputs[0]
    assert (inputs.name, inputs.shape, outputs.shape) == ("image", (-1, 1, -1, -1, -1), (-1, 3, -1, -1, -1))
    loaded = mlflow.pytorch.load_model(version.source).eval()
    x = torch.rand(2, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network(x))


def test_disabled_registration_logs_nothing(tmp_path):
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    run = client.create_run(client.create_experiment("e")).info.run_id
    torch.save(_network().state_dict(), tmp_path / "model.pt")
    registration = ModelRegistration(_network(), "m", tmp_path / "model.pt", 1, 3, enabled=False)
    assert registration.log(client, run) is None
    assert client.search_registered_models() == []
