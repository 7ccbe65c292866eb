"""Feature-level l1-norm fusion: a valid weight map, identical inputs back, the more active source preferred."""

from __future__ import annotations

import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.networks import build_backbone, feature_l1_norm, feature_weight, fuse_with_features, l1_activity
from monai_fusion.rules import FusionResult


def textured_and_flat(size=32):
    textured = torch.zeros(1, size, size)
    textured[:, ::2, :] = 1.0  # stripes in A ...
    return textured, torch.full((1, size, size), 0.5)  # ... a flat B


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return build_backbone("fusion_encoder", pretrained=False).freeze()


def test_l1_activity_is_the_channel_l1_norm_box_averaged():
    features = torch.tensor([[[1.0, -2.0, 0.0]], [[3.0, 0.0, 0.0]]])
    assert l1_activity(features, window=1).tolist() == [[[4.0, 2.0, 0.0]]]
    assert l1_activity(features, window=3).tolist() == [[[3.0, 2.0, 1.0]]]


@pytest.mark.parametrize("mode", ["ratio", "softmax"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_weight_is_a_valid_map_and_fused_is_the_convex_combination(extractor, mode, spatial_dims):
    torch.manual_seed(1)
    shape = (1, 32, 32) if spatial_dims == 2 else (1, 12, 16, 16)
    a, b = torch.rand(shape), torch.rand(shape)
    if spatial_dims == 3:
        extractor = build_backbone("fusion_encoder", spatial_dims=3, pretrained=False).freeze()
    result = fuse_with_features(a, b, extractor.extract(a), extractor.extract(b), mode=mode)
    assert isinstance(result, FusionResult)
    assert result.weight.shape == result.fused.shape == a.shape
    assert bool(((result.weight >= 0) & (result.weight <= 1)).all()) and bool(torch.isfinite(result.fused).all())
    torch.testing.assert_close(result.fused, result.weight * a + (1 - result.weight) * b)


def test_identical_inputs_come_back_unchanged(extractor):
    image = torch.rand(1, 40, 36)
    features = extractor.extract(image)
    fused, weight = fuse_with_features(image, image.clone(), features, features)
    torch.testing.assert_close(fused, image, atol=1e-6, rtol=0)
    torch.testing.assert_close(weight, torch.full_like(weight, 0.5))


def test_the_more_active_source_gets_the_larger_weight():
    a, b = textured_and_flat()
    features_a = [torch.ones(4, 32, 32), torch.ones(8, 16, 16)]
    features_b = [torch.full((4, 32, 32), 0.25), torch.full((8, 16, 16), 0.25)]
    ratio = fuse_with_features(a, b, features_a, features_b).weight
    softmax = fuse_with_features(a, b, features_a, features_b, mode="softmax", temperature=0.1).weight
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.8))
    assert bool((softmax > 0.99).all())  # sharper than the ratio


def test_no_activity_anywhere_gives_equal_weights():
    zeros = [torch.zeros(4, 8, 8)]
    assert feature_weight(zeros, zeros, (16, 16)).unique().tolist() == [0.5]


def test_level_selection_and_upsampling():
    features_a = [torch.ones(2, 16, 16), torch.zeros(2, 4, 4)]
    features_b = [torch.zeros(2, 16, 16), torch.ones(2, 4, 4)]
    assert feature_weight(features_a, features_b, (16, 16), levels=[0]).unique().tolist() == [1.0]
    assert feature_weight(features_a, features_b, (16, 16), levels=[1]).unique().tolist() == [0.0]
    assert feature_weight(features_a, features_b, (16, 16)).unique().tolist() == [0.5]


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "max"}, "mode must be one of"),
    ({"temperature": 0}, "temperature must be positive"),
    ({"levels": [5]}, "levels must index"),
    ({"window": 4}, "odd"),
])
def test_bad_options_are_input_errors(kwargs, message):
    features = [torch.ones(2, 8, 8)]
    with pytest.raises(InputError, match=message):
        feature_weight(features, features, (8, 8), **kwargs)


def test_mismatched_feature_lists_are_input_errors():
    with pytest.raises(InputError, match="same non-zero number"):
        feature_weight([torch.ones(2, 8, 8)], [], (8, 8))
    with pytest.raises(InputError, match="must match"):
        feature_weight([torch.ones(2, 8, 8)], [torch.ones(3, 8, 8)], (8, 8))


def test_the_rule_extracts_features_itself(extractor):
    a, b = textured_and_flat()
    fused, weight = feature_l1_norm(a, b, extractor=extractor)
    assert fused.shape == a.shape and float(weight.mean()) > 0.5  # stripes are more active than a flat image
