"""FastSlidingWindowInferer: precision choice, parity with MONAI's SlidingWindowInferer, CPU stitching threshold."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet

from pipelines.inference import fast_inference
from pipelines.inference.fast_inference import FastSlidingWindowInferer, auto_cpu_threshold, resolve_precision

ROI = (16, 16, 8)


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(3, 1, 3, (4, 8, 16), (2, 2), num_res_units=1, norm="instance").eval()


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    """A smooth volume with structure (a bright ball), so the network's argmax is not noise."""
    grid = torch.stack(torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (40, 36, 20)), indexing="ij"))
    ball = (grid.pow(2).sum(0) < 0.4).float()
    return (ball + 0.05 * torch.randn(ball.shape, generator=torch.Generator().manual_seed(1)))[None, None]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "FP32", "auto"])
def test_resolve_precision_on_cpu(precision):
    dtype = resolve_precision(precision, "cpu")
    if precision.lower() == "fp32":
        assert dtype is None
    elif precision == "bf16":
        assert dtype is torch.bfloat16
    else:
        assert dtype is (torch.bfloat16 if fast_inference._cpu_has_native_bf16() else None)


@pytest.mark.parametrize("native", [True, False])
def test_auto_uses_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(fast_inference, "_cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) is (torch.bfloat16 if native else None)


def test_bad_precisions_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="one of auto, fp32, bf16, fp16.*'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="'fp16' is not supported on the CPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        FastSlidingWindowInferer(ROI, precision="float8")


@pytest.mark.parametrize("fast_layers, atol", [(False, 1e-6), (True, 1e-4)])
def test_fp32_matches_monai_sliding_window(network, volume, fast_layers, atol):
    """Exactly without the layer rewrites; to float32 rounding with them (they sum in another order)."""
    plain = SlidingWindowInferer(ROI, sw_batch_size=4, overlap=0.25, mode="gaussian")
    fast = FastSlidingWindowInferer(
        ROI, sw_batch_size=4, overlap=0.25, mode="gaussian", precision="fp32", fast_layers=fast_layers
    )
    with torch.no_grad():
        expected, got = plain(volume, network), fast(volume, network)
    assert got.dtype == torch.float32 and got.shape == (1, 3, *volume.shape[2:])
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def test_fast_layers_leave_the_callers_network_alone(network, volume):
    before = [type(m) for m in network.modules()]
    with torch.no_grad():
        FastSlidingWindowInferer(ROI, precision="fp32")(volume, network)
    assert [type(m) for m in network.modules()] == before


def test_channels_last_gives_the_same_logits(network, volume):
    plain = FastSlidingWindowInferer(ROI, precision="fp32")
    channels_last = FastSlidingWindowInferer(ROI, precision="fp32", channels_last=True)
    with torch.no_grad():
        torch.testing.assert_close(channels_last(volume, network), plain(volume, network), rtol=1e-4, atol=1e-4)


def test_bf16_returns_float32_logits_close_to_fp32(network, volume):
    fp32 = FastSlidingWindowInferer(ROI, precision="fp32")
    bf16 = FastSlidingWindowInferer(ROI, precision="bf16")
    with torch.no_grad():
        expected, got = fp32(volume, network), bf16(volume, network)
    assert got.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: errors of a few percent of the logits' range, not more
    assert (got - expected).abs().max() < 0.05 * (expected.max() - expected.min())
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.98


def test_tuple_and_dict_outputs_come_back_as_float32(volume):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return {"seg": y, "aux": y * 2}

    inferer = FastSlidingWindowInferer(ROI, precision="bf16")
    with torch.no_grad():
        out = inferer(volume, TwoHeads())
    assert set(out) == {"seg", "aux"} and all(v.dtype == torch.float32 for v in out.values())


def test_cpu_stitching_threshold(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_cpu_threshold(3) is None
    assert FastSlidingWindowInferer(ROI, stitch_on_cpu_above="auto").cpu_thresh is None

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Props())
    # 40% of 80 GiB over 4 bytes x (3 classes + 1 weight): about 2.1 G voxels, a 1300^3 volume
    assert auto_cpu_threshold(3) == int(0.4 * 80 * 2**30 / 16)
    assert FastSlidingWindowInferer(ROI, out_channels=3).cpu_thresh == int(0.4 * 80 * 2**30 / 16)
    assert FastSlidingWindowInferer(ROI, stitch_on_cpu_above=1000).cpu_thresh == 1000


def test_fast_layers_auto_means_cpu_and_junk_is_refused(network, volume, monkeypatch):
    calls = []
    monkeypatch.setattr(fast_inference, "fast_inference_network", lambda n: calls.append(n) or n)
    with torch.no_grad():
        FastSlidingWindowInferer(ROI, precision="fp32")(volume, network)  # auto, on the CPU
        FastSlidingWindowInferer(ROI, precision="fp32", fast_layers=False)(volume, network)
    assert calls == [network]
    with pytest.raises(ValueError, match="fast_layers must be true, false or 'auto'"):
        FastSlidingWindowInferer(ROI, fast_layers="yes")
