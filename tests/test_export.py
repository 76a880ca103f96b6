"""TorchScript and ONNX export of the segmenters: parity with PyTorch, dynamic axes, refusal, command line."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from monai.networks.nets import UNet

from pipelines.cli.export import export_onnx, export_torchscript, main, parity_inputs

ROI = (16, 16, 8)


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(3, 2, 3, (4, 8, 16), (2, 2), num_res_units=1, norm="instance").eval()


def test_parity_inputs_are_a_window_and_a_larger_volume():
    small, large = parity_inputs(2, ROI, divisor=4)
    assert small.shape == (1, 2, *ROI) and large.shape == (1, 2, 20, 20, 12)
    assert abs(float(small.mean())) < 1e-5 and abs(float(small.std()) - 1) < 1e-3


def test_torchscript_export_runs_like_the_network(network, tmp_path):
    inputs = parity_inputs(2, ROI, divisor=4)
    checks = export_torchscript(network, tmp_path / "model.ts", inputs)
    assert [c.shape[2:] for c in checks] == [ROI, (20, 20, 12)] and all(c.ok() for c in checks)
    loaded = torch.jit.load(str(tmp_path / "model.ts"))
    other = torch.randn(2, 2, 24, 16, 12)  # a size and batch not seen at export
    with torch.no_grad():
        torch.testing.assert_close(loaded(other), network(other), rtol=1e-4, atol=1e-4)


def test_onnx_export_has_dynamic_batch_and_spatial_axes(network, tmp_path):
    inputs = parity_inputs(2, ROI, divisor=4)
    checks = export_onnx(network, tmp_path / "model.onnx", inputs)
    assert all(c.ok() for c in checks)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["logits"]
    other = torch.randn(3, 2, 24, 32, 16)
    (logits,) = session.run(None, {"image": other.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, network(other).numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("export", [export_torchscript, export_onnx])
def test_an_export_outside_the_tolerance_is_refused_and_not_written(network, tmp_path, export):
    path = tmp_path / "model.out"
    with pytest.raises(RuntimeError, match="differs from the PyTorch model beyond atol -1"):
        export(network, path, parity_inputs(2, ROI, divisor=4), atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_command_line_exports_a_bundle_checkpoint(tmp_path, capsys):
    overrides = {"channels": "[4,8,16]", "strides": "[2,2]", "num_res_units": "1", "roi_size": "[32,32,16]"}
    network = UNet(3, 1, 3, (4, 8, 16), (2, 2), num_res_units=1, norm="instance", dropout=0.1)
    torch.save(network.state_dict(), tmp_path / "model.pt")
    args = ["liver", "--ckpt", str(tmp_path / "model.pt"), "--output-dir", str(tmp_path / "out")]
    args += [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "torchscript: wrote" in out and "onnx: wrote" in out and "32x32x16" in out and "36x36x20" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx", "model.ts"]


def test_command_line_names_missing_weights(tmp_path, capsys):
    assert main(["liver", "--ckpt", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: no trained weights to export" in capsys.readouterr().err
