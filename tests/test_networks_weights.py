"""load_backbone_weights: local files in the usual layouts load; files that do not fit say why in one line."""

from __future__ import annotations

import re

import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.networks import (
    EncoderFusionNet,
    FusionEncoder,
    build_backbone,
    describe_state_dict,
    load_backbone_weights,
)


def randomised(state: dict) -> dict:
    generator = torch.Generator().manual_seed(3)
    return {key: torch.rand(value.shape, generator=generator) if value.is_floating_point() else value.clone()
            for key, value in state.items()}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "checkpoint_with_module_prefix"])
def test_round_trip_in_every_wrapping(tmp_path, wrap):
    source = build_backbone("resnet10", in_channels=1)
    state = randomised(source.backbone.state_dict())
    prefixed = {f"module.{key}": value for key, value in state.items()}
    content = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3}, "model": {"model": state, "optimizer": {}},
               "module_prefix": prefixed, "checkpoint_with_module_prefix": {"state_dict": prefixed}}[wrap]
    torch.save(content, tmp_path / "weights.pth")
    target = build_backbone("resnet10", in_channels=1)
    report = load_backbone_weights(target, tmp_path / "weights.pth")
    assert report.loaded == len(state) and report.skipped_head_keys == []
    assert all(torch.equal(target.backbone.state_dict()[key], value) for key, value in state.items())


def test_torchvision_vgg16_layout_loads_and_its_classifier_is_skipped(tmp_path):
    # what torchvision's vgg16().state_dict() holds: features.{0,2,5,...,28}.{weight,bias} and classifier.{0,3,6}
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
             (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]
    state = {}
    for index, cin, cout in convs:
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3) * 0.01
        state[f"features.{index}.bias"] = torch.randn(cout) * 0.01
    for index, (cout, cin) in zip((0, 3, 6), ((8, 16), (8, 8), (10, 8))):  # shrunken head: it is skipped anyway
        state[f"classifier.{index}.weight"], state[f"classifier.{index}.bias"] = torch.randn(cout, cin), torch.randn(cout)
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    extractor = build_backbone("vgg16")
    report = load_backbone_weights(extractor, tmp_path / "vgg16-397923af.pth")
    assert report.loaded == 26 and report.skipped_head_keys == sorted(k for k in state if k.startswith("classifier"))
    torch.testing.assert_close(extractor.backbone.features[28].weight, state["features.28.weight"])
    assert "VGG-16 (2D, 3-channel input, torchvision layout)" == describe_state_dict(state)


def test_torchvision_densenet_keys_are_renamed_to_monai_s(tmp_path):
    monai_state = randomised(build_backbone("densenet121").backbone.state_dict())
    torchvision_state = {key.replace(".layers.", "."): value for key, value in monai_state.items()}
    torchvision_state["classifier.weight"], torchvision_state["classifier.bias"] = torch.zeros(1000, 1024), torch.zeros(1000)
    torch.save(torchvision_state, tmp_path / "densenet121.pth")
    target = build_backbone("densenet121")
    report = load_backbone_weights(target, tmp_path / "densenet121.pth")
    assert report.loaded == len(monai_state) and report.skipped_head_keys == ["classifier.bias", "classifier.weight"]
    assert all(torch.equal(target.backbone.state_dict()[key], value) for key, value in monai_state.items())
    assert describe_state_dict(torchvision_state).startswith("DenseNet-121 (2D, 3-channel input, torchvision layout)")


def test_medicalnet_style_file_loads_with_the_medicalnet_layout(tmp_path):
    medicalnet = build_backbone("resnet18", spatial_dims=3, in_channels=1, layout="medicalnet")
    state = {f"module.{key}": value for key, value in randomised(medicalnet.backbone.state_dict()).items()}
    state["module.conv_seg.0.weight"] = torch.zeros(2, 512, 3, 3, 3)  # MedicalNet's segmentation head
    torch.save({"state_dict": state}, tmp_path / "resnet_18_23dataset.pth")
    report = load_backbone_weights(medicalnet, tmp_path / "resnet_18_23dataset.pth")
    assert report.skipped_head_keys == ["conv_seg.0.weight"]
    projection = build_backbone("resnet18", spatial_dims=3, in_channels=1)  # torchvision layout: projection shortcuts
    with pytest.raises(InputError, match=r"keys missing \(e\.g\. layer2\.0\.downsample.*type-A shortcuts"):
        load_backbone_weights(projection, tmp_path / "resnet_18_23dataset.pth")


def test_a_file_for_another_architecture_is_a_one_line_error(tmp_path):
    torch.save(build_backbone("resnet10").backbone.state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(InputError) as caught:
        load_backbone_weights(build_backbone("vgg11"), tmp_path / "resnet.pt")
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(r"resnet\.pt does not fit vgg11 \(2D\): 16 keys missing \(e\.g\. features\.0\.weight, features\.0\.bias, "
                     r"features\.3\.weight, \.\.\.\); 72 unexpected \(e\.g\. conv1\.weight, bn1\.weight, .*\); the file looks like ResNet-10 \(2D, 3-channel input", message), message


def test_different_shapes_are_reported_with_both_shapes(tmp_path):
    torch.save(build_backbone("resnet10", in_channels=3).backbone.state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(InputError, match=r"1 of a different shape \(e\.g\. conv1\.weight: file \(64, 3, 7, 7\) vs model \(64, 1, 7, 7\)\)"):
        load_backbone_weights(build_backbone("resnet10", in_channels=1), tmp_path / "rgb.pt")


def test_non_strict_loading_takes_what_fits(tmp_path):
    state = FusionEncoder().state_dict()
    del state["stages.3.2.bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(InputError, match="1 keys missing"):
        load_backbone_weights(FusionEncoder(), tmp_path / "partial.pt")
    assert load_backbone_weights(FusionEncoder(), tmp_path / "partial.pt", strict=False).loaded == len(state)


def test_the_encoder_of_a_whole_fusion_network_checkpoint_loads(tmp_path):
    network = EncoderFusionNet()
    torch.save({"model": network.state_dict()}, tmp_path / "fusion_net.pt")
    encoder = FusionEncoder()
    load_backbone_weights(encoder, tmp_path / "fusion_net.pt")
    assert same_weights(encoder, network.encoder)


@pytest.mark.parametrize("content, message", [
    (b"not a torch file", "cannot be read as PyTorch weights"),
    ({"epoch": 3, "config": {}}, "no state dict found"),
])
def test_unreadable_files_are_input_errors(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(InputError, match=message):
        load_backbone_weights(FusionEncoder(), path)


def test_missing_files_and_urls_are_refused_without_downloading(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_backbone_weights(FusionEncoder(), tmp_path / "absent.pt")
    with pytest.raises(InputError, match="never downloads"):
        load_backbone_weights(FusionEncoder(), "https://download.pytorch.org/models/vgg16-397923af.pth")
