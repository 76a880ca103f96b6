"""Segmentation networks a bundle can choose by name: MONAI's residual U-Net or a U-Net with a ResNet encoder."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import FlexibleUNet, UNet
from torch import nn

__all__ = ["ARCHITECTURES", "build_segmenter"]

ARCHITECTURES = ("unet", "resnet_unet")
# ResNet depths MONAI's FlexibleUNet can use as its encoder (no pretrained weights are downloaded).
_RESNET_ENCODERS = ("resnet10", "resnet18", "resnet34", "resnet50")


def build_segmenter(
    architecture: str = "unet",
    *,
    spatial_dims: int = 3,
    in_channels: int = 1,
    out_channels: int = 2,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    num_res_units: int = 2,
    norm: str = "instance",
    dropout: float = 0.0,
    encoder: str = "resnet18",
) -> nn.Module:
    """Build the segmentation network of a bundle.

    Args:
        architecture: ``unet`` (MONAI ``UNet`` with residual units) or ``resnet_unet`` (MONAI ``FlexibleUNet``: a
            ResNet encoder, randomly initialised, with a U-Net decoder whose widths are ``channels`` reversed).
        spatial_dims: 2 or 3.
        in_channels: input channels (4 for BraTS: FLAIR, T1, T1ce, T2).
        out_channels: number of classes, background included.
        channels: feature maps per level (``unet``); the decoder widths, deepest first, for ``resnet_unet``.
        strides: downsampling per level (``unet`` only; the ResNet encoder downsamples by 32).
        num_res_units: residual units per level (``unet`` only).
        norm: normalisation layer.
        dropout: dropout probability.
        encoder: ResNet depth of ``resnet_unet``: resnet10, resnet18, resnet34 or resnet50.

    Raises:
        ValueError: for an unknown architecture or encoder.
    """
    if architecture == "unet":
        return UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            norm=norm,
            dropout=dropout,
        )
    if architecture == "resnet_unet":
        if encoder not in _RESNET_ENCODERS:
            raise ValueError(f"unknown ResNet encoder {encoder!r}; choose one of {list(_RESNET_ENCODERS)}")
        return FlexibleUNet(
            in_channels=in_channels,
            out_channels=out_channels,
            backbone=encoder,
            pretrained=False,
            decoder_channels=tuple(reversed(tuple(channels))),
            spatial_dims=spatial_dims,
            norm=norm,
            dropout=dropout,
        )
    raise ValueError(f"unknown segmentation architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
