"""Wavelet (DWT) decomposition and fusion: PyWavelets-identical coefficients, perfect reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.rules import dwt, dwt_decompose, dwt_reconstruct
from monai_fusion.rules.wavelet import wavelet_filters

pywt = pytest.importorskip("pywt")


@pytest.mark.filterwarnings("ignore:Level value of 2 is too high")  # PyWavelets on small test images
@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
@pytest.mark.parametrize("shape", [(16, 32), (8, 16, 16)], ids=["2d", "3d"])
def test_coefficients_equal_pywavelets_periodization(wavelet, shape):
    x = torch.rand(1, *shape, dtype=torch.float64)
    ours = dwt_decompose(x, 2, wavelet)
    reference = pywt.wavedecn(x[0].numpy(), wavelet, mode="periodization", level=2)
    np.testing.assert_allclose(ours[-1][0].numpy(), reference[0], atol=1e-12)
    for level in range(2):
        bands = reference[-1 - level]  # PyWavelets lists coarse to fine
        for ours_band, key in zip(ours[level], sorted(bands)):
            np.testing.assert_allclose(ours_band[0].numpy(), bands[key], atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
@pytest.mark.parametrize("shape, levels", [((2, 64, 32), 3), ((1, 16, 32, 8), 2)])
def test_perfect_reconstruction(wavelet, shape, levels):
    x = torch.rand(shape, dtype=torch.float64)
    assert torch.allclose(dwt_reconstruct(dwt_decompose(x, levels, wavelet), wavelet), x, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 50, 37), (1, 20, 18, 27)])
def test_fusing_an_image_with_itself_returns_it(wavelet, shape):
    x = torch.rand(shape, dtype=torch.float64)
    fused, weight = dwt(x, x.clone(), levels=2, wavelet=wavelet)
    assert fused.shape == shape and weight.shape == shape
    assert torch.allclose(fused, x, atol=1e-12)
    assert torch.equal(weight, torch.full_like(weight, 0.5))  # every coefficient is a tie


def test_built_in_filters_are_orthonormal():
    for name in ("haar", "db2"):
        low, high = (torch.tensor(f, dtype=torch.float64) for f in wavelet_filters(name))
        assert low.sum().item() == pytest.approx(2**0.5) and high.sum().item() == pytest.approx(0, abs=1e-15)
        assert torch.dot(low, low).item() == pytest.approx(1) and torch.dot(low, high).item() == pytest.approx(0, abs=1e-15)
        assert np.allclose(low.numpy(), pywt.Wavelet(name).rec_lo)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_edge_in_a_and_flat_b_keeps_the_edge_of_a(wavelet):
    a = torch.zeros(1, 32, 32, dtype=torch.float64)
    a[..., 15:] = 1.0  # at an odd position, so even Haar sees it at the finest level
    b = torch.full_like(a, 0.5)
    fused, weight = dwt(a, b, levels=2, wavelet=wavelet)
    assert torch.all(weight[0, :, 14:16] > 0.999)  # the edge's detail is A's
    assert torch.all(weight[0, :, :8] == 0.5)  # neither source has detail here
    assert fused[0, 16, 15] - fused[0, 16, 14] > 0.9  # A's step survives at full contrast
    assert torch.allclose(fused[0, :, :4], torch.full((32, 4), 0.25, dtype=torch.float64))  # no border artefacts


def test_option_checks():
    x = torch.rand(1, 32, 32)
    with pytest.raises(InputError, match="unknown wavelet"):
        dwt(x, x, wavelet="db99x")
    with pytest.raises(InputError, match="not orthogonal"):
        dwt(x, x, wavelet="bior2.2")
    with pytest.raises(InputError, match="levels <= 4"):
        dwt(x, x, levels=5)
    with pytest.raises(InputError):
        dwt(x, x, consistency_window=2)
