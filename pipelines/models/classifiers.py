"""2-D slice classifiers (the first stage of the cascade), built by backbone name, never downloading weights.

A bundle config builds one with::

    network_def:
      _target_: pipelines.models.classifiers.build_slice_classifier
      backbone: resnet18
      in_channels: 3      # C * (2 * context + 1) of transforms.SliceSamplesd
      num_classes: 2

Weights start from :func:`init_weights`, or from a local checkpoint (``pretrained_path``) whose tensors are copied
where name and shape match (see :func:`load_matching_weights`).

State-dict layouts, for local checkpoints: ``resnet18``/``resnet50`` and ``vgg16`` use torchvision's key names
and shapes (a torchvision ImageNet file loads fully, apart from a differing first conv or head);
``densenet121`` is MONAI's ``DenseNet121``, which also accepts torchvision DenseNet keys (renamed on load);
``efficientnet-b0`` is MONAI's ``EfficientNetBN`` (the key names of ``efficientnet_pytorch``, not torchvision's).
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torchvision
from monai.networks.nets import DenseNet121, EfficientNetBN, resnet10, resnet18, resnet50
from torch import nn

__all__ = ["BACKBONES", "build_slice_classifier", "init_weights", "load_matching_weights", "count_parameters"]

logger = logging.getLogger(__name__)

BACKBONES = ("resnet10-narrow", "resnet18", "resnet50", "densenet121", "vgg16", "efficientnet-b0")
"""Backbone names accepted by :func:`build_slice_classifier`."""

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)
_WRAPPER_KEYS = ("state_dict", "model")
# torchvision DenseNet keys (``denselayer1.norm1.weight``, or ``norm.1`` in the old files) to MONAI's (``layers.``)
_TORCHVISION_DENSELAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12]\.\w+)$")
_MAX_LOGGED_NAMES = 20


class _DropoutLinear(nn.Linear):
    """``nn.Linear`` applying dropout to its input; same parameters and state-dict keys as ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, p: float) -> None:
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.dropout(x, self.p, self.training))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.p}"


def _with_dropout(linear: nn.Linear, dropout: float) -> nn.Linear:
    return _DropoutLinear(linear.in_features, linear.out_features, dropout) if dropout > 0 else linear


def _resnet(factory: Callable[..., nn.Module], **options) -> Callable[[int, int, float], nn.Module]:
    def build(in_channels: int, num_classes: int, dropout: float) -> nn.Module:
        # the standard ImageNet stem (7x7 conv of stride 2, then max pooling) and no bias on the shortcut convs:
        # torchvision's layout; MONAI's defaults (stride 1, biased shortcuts) cost ~2-4x the compute for 2-D slices
        model = factory(
            pretrained=False,
            spatial_dims=2,
            n_input_channels=in_channels,
            num_classes=num_classes,
            conv1_t_stride=2,
            bias_downsample=False,
            **options,
        )
        model.fc = _with_dropout(model.fc, dropout)
        return model

    return build


def _densenet121(in_channels: int, num_classes: int, dropout: float) -> nn.Module:
    model = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, pretrained=False)
    model.class_layers.out = _with_dropout(model.class_layers.out, dropout)
    return model


def _vgg16(in_channels: int, num_classes: int, dropout: float) -> nn.Module:
    model = torchvision.models.vgg16(weights=None, dropout=dropout)
    first = model.features[0]
    model.features[0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, first.padding)
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _efficientnet_b0(in_channels: int, num_classes: int, dropout: float) -> nn.Module:
    model = EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=num_classes
    )
    model._dropout = nn.Dropout(dropout)
    return model


_BUILDERS: dict[str, Callable[[int, int, float], nn.Module]] = {
    # one basic block per stage and a quarter of the channels (16-32-64-128): 0.31M parameters, ~11x resnet18's
    # slices per second on a CPU; the cascade's gate, whose cost must stay small against a small 3-D segmenter's
    "resnet10-narrow": _resnet(resnet10, widen_factor=0.25),
    "resnet18": _resnet(resnet18),
    "resnet50": _resnet(resnet50),
    "densenet121": _densenet121,
    "vgg16": _vgg16,
    "efficientnet-b0": _efficientnet_b0,
}


