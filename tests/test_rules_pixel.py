"""Pixel-level rules: average, maximum, max_abs, weighted, pca -- hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.rules import FusionResult, average, max_abs, maximum, pca, weighted
from monai_fusion.rules.pixel import pca_weights

KINDS = ["numpy", "torch", "metatensor"]


def as_kind(array, kind: str):
    array = np.asarray(array)
    if kind == "numpy":
        return array
    tensor = torch.as_tensor(array)
    return MetaTensor(tensor) if kind == "metatensor" else tensor


def full(value, shape=(1, 6, 5), dtype=np.float32):
    return np.full(shape, value, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1, 6, 5), (2, 4, 6, 5)])
def test_average_of_constants(kind, shape):
    result = average(as_kind(full(2.0, shape), kind), as_kind(full(4.0, shape), kind))
    assert isinstance(result, FusionResult)
    assert type(result.fused) is torch.Tensor  # rules return plain tensors, whatever came in
    assert result.fused.shape == shape and result.weight.shape == shape
    assert torch.equal(result.fused, torch.full(shape, 3.0))
    assert torch.equal(result.weight, torch.full(shape, 0.5))


@pytest.mark.parametrize("kind", KINDS)
def test_maximum_picks_the_larger_source(kind):
    a = np.array([[[1.0, 5.0, 2.0]]], np.float32)
    b = np.array([[[2.0, 3.0, 2.0]]], np.float32)
    fused, weight = maximum(as_kind(a, kind), as_kind(b, kind))
    assert fused.tolist() == [[[2.0, 5.0, 2.0]]]
    assert weight.tolist() == [[[0.0, 1.0, 0.5]]]  # 0.5 where equal: either source gives the value


def test_max_abs_takes_the_larger_magnitude_and_equals_maximum_for_non_negative_images():
    a = torch.tensor([[[-5.0, 1.0, 0.0]]])
    b = torch.tensor([[[3.0, -2.0, 0.0]]])
    fused, weight = max_abs(a, b)
    assert fused.tolist() == [[[-5.0, -2.0, 0.0]]]
    assert weight.tolist() == [[[1.0, 0.0, 0.5]]]
    x, y = torch.rand(1, 8, 9), torch.rand(1, 8, 9)
    assert torch.equal(max_abs(x, y).fused, maximum(x, y).fused)


def test_weighted_energy_of_constants_is_hand_computable():
    # energies 1 and 9 -> w_a = 1 / 10 -> 0.1 * 1 + 0.9 * 3 = 2.8
    fused, weight = weighted(full(1.0), full(3.0), activity="energy", window=3)
    assert torch.allclose(weight, torch.full((1, 6, 5), 0.1))
    assert torch.allclose(fused, torch.full((1, 6, 5), 2.8))


def test_weighted_contrast_prefers_the_textured_source():
    flat = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    textured = torch.rand(1, 16, 16, dtype=torch.float64)
    fused, weight = weighted(flat, textured, activity="contrast", window=5)
    assert torch.equal(weight, torch.zeros_like(weight))  # a flat window has no contrast
    assert torch.equal(fused, textured)


def test_weighted_on_two_constant_images_is_their_mean_not_nan():
    fused, weight = weighted(full(0.25), full(0.25), activity="contrast")
    assert torch.isfinite(fused).all() and torch.equal(weight, torch.full_like(weight, 0.5))
    fused, _ = weighted(full(0.0), full(0.0), activity="energy")
    assert torch.equal(fused, torch.zeros_like(fused))


@pytest.mark.parametrize("activity, window", [("median", 3), ("energy", 4), ("energy", 0)])
def test_weighted_refuses_bad_options(activity, window):
    with pytest.raises(InputError):
        weighted(full(1.0), full(2.0), activity=activity, window=window)


@pytest.mark.parametrize("scale", [1.0, 3.0, 0.2])
def test_pca_weights_of_a_source_and_a_scaled_copy(scale):
    a = torch.rand(1, 12, 10, dtype=torch.float64)
    fused, weight = pca(a, scale * a)
    expected = 1.0 / (1.0 + scale)  # principal eigenvector is proportional to (1, scale)
    assert torch.allclose(weight, torch.full_like(weight, expected), atol=1e-12)
    assert torch.allclose(fused, (expected + (1 - expected) * scale) * a, atol=1e-12)


def test_pca_weights_are_per_channel_and_defined_in_degenerate_cases():
    a = torch.rand(3, 10, 10, dtype=torch.float64)
    b = torch.stack([2 * a[0], torch.full_like(a[1], 0.3), 1.0 - a[2]])
    weights = pca_weights(a, b)
    assert weights[0].item() == pytest.approx(1 / 3)
    assert weights[1].item() == pytest.approx(1.0)  # B constant: all variance is A's
    assert weights[2].item() == pytest.approx(0.5)  # perfectly anti-correlated, equal variance
    constant = torch.full((1, 4, 4), 0.7)
    assert pca(constant, constant).weight.unique().tolist() == [0.5]


@pytest.mark.parametrize("rule", [average, maximum, max_abs, weighted, pca])
def test_pixel_rules_are_convex_combinations_with_the_reported_weight(rule):
    a, b = torch.rand(2, 7, 8, 9, dtype=torch.float64), torch.rand(2, 7, 8, 9, dtype=torch.float64)
    fused, weight = rule(a, b)
    assert ((weight >= 0) & (weight <= 1)).all()
    assert torch.allclose(fused, weight * a + (1 - weight) * b, atol=1e-12)
    assert (fused >= torch.minimum(a, b) - 1e-12).all() and (fused <= torch.maximum(a, b) + 1e-12).all()
