"""Backbones as multi-level feature extractors: levels, shapes, channels, frozen use, 2D and 3D."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_fusion.errors import InputError
from monai_fusion.networks import FusionEncoder, build_backbone, inflate_to_3d, vgg_features

# (name, builder options, channels per level, strides)
CASES = [
    ("resnet10", {}, [64, 64, 128, 256, 512], [2, 4, 8, 16, 32], (2, 3)),
    ("resnet50", {}, [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32], (2,)),
    ("resnet10", {"layout": "monai"}, [64, 64, 128, 256, 512], [1, 2, 4, 8, 16], (2,)),
    ("densenet121", {}, [64, 256, 512, 1024, 1024], [2, 4, 8, 16, 32], (2, 3)),
    ("vgg11", {}, [64, 128, 256, 512, 512], [1, 2, 4, 8, 16], (2, 3)),
    ("vgg19_bn", {}, [64, 128, 256, 512, 512], [1, 2, 4, 8, 16], (2,)),
    ("fusion_encoder", {"pretrained": False}, [16, 32, 64, 96], [1, 2, 4, 8], (2, 3)),
]
SIZE = {2: 64, 3: 32}


@pytest.mark.parametrize("name, options, channels, strides, spatial_dims",
                         [(*case[:4], dims) for case in CASES for dims in case[4]],
                         ids=[f"{case[0]}{'-' + case[1]['layout'] if 'layout' in case[1] else ''}-{dims}d"
                              for case in CASES for dims in case[4]])
def test_levels_have_the_documented_channels_and_strides(name, options, channels, strides, spatial_dims):
    size = SIZE[spatial_dims]
    extractor = build_backbone(name, spatial_dims=spatial_dims, **options).freeze()
    in_channels = extractor.in_channels
    levels = extractor(torch.rand(2, in_channels, *([size] * spatial_dims)))
    assert extractor.num_levels == len(levels) == len(channels)
    assert extractor.strides == strides
    for level, width, stride in zip(levels, channels, strides):
        assert tuple(level.shape) == (2, width, *([size // stride] * spatial_dims))


def test_grey_input_is_replicated_for_a_three_channel_backbone():
    extractor = build_backbone("resnet10", in_channels=3).freeze()
    grey = torch.rand(1, 48, 48)
    replicated = extractor.extract(grey.expand(3, -1, -1))
    for a, b in zip(extractor.extract(grey), replicated):
        torch.testing.assert_close(a, b)


def test_rgb_input_is_reduced_to_luma_for_a_one_channel_backbone():
    extractor = build_backbone("fusion_encoder", pretrained=False).freeze()
    rgb = torch.rand(3, 32, 32)
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    torch.testing.assert_close(extractor.extract(rgb)[0], extractor.extract(luma)[0])


def test_other_channel_counts_and_wrong_dimensions_are_refused():
    extractor = build_backbone("resnet10", in_channels=3).freeze()
    with pytest.raises(InputError, match="takes 3 channel"):
        extractor.extract(torch.rand(2, 32, 32))
    with pytest.raises(InputError, match="2 spatial axes"):
        extractor.extract(torch.rand(1, 8, 32, 32))
    with pytest.raises(InputError, match="too small"):
        vgg_features(16).freeze().extract(torch.rand(3, 8, 8))


def test_imagenet_normalisation_is_applied_to_the_replicated_input():
    plain = build_backbone("vgg11")
    normalised = build_backbone("vgg11", normalise="imagenet")
    normalised.backbone.load_state_dict(plain.backbone.state_dict())
    image = torch.rand(1, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = plain.freeze().extract((image - mean[:, None, None]) / std[:, None, None])
    torch.testing.assert_close(normalised.freeze().extract(image)[0], expected[0])
    with pytest.raises(InputError, match="in_channels=3"):
        build_backbone("vgg11", in_channels=1, normalise="imagenet")


def test_freeze_gives_eval_mode_without_gradients_and_no_inplace_activations():
    extractor = build_backbone("resnet10", in_channels=1).freeze()
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    assert not any(getattr(m, "inplace", False) for m in extractor.modules())
    with torch.enable_grad():
        levels = extractor.extract(torch.rand(1, 32, 32, requires_grad=True))
    assert not any(level.requires_grad for level in levels)


def test_unknown_backbones_and_options_are_input_errors():
    with pytest.raises(InputError, match="unknown backbone 'resnet19'"):
        build_backbone("resnet19")
    with pytest.raises(InputError, match="layout"):
        build_backbone("resnet10", layout="keras")
    with pytest.raises(InputError, match="backbone 'vgg16'"):
        build_backbone("vgg16", colour=True)


def test_inflated_3d_encoder_matches_the_2d_encoder_on_a_volume_constant_along_depth():
    encoder_2d = FusionEncoder(2).eval()
    encoder_3d = FusionEncoder(3).eval()
    encoder_3d.load_state_dict(inflate_to_3d(encoder_2d.state_dict()))
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        level_2d = encoder_2d(image)[0]
        level_3d = encoder_3d(image[:, :, None].expand(-1, -1, 12, -1, -1))[0]
    torch.testing.assert_close(level_3d[:, :, 6], level_2d, atol=1e-5, rtol=1e-4)


def test_vgg_module_names_follow_torchvision():
    features = vgg_features(16).backbone.features
    names = [f"features.{index}" for index, module in enumerate(features) if isinstance(module, nn.Conv2d)]
    # torchvision vgg16: 13 convolutions at these indices of `features`, max-pools at 4, 9, 16, 23, 30
    assert names == [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    assert [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)] == [4, 9, 16, 23, 30]
