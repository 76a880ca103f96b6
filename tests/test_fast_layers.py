"""pipelines.models.fast_layers: the sub-pixel transposed convolution and the channels_last view compute the same
function."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from pipelines.models.fast_layers import ChannelsLastConv, SubPixelConvTranspose, fast_inference_network

TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@pytest.mark.parametrize(
    "dims, stride, kernel, padding, output_padding",
    [
        (3, 2, 3, 1, 1),  # MONAI UNet's up-sampling layer
        (3, 2, 2, 0, 0),
        (3, 2, 3, 0, 0),
        (3, 2, 3, 1, 0),
        (2, 2, 4, 1, 0),
        (2, (2, 1), (3, 3), (1, 1), (1, 0)),
        (1, 3, 5, 2, 2),
        (3, (1, 2, 3), (3, 3, 5), (1, 0, 2), (0, 1, 2)),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_sub_pixel_matches_the_transposed_convolution(dims, stride, kernel, padding, output_padding, bias):
    torch.manual_seed(0)
    conv = TRANSPOSED[dims](5, 3, kernel, stride=stride, padding=padding, output_padding=output_padding, bias=bias)
    x = torch.randn(2, 5, *(7, 6, 5)[:dims])
    expected = conv(x)
    got = SubPixelConvTranspose(conv)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sub_pixel_follows_weight_updates_and_gradients():
    torch.manual_seed(0)
    conv = nn.ConvTranspose3d(4, 2, 3, stride=2, padding=1, output_padding=1)
    layer = SubPixelConvTranspose(conv)
    x = torch.randn(1, 4, 5, 4, 3)
    with torch.no_grad():
        layer(x)  # caches the gathered kernel
        conv.weight.mul_(-2.0)
        torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    layer(x).square().sum().backward()
    expected_grad = torch.autograd.grad(conv(x).square().sum(), x)[0]
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-4, atol=1e-4)
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_sub_pixel_refuses_what_it_does_not_compute():
    assert not SubPixelConvTranspose.supports(nn.ConvTranspose3d(4, 4, 3, stride=2, groups=2))
    assert not SubPixelConvTranspose.supports(nn.ConvTranspose3d(4, 4, 3, stride=2, dilation=2))
    assert not SubPixelConvTranspose.supports(nn.ConvTranspose3d(4, 4, 3, stride=1))
    assert not SubPixelConvTranspose.supports(nn.Conv3d(4, 4, 3))
    with pytest.raises(ValueError, match="groups=1 and dilation=1"):
        SubPixelConvTranspose(nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4))


def test_output_size_falls_back_to_the_wrapped_layer():
    conv = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(SubPixelConvTranspose(conv)(x, output_size=[10, 10]), conv(x, output_size=[10, 10]))


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_conv_matches_and_returns_contiguous(dims):
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(2, 2, 3, padding=1)
    x = torch.randn(2, 2, *(9, 8, 7)[:dims])
    got = ChannelsLastConv(conv)(x)
    assert got.is_contiguous()
    torch.testing.assert_close(got, conv(x), rtol=1e-5, atol=1e-5)


def _unet(out_channels: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return UNet(3, 1, out_channels, (8, 16, 32), (2, 2), num_res_units=2, norm="instance").eval()


def test_unet_view_computes_the_same_logits_and_leaves_the_network_alone():
    network = _unet()
    layers_before = [type(m).__name__ for m in network.modules()]
    view = fast_inference_network(network)
    swapped = [type(m).__name__ for m in view.modules()]
    assert "SubPixelConvTranspose" in swapped and "ChannelsLastConv" in swapped
    assert [type(m).__name__ for m in network.modules()] == layers_before
    assert {p.data_ptr() for p in view.parameters()} == {p.data_ptr() for p in network.parameters()}
    x = torch.randn(2, 1, 32, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(view(x), network(x), rtol=1e-4, atol=1e-4)


def test_only_narrow_layers_are_swapped():
    """Wide transposed convolutions and convolutions run faster as oneDNN has them: they stay."""
    view = fast_inference_network(_unet())
    for module in view.modules():
        if isinstance(module, SubPixelConvTranspose):
            assert module.conv.out_channels <= 4
        if isinstance(module, ChannelsLastConv):
            assert max(module.conv.in_channels, module.conv.out_channels) <= 4
    assert any(isinstance(m, nn.ConvTranspose3d) and m.out_channels > 4 for m in view.modules())


def test_wrappers_script_modules_and_plain_callables():
    network = _unet()
    wrapped = fast_inference_network(nn.DataParallel(network))
    assert not isinstance(wrapped, nn.DataParallel)
    assert any(isinstance(m, SubPixelConvTranspose) for m in wrapped.modules())
    scripted = torch.jit.script(nn.Conv3d(1, 1, 3))
    assert fast_inference_network(scripted) is scripted

    def function(x):
        return x

    assert fast_inference_network(function) is function
    plain = nn.Sequential(nn.Conv3d(1, 8, 3), nn.ReLU())
    assert fast_inference_network(plain) is plain  # nothing to swap: the same object
