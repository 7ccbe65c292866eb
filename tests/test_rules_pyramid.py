"""Laplacian-pyramid decomposition and fusion, and the selection helpers it uses."""

from __future__ import annotations

import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.rules import laplacian_decompose, laplacian_pyramid, laplacian_reconstruct
from monai_fusion.rules.pyramid import expand, reduce
from monai_fusion.rules.selection import choose_max, consistency_verification


@pytest.mark.parametrize("shape", [(1, 33, 20), (2, 17, 24, 9)])
def test_reduce_and_expand_handle_odd_sizes(shape):
    x = torch.rand(shape, dtype=torch.float64)
    coarse = reduce(x)
    assert coarse.shape[1:] == tuple((n + 1) // 2 for n in shape[1:])
    assert expand(coarse, shape[1:]).shape == shape


def test_reduce_and_expand_keep_constants_and_linear_ramps():
    constant = torch.full((1, 12, 10), 0.3, dtype=torch.float64)
    assert torch.allclose(reduce(constant), torch.full((1, 6, 5), 0.3, dtype=torch.float64))
    assert torch.allclose(expand(reduce(constant), (12, 10)), constant)
    # away from borders the 5-tap kernel reproduces linear functions exactly
    ramp = torch.arange(32, dtype=torch.float64).view(1, 32, 1).expand(1, 32, 8)
    assert torch.allclose(reduce(ramp)[0, 2:-2, 0], 2 * torch.arange(2, 14, dtype=torch.float64))
    assert torch.allclose(expand(reduce(ramp), (32, 8))[0, 4:-4], ramp[0, 4:-4])


@pytest.mark.parametrize("shape, levels", [((1, 64, 48), 3), ((1, 37, 53), 2), ((2, 20, 24, 28), 2)])
def test_decomposition_reconstructs_exactly(shape, levels):
    x = torch.rand(shape, dtype=torch.float64)
    pyramid = laplacian_decompose(x, levels)
    assert len(pyramid) == levels + 1
    assert torch.allclose(laplacian_reconstruct(pyramid), x, atol=1e-13)


def test_choose_max_and_consistency_verification():
    assert choose_max(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 2.0 + 1e-9]), 1e-6).tolist() == [1, 0, 0.5]
    decision = torch.ones(1, 5, 5)
    decision[0, 2, 2] = 0.0  # an isolated choice of B inside A's region is switched to A
    assert torch.equal(consistency_verification(decision), torch.ones(1, 5, 5))
    stripes = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert consistency_verification(stripes).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert torch.equal(consistency_verification(stripes, window=1), stripes)


@pytest.mark.parametrize("dims", [2, 3])
def test_edge_in_a_and_flat_b_keeps_the_edge_of_a(dims):
    size = (1,) + (32,) * dims
    a = torch.zeros(size, dtype=torch.float64)
    a[..., 16:] = 1.0  # a step edge along the last axis
    b = torch.full(size, 0.5, dtype=torch.float64)
    fused, weight = laplacian_pyramid(a, b, levels=2)
    centre = (0,) + (16,) * (dims - 1)
    # the weight map says the edge came from A; flat areas have no detail in either source
    assert torch.equal(weight[centre][14:18], torch.ones(4, dtype=torch.float64))
    assert torch.all(weight[centre][:4] == 0.5)
    # the step keeps A's full local contrast (the average would halve it) ...
    profile = fused[centre]
    assert profile[16] - profile[15] > 0.9
    # ... while far from it the averaged base level gives the mean of the sources
    assert profile[-4:].mean() - profile[:4].mean() == pytest.approx(0.5, abs=0.01)


def test_sources_with_detail_in_different_places_each_contribute():
    a = torch.zeros(1, 64, 64)
    b = torch.zeros(1, 64, 64)
    a[0, 8:24, 8:24] = 1.0
    b[0, 40:56, 40:56] = 1.0
    fused, weight = laplacian_pyramid(a, b, levels=3)
    assert weight[0, 8, 8:24].eq(1).all() and weight[0, 40, 40:56].eq(0).all()
    # each square keeps most of its contrast (the average would give 0.5; the base level is averaged)
    assert fused[0, 16, 16] > 0.65 and fused[0, 48, 48] > 0.65
    assert fused[0, 16, 7] < 0.05 and fused[0, 48, 39] < 0.05


def test_option_checks():
    a = torch.rand(1, 64, 64)
    for options in ({"levels": 0}, {"levels": 2.5}, {"window": 2}, {"consistency_window": 0}, {"levels": 5}):
        with pytest.raises(InputError):
            laplacian_pyramid(a, a, **options)


def test_no_consistency_verification_is_plain_choose_max():
    a, b = torch.rand(1, 32, 32, dtype=torch.float64), torch.rand(1, 32, 32, dtype=torch.float64)
    with_cv = laplacian_pyramid(a, b, levels=2).weight
    without = laplacian_pyramid(a, b, levels=2, window=1, consistency_window=1).weight
    energy_a = laplacian_decompose(a, 2)[0] ** 2
    energy_b = laplacian_decompose(b, 2)[0] ** 2
    assert torch.equal(without, (energy_a > energy_b).double())
    assert not torch.equal(with_cv, without)
