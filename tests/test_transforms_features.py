"""ExtractFeatures(d) / FuseFeatures(d): input types, missing keys, degenerate images, frozen backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.networks import build_backbone
from monai_fusion.transforms.features import (
    ExtractFeatures,
    ExtractFeaturesd,
    ExtractFeaturesD,
    ExtractFeaturesDict,
    FuseFeatures,
    FuseFeaturesd,
    FuseFeaturesD,
    FuseFeaturesDict,
)

AFFINE = torch.diag(torch.tensor([0.9, 0.9, 2.0, 1.0], dtype=torch.float64))


def make(kind: str, array: np.ndarray, affine=AFFINE):
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.from_numpy(array)
    return MetaTensor(torch.from_numpy(array), affine=affine.clone(), meta={"modality": "MR"})


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return ExtractFeatures(build_backbone("fusion_encoder", pretrained=False))


def test_aliases():
    assert ExtractFeaturesD is ExtractFeaturesDict is ExtractFeaturesd
    assert FuseFeaturesD is FuseFeaturesDict is FuseFeaturesd


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
def test_every_input_type_gives_the_same_plain_float32_levels(encoder, kind):
    image = np.random.default_rng(0).random((1, 32, 48)).astype(np.float32)
    levels = encoder(make(kind, image))
    reference = encoder(torch.from_numpy(image))
    assert [tuple(level.shape) for level in levels] == [(16, 32, 48), (32, 16, 24), (64, 8, 12), (96, 4, 6)]
    for level, expected in zip(levels, reference):
        assert type(level) is torch.Tensor and level.dtype == torch.float32
        torch.testing.assert_close(level, expected)


def test_three_dimensional_images_and_level_selection():
    extract = ExtractFeatures("resnet10", spatial_dims=3, in_channels=1, levels=[0, -1])
    levels = extract(torch.rand(1, 32, 32, 32))
    assert [tuple(level.shape) for level in levels] == [(64, 16, 16, 16), (512, 1, 1, 1)]
    with pytest.raises(InputError, match="levels must index the 4 levels"):
        ExtractFeatures(build_backbone("fusion_encoder", pretrained=False), levels=[4])


def test_integer_images_are_computed_in_float(encoder):
    levels = encoder(np.full((1, 16, 16), 200, dtype=np.uint8))
    assert all(level.dtype == torch.float32 and bool(torch.isfinite(level).all()) for level in levels)


@pytest.mark.parametrize("value", [0.0, 1.0, 7.5])
@pytest.mark.parametrize("scale", [False, True])
def test_constant_images_give_finite_features(encoder, value, scale):
    encoder.scale_intensity = scale
    try:
        levels = encoder(torch.full((1, 24, 24), value))
    finally:
        encoder.scale_intensity = False
    assert all(bool(torch.isfinite(level).all()) for level in levels)


@pytest.mark.parametrize("image, message", [
    (torch.zeros(1, 0, 16), "too small"),
    (torch.zeros(1, 4, 16), "too small"),
    (torch.full((1, 16, 16), float("nan")), "NaN"),
    (torch.zeros(16, 16), "channel-first"),
    ([[0.0]], "numpy array or a torch tensor"),
])
def test_unusable_images_are_input_errors(encoder, image, message):
    with pytest.raises(InputError, match=message):
        encoder(image)


def test_backbone_is_frozen_and_stays_in_eval_mode(encoder):
    encoder.extractor.train()
    image = torch.rand(1, 16, 16, requires_grad=True)
    levels = encoder(image)
    assert not encoder.extractor.training
    assert not any(p.requires_grad for p in encoder.extractor.parameters())
    assert not any(level.requires_grad for level in levels)


def test_device_argument_places_the_backbone_and_the_features():
    extract = ExtractFeatures(build_backbone("fusion_encoder", pretrained=False), device="cpu")
    assert all(level.device.type == "cpu" for level in extract(torch.rand(1, 16, 16)))
    if torch.cuda.is_available():
        cuda = ExtractFeatures(build_backbone("fusion_encoder", pretrained=False), device="cuda")
        assert all(level.is_cuda for level in cuda(np.random.rand(1, 16, 16).astype(np.float32)))


def test_dictionary_version_writes_key_features_and_honours_missing_keys(encoder):
    data = {"mr": torch.rand(1, 16, 16), "ct": torch.rand(1, 16, 16)}
    transform = ExtractFeaturesd(keys=("mr", "ct", "pet"), backbone=encoder.extractor, allow_missing_keys=True)
    out = transform(data)
    assert sorted(out) == ["ct", "ct_features", "mr", "mr_features"] and len(out["mr_features"]) == 4
    assert "mr_features" not in data  # the input dictionary is left alone
    with pytest.raises(KeyError):
        ExtractFeaturesd(keys=("mr", "pet"), backbone=encoder.extractor)(data)
    custom = ExtractFeaturesd(keys="mr", backbone=encoder.extractor, feature_key_postfix="deep")(data)
    assert "mr_deep" in custom


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
def test_fuse_features_returns_the_type_and_geometry_of_a(encoder, kind):
    rng = np.random.default_rng(1)
    a, b = rng.random((1, 32, 32)).astype(np.float32), rng.random((1, 32, 32)).astype(np.float32)
    fused, weight = FuseFeatures(encoder, return_weight=True)(make(kind, a), make(kind, b))
    expected_type = {"numpy": np.ndarray, "torch": torch.Tensor, "metatensor": MetaTensor}[kind]
    assert type(fused) is expected_type and type(weight) is expected_type
    w = np.asarray(weight)
    assert ((w >= 0) & (w <= 1)).all()
    np.testing.assert_allclose(np.asarray(fused), w * a + (1 - w) * b, atol=1e-6)
    if kind == "metatensor":
        assert torch.equal(fused.affine, AFFINE) and fused.meta["fusion"]["method"] == "feature_l1_norm"


def test_identical_sources_come_back(encoder):
    image = torch.rand(1, 24, 24)
    torch.testing.assert_close(FuseFeatures(encoder)(image, image.clone()), image, atol=1e-6, rtol=0)


def test_sources_on_different_grids_are_refused(encoder):
    a = make("metatensor", np.zeros((1, 16, 16), np.float32))
    b = make("metatensor", np.zeros((1, 16, 16), np.float32), affine=torch.eye(4, dtype=torch.float64))
    with pytest.raises(InputError, match="different grids"):
        FuseFeatures(encoder)(a, b)


def test_dictionary_fusion_uses_stored_features():
    a, b = torch.rand(1, 16, 16), torch.rand(1, 16, 16)
    data = {"mr": a, "pet": b, "mr_features": [torch.ones(2, 8, 8)], "pet_features": [torch.zeros(2, 8, 8)]}
    out = FuseFeaturesd(keys=("mr", "pet"), weight_key="w")(data)
    torch.testing.assert_close(out["w"], torch.ones(1, 16, 16))  # all activity in A: all weight on A
    torch.testing.assert_close(out["fused"], a)


def test_dictionary_fusion_extracts_when_no_features_are_stored_and_honours_missing_keys(encoder):
    data = {"mr": torch.rand(1, 16, 16), "pet": torch.rand(1, 16, 16)}
    out = FuseFeaturesd(keys=("mr", "pet"), extractor=encoder, output_key="f")(data)
    assert out["f"].shape == (1, 16, 16)
    only_one = {"mr": data["mr"]}
    assert FuseFeaturesd(keys=("mr", "pet"), extractor=encoder, allow_missing_keys=True)(only_one) == only_one
    with pytest.raises(KeyError):
        FuseFeaturesd(keys=("mr", "pet"), extractor=encoder)(only_one)
    with pytest.raises(InputError, match="exactly two keys"):
        FuseFeaturesd(keys=("mr",))
