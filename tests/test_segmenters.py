"""Tests of pipelines.models.segmenters: the segmentation networks a bundle chooses by name."""

import pytest
import torch
from monai.networks.nets import FlexibleUNet, UNet

from pipelines.models.segmenters import build_segmenter


@pytest.mark.parametrize(("architecture", "cls"), [("unet", UNet), ("resnet_unet", FlexibleUNet)])
def test_build_segmenter_keeps_the_input_size(architecture, cls):
    net = build_segmenter(
        architecture, in_channels=4, out_channels=3, channels=(8, 16, 32, 64, 128), encoder="resnet10"
    )
    assert isinstance(net, cls)
    net.eval()  # instance norm cannot train on the 1-voxel bottleneck of a 32-voxel input
    with torch.no_grad():
        out = net(torch.zeros(1, 4, 32, 32, 32))
    assert out.shape == (1, 3, 32, 32, 32)


def test_build_segmenter_2d():
    net = build_segmenter("unet", spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,))
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 2, 16, 16)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown segmentation architecture 'vnet'"):
        build_segmenter("vnet")
    with pytest.raises(ValueError, match="unknown ResNet encoder 'resnet9'"):
        build_segmenter("resnet_unet", encoder="resnet9")