def init_weights(module: nn.Module) -> nn.Module:
    """Initialise every layer of ``module`` in place, for training from scratch.

    Convolutions: Kaiming normal (``fan_out``, ReLU); linear layers: Xavier uniform; normalisation layers: weight 1,
    bias 0; every bias of these layers: 0.

    Args:
        module: the network (or any module) to initialise.

    Returns:
        ``module``, for chaining.
    """
    for layer in module.modules():
        if isinstance(layer, _CONV):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
        elif isinstance(layer, _NORM):
            if getattr(layer, "weight", None) is not None:
                nn.init.ones_(layer.weight)
        else:
            continue
        if getattr(layer, "bias", None) is not None:
            nn.init.zeros_(layer.bias)
    return module


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LOGGED_NAMES])
    return shown + (f", ... ({len(names) - _MAX_LOGGED_NAMES} more)" if len(names) > _MAX_LOGGED_NAMES else "")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a state dict, or a dict holding one under "state_dict" or "model"."""
    if not path.is_file():
        raise ValueError(f"pretrained weights file {str(path)!r} does not exist (or is not a file)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike for unreadable files
        raise ValueError(
            f"cannot read pretrained weights file {str(path)!r} as a state dict "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    if isinstance(content, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    tensors = (
        {str(k): v for k, v in content.items() if isinstance(v, torch.Tensor)} if isinstance(content, Mapping) else {}
    )
    if not tensors:
        raise ValueError(
            f"pretrained weights file {str(path)!r} holds no state dict (expected a mapping of tensor names to "
            f"tensors, possibly under {' or '.join(repr(k) for k in _WRAPPER_KEYS)}; got {type(content).__name__})"
        )
    return {key.removeprefix("module."): value for key, value in tensors.items()}


def load_matching_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy into ``model`` every tensor of a local checkpoint whose name and shape match; keep the rest as they are.

    Typically the first convolution and the head are skipped when the number of input channels or classes differ.
    Keys with a ``module.`` prefix (``DataParallel``) and torchvision DenseNet keys are matched too. What was
    loaded and skipped is logged.

    Args:
        model: the network to update in place.
        path: a file written by ``torch.save``: a state dict, or a dict with it under ``"state_dict"`` or
            ``"model"``; read with ``weights_only=True`` onto the CPU.

    Returns:
        the names of the loaded tensors and those of the model's tensors left unchanged.

    Raises:
        ValueError: naming the file, when it does not exist, cannot be read, holds no state dict, or matches fewer
            than half of the model's tensors (a checkpoint of another architecture).
    """
    path = Path(path)
    checkpoint = _read_state_dict(path)
    for key in list(checkpoint):
        renamed = _TORCHVISION_DENSELAYER.sub(r"\1.layers.\2\3", key)
        if renamed != key:
            checkpoint.setdefault(renamed, checkpoint.pop(key))
    own = model.state_dict()
    matched = {k: v for k, v in checkpoint.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if 2 * len(matched) < len(own):
        first_keys = ", ".join(list(checkpoint)[:3])
        raise ValueError(
            f"pretrained weights file {str(path)!r} matches only {len(matched)} of the model's {len(own)} tensors "
            f"by name and shape: is it a checkpoint of another architecture? (its first keys: {first_keys})"
        )
    model.load_state_dict(matched, strict=False)
    skipped = [k for k in own if k not in matched]
    unused = [k for k in checkpoint if k not in matched]
    logger.info("loaded %d of %d tensors from %s", len(matched), len(own), path)
    if skipped:
        logger.info("kept the initial values of %d tensor(s) without a match: %s", len(skipped), _names(skipped))
    if unused:
        logger.info("ignored %d tensor(s) of %s: %s", len(unused), path, _names(unused))
    logger.debug("loaded tensors: %s", ", ".join(matched))
    return list(matched), skipped


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (scalars) of ``model``, or of those with ``requires_grad`` when ``trainable_only``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_slice_classifier(
    backbone: str,
    in_channels: int = 3,
    num_classes: int = 2,
    pretrained_path: str | Path | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """A 2-D classifier of slices ``(B, in_channels, H, W)`` giving logits ``(B, num_classes)``.

    Backbones (any input size from 32x32 up; all end in global or adaptive pooling):

    * ``resnet18``, ``resnet50``: MONAI ``ResNet`` with ``spatial_dims=2`` and the standard stem (7x7 conv of
      stride 2 + max pooling) and bias-free shortcut convolutions, i.e. torchvision's ResNet layout;
    * ``resnet10-narrow``: the same layout with one block per stage and a quarter of the channels (16 to 128):
      0.31M parameters, the cascade's gate at a tenth of resnet18's cost (no torchvision file fits it);
    * ``densenet121``: MONAI ``DenseNet121``;
    * ``vgg16``: torchvision ``vgg16(weights=None)`` with its first conv and last linear layer replaced;
    * ``efficientnet-b0``: MONAI ``EfficientNetBN`` (``pretrained=False``).

    Args:
        backbone: one of :data:`BACKBONES` (case-insensitive; ``efficientnet_b0`` works too).
        in_channels: input channels, ``C * (2 * context + 1)`` for 2.5-D slice samples.
        num_classes: number of output logits.
        pretrained_path: optional local checkpoint to start from (see :func:`load_matching_weights`); nothing is
            ever downloaded.
        dropout: dropout probability on the input of the final linear layer(s); it replaces the backbone's own
            default (VGG's 0.5 in its classifier, EfficientNet-B0's 0.2).

    Returns:
        the network, initialised by :func:`init_weights` and then, when given, loaded from ``pretrained_path``.

    Raises:
        ValueError: for an unknown backbone (listing the choices), invalid sizes or dropout, or a checkpoint that
            does not exist, cannot be read or does not fit.
    """
    name = str(backbone).strip().lower().replace("_", "-")
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    model = init_weights(_BUILDERS[name](int(in_channels), int(num_classes), float(dropout)))
    if pretrained_path is not None:
        load_matching_weights(model, pretrained_path)
    logger.info(
        "%s slice classifier: %d input channel(s), %d classes, %.1fM parameters%s",
        name,
        in_channels,
        num_classes,
        count_parameters(model) / 1e6,
        f", weights from {pretrained_path}" if pretrained_path is not None else "",
    )
    return model
