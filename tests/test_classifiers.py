import logging

import pytest
import torch
from torch import nn

from pipelines.models.classifiers import (
    BACKBONES,
    build_slice_classifier,
    count_parameters,
    init_weights,
    load_matching_weights,
)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_and_classifies(backbone, in_channels):
    model = build_slice_classifier(backbone, in_channels=in_channels, num_classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 64, 64))
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


@pytest.mark.parametrize("backbone", ["resnet18", "densenet121", "efficientnet-b0"])
def test_init_applied_and_dropout_before_head(backbone):
    model = build_slice_classifier(backbone, in_channels=1, num_classes=4, dropout=0.3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(torch.count_nonzero(m.bias) == 0 for m in linears)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert any(getattr(m, "p", None) == 0.3 for m in model.modules()), "dropout not applied"


def test_dropout_head_trains():
    torch.manual_seed(0)
    model = build_slice_classifier("resnet18", in_channels=1, num_classes=2, dropout=0.5).train()
    x = torch.randn(2, 1, 64, 64)
    model(x).sum().backward()
    assert model.fc.weight.grad is not None
    assert not torch.equal(model(x), model(x))  # dropout is active in training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no dropout at evaluation


def test_vgg_dropout_replaces_default():
    model = build_slice_classifier("vgg16", in_channels=1, num_classes=3)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.0}
    assert model.features[0].in_channels == 1 and model.classifier[-1].out_features == 3


def test_init_weights_rules():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(8, 64, 3), nn.BatchNorm2d(64), nn.GroupNorm(4, 64), nn.Linear(64, 32))
    for p in module.parameters():
        nn.init.constant_(p, 0.5)
    assert init_weights(module) is module
    conv, bn, gn, linear = module
    expected_std = (2.0 / (64 * 3 * 3)) ** 0.5  # Kaiming normal, fan_out
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    bound = (6.0 / (64 + 32)) ** 0.5  # Xavier uniform
    assert linear.weight.abs().max().item() <= bound and linear.weight.std().item() > bound / 3
    for layer in (conv, linear):
        assert torch.all(layer.bias == 0)
    for norm in (bn, gn):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_pretrained_round_trip_skips_first_conv(tmp_path, caplog):
    source = build_slice_classifier("resnet18", in_channels=3, num_classes=2)
    path = tmp_path / "resnet18_rgb.pt"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="pipelines.models.classifiers"):
        model = build_slice_classifier("resnet18", in_channels=1, num_classes=2, pretrained_path=str(path))
    src, own = source.state_dict(), model.state_dict()
    for name, tensor in own.items():
        if name == "conv1.weight":
            assert tensor.shape == (64, 1, 7, 7)
        else:
            assert torch.equal(tensor, src[name]), name
    assert "conv1.weight" in caplog.text and str(path) in caplog.text


def test_pretrained_wrapped_state_dict_and_module_prefix(tmp_path):
    source = build_slice_classifier("efficientnet-b0", in_channels=1, num_classes=2)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    model = build_slice_classifier("efficientnet-b0", in_channels=1, num_classes=5)
    loaded, skipped = load_matching_weights(model, path)
    assert skipped == ["_fc.weight", "_fc.bias"]
    assert len(loaded) == len(model.state_dict()) - 2
    assert torch.equal(model.state_dict()["_conv_stem.weight"], source.state_dict()["_conv_stem.weight"])

    path_sd = tmp_path / "ckpt_sd.pt"
    torch.save({"state_dict": source.state_dict()}, path_sd)
    assert not load_matching_weights(build_slice_classifier("efficientnet-b0", in_channels=1), path_sd)[1]


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(ValueError, match=f"{path}.*does not exist"):
        build_slice_classifier("resnet18", pretrained_path=str(path))


def test_unreadable_file_names_path(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"cannot read .*{path}"):
        build_slice_classifier("resnet18", pretrained_path=path)
    path_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], path_list)
    with pytest.raises(ValueError, match=f"{path_list}.*holds no state dict"):
        build_slice_classifier("resnet18", pretrained_path=path_list)


def test_wrong_architecture_names_path(tmp_path):
    path = tmp_path / "densenet.pt"
    torch.save(build_slice_classifier("efficientnet-b0").state_dict(), path)
    with pytest.raises(ValueError, match=f"{path}.*matches only 0 of the model's"):
        build_slice_classifier("resnet18", pretrained_path=path)


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'.*resnet18, resnet50, densenet121, vgg16"):
        build_slice_classifier("resnet34")


def test_name_variants_and_bad_sizes():
    assert build_slice_classifier("EfficientNet_B0", in_channels=1)._fc.out_features == 2
    with pytest.raises(ValueError, match="in_channels"):
        build_slice_classifier("resnet18", in_channels=0)
    with pytest.raises(ValueError, match="dropout"):
        build_slice_classifier("resnet18", dropout=1.0)


def test_torchvision_layouts_load_fully(tmp_path):
    import torchvision

    path = tmp_path / "tv_resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=2).state_dict(), path)
    _, skipped = load_matching_weights(build_slice_classifier("resnet18"), path)
    assert skipped == []
    path = tmp_path / "tv_densenet121.pt"
    torch.save(torchvision.models.densenet121(weights=None).state_dict(), path)
    _, skipped = load_matching_weights(build_slice_classifier("densenet121"), path)
    assert skipped == ["class_layers.out.weight", "class_layers.out.bias"]
