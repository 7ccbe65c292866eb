"""Guided-filter fusion (Li, Kang & Hu 2013) and the guided image filter it is built on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_fusion.errors import InputError
from monai_fusion.rules import guided_filter, guided_image_filter
from monai_fusion.rules.filters import box_mean


def naive_box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Window mean by direct convolution, dividing by the in-image count: the definition, slowly."""
    size = 2 * radius + 1
    kernel = torch.ones(1, 1, size, size, dtype=x.dtype)
    total = F.conv2d(F.pad(x[None], (radius,) * 4), kernel)[0]
    count = F.conv2d(F.pad(torch.ones_like(x)[None], (radius,) * 4), kernel)[0]
    return total / count


def naive_guided_filter(p, guide, radius, eps):
    mean = lambda t: naive_box_mean(t, radius)  # noqa: E731
    a = (mean(guide * p) - mean(guide) * mean(p)) / (mean(guide * guide) - mean(guide) ** 2 + eps)
    b = mean(p) - a * mean(guide)
    return mean(a) * guide + mean(b)


@pytest.mark.parametrize("radius", [1, 3, 12, 40])
def test_box_mean_matches_the_definition_for_any_radius(radius):
    x = torch.rand(1, 30, 23, dtype=torch.float64)
    assert torch.allclose(box_mean(x, radius), naive_box_mean(x, radius), atol=1e-12)


@pytest.mark.parametrize("radius, eps", [(2, 1e-3), (7, 1e-6), (20, 0.3)])
def test_guided_image_filter_matches_he_et_al(radius, eps):
    guide = torch.rand(1, 40, 36, dtype=torch.float64)
    p = (torch.rand(1, 40, 36, dtype=torch.float64) > 0.5).double()
    assert torch.allclose(guided_image_filter(p, guide, radius, eps), naive_guided_filter(p, guide, radius, eps), atol=1e-9)


def test_guided_image_filter_limits():
    guide = torch.rand(1, 32, 32, dtype=torch.float64)
    p = torch.rand(1, 32, 32, dtype=torch.float64)
    assert torch.allclose(guided_image_filter(guide, guide, 3, 0.0), guide, atol=1e-9)  # self-guided, eps 0: identity
    # a huge eps flattens the local linear model: the output becomes the doubly box-filtered input
    assert torch.allclose(guided_image_filter(p, guide, 3, 1e12), box_mean(box_mean(p, 3), 3), atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 24, 28, 32)])
def test_identical_sources_return_the_source(shape):
    x = torch.rand(shape)
    fused, weight = guided_filter(x, x.clone(), r1=10)
    assert torch.allclose(fused, x, atol=1e-6)
    assert torch.allclose(weight, torch.full_like(weight, 0.5))


def test_edge_in_a_and_flat_b_takes_the_edge_from_a():
    a = torch.zeros(1, 64, 64, dtype=torch.float64)
    a[..., 32:] = 1.0
    b = torch.full_like(a, 0.5)
    fused, weight = guided_filter(a, b)
    assert weight[0, :, 28:36].min() > 0.5  # near the edge A dominates
    assert fused[0, 32, 33] - fused[0, 32, 30] > 0.7  # and its step survives (the average keeps 0.5)


def test_scaling_both_sources_scales_the_result():
    a, b = torch.rand(1, 48, 48, dtype=torch.float64), torch.rand(1, 48, 48, dtype=torch.float64)
    unit = guided_filter(a, b).fused
    byte = guided_filter(255 * a, 255 * b).fused
    assert torch.allclose(byte, 255 * unit, atol=1e-8)  # eps follows the data range


def test_constant_sources_give_their_mean():
    fused, weight = guided_filter(torch.full((1, 32, 32), 0.2), torch.full((1, 32, 32), 0.8))
    assert torch.isfinite(fused).all() and torch.allclose(fused, torch.full_like(fused, 0.5), atol=1e-6)


@pytest.mark.parametrize("options", [{"r1": -1}, {"r2": 2.5}, {"eps1": -0.1}, {"saliency_sigma": 0}])
def test_bad_parameters_are_user_errors(options):
    x = torch.rand(1, 16, 16)
    with pytest.raises(InputError):
        guided_filter(x, x, **options)
