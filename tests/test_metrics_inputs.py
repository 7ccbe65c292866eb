"""The input contract shared by every metric in the registry: one-line InputError on bad input,
the same value for numpy / torch / uint8 inputs, 2D and 3D, and documented NaN-free values on
constant and degenerate images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.metrics import CONVENTIONS, METRICS, NO_REFERENCE
from monai_fusion.metrics.gradient import QABF_PERFECT

REFERENCE = [name for name in METRICS if name not in NO_REFERENCE]


def _size(name: str) -> int:
    return 161 if name == "MS_SSIM" else 48  # MS-SSIM's five scales need 161 pixels


def _triple(name: str, seed: int = 0):
    """uint8 sources and fusion spanning exactly 0..255, with some structure."""
    n = _size(name)
    rng = np.random.default_rng(seed)
    i, j = np.indices((n, n))
    a = ((i * 255) // (n - 1)).astype(np.uint8)
    b = np.clip(128 + 100 * np.sin(j / 4.0) + rng.normal(0, 10, (n, n)), 0, 255).astype(np.uint8)
    f = ((a.astype(np.int64) + b) // 2).astype(np.uint8)
    f[0, 0], f[0, 1] = 0, 255
    return a, b, f


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(METRICS))
def test_bad_fused_image(name):
    metric = METRICS[name]
    a, b, f = (x.astype(np.float64) for x in _triple(name))
    bad = {
        "NaN": (np.where(np.eye(*f.shape, dtype=bool), np.nan, f), "NaN or infinite"),
        "Inf": (np.where(np.eye(*f.shape, dtype=bool), np.inf, f), "NaN or infinite"),
        "1D": (f.ravel(), r"2D \(H, W\) or 3D \(D, H, W\)"),
        "4D": (f[None, None], r"2D \(H, W\) or 3D \(D, H, W\)"),
        "complex": (f.astype(np.complex128), "real numbers"),
        "strings": (np.full(f.shape, "x"), "real numbers"),
    }
    for label, (fused, message) in bad.items():
        with pytest.raises(InputError, match=message) as info:
            metric(a, b, fused)
        assert "\n" not in str(info.value), label
    with pytest.raises(InputError, match="unknown metric convention"):
        metric(a, b, f, convention="matlab")


@pytest.mark.parametrize("name", REFERENCE)
def test_bad_sources(name):
    metric = METRICS[name]
    a, b, f = (x.astype(np.float64) for x in _triple(name))
    with pytest.raises(InputError, match="same shape"):
        metric(a[:, :-1], b, f)
    with pytest.raises(InputError, match="same shape"):
        metric(a, b, f[None])
    with pytest.raises(InputError, match="B has NaN"):
        metric(a, np.where(b > 100, np.nan, b), f)
    with pytest.raises(InputError, match="A must be a 2D"):
        metric(a[0], b, f)


def test_torch_tensor_on_autograd_graph_is_accepted():
    a, b, f = (torch.tensor(x, dtype=torch.float32, requires_grad=True) for x in _triple("SSIM"))
    assert math.isfinite(METRICS["SSIM"](a, b, f))


# ---------------------------------------------------------------- dtype and container equivalence


@pytest.mark.parametrize("name", list(METRICS))
def test_numpy_torch_uint8_agree(name):
    metric = METRICS[name]
    a, b, f = _triple(name)
    for convention in CONVENTIONS:
        expected = metric(a.astype(np.float64), b.astype(np.float64), f.astype(np.float64), convention)
        assert type(expected) is float
        variants = {
            "uint8": (a, b, f),
            "torch uint8": tuple(torch.from_numpy(x) for x in (a, b, f)),
            "torch float32": tuple(torch.from_numpy(x).float() for x in (a, b, f)),
            "int16": tuple(x.astype(np.int16) for x in (a, b, f)),
        }
        for label, args in variants.items():
            assert metric(*args, convention) == pytest.approx(expected, rel=1e-9, abs=1e-12), (label, convention)


@pytest.mark.parametrize("name", list(METRICS))
def test_3d_volumes_give_finite_floats(name):
    a, b, f = (np.stack([x, x.T, np.flipud(x)]).astype(np.float64) for x in _triple(name))
    for convention in CONVENTIONS:
        value = METRICS[name](a, b, f, convention)
        assert type(value) is float and math.isfinite(value), convention


# ---------------------------------------------------------------- constant and degenerate images

LOG3_B256 = math.log(3) / math.log(256)
CONSTANT_TRIPLE_VALUES = {
    # name: value for F = A = B = 7 in the default convention (see the package docstring)
    "EN": 0.0, "SD": 0.0, "SF": 0.0, "AG": 0.0, "EI": 0.0, "MI": 0.0,
    "FMI_pixel": 1.0, "FMI_edge": 1.0, "FMI_gradient": 1.0, "FMI_dct": 1.0, "FMI_wavelet": 1.0,
    "NMI": 2.0, "Q_NCIE": 1.0, "SSIM": 1.0, "MS_SSIM": 1.0, "MSE": 0.0, "RMSE": 0.0, "PSNR": math.inf,
    "Qabf": QABF_PERFECT, "VIF": 2.0, "VIFF": 1.0, "SCD": 0.0, "CC": 0.0,
    "Q_Y": 1.0, "Q_CB": 1.0, "Q_W": 1.0, "Q_E": 1.0, "Q_P": 1.0,
}
# where the other conventions differ: SSIM is summed over the sources, the toolbox NCC of a
# constant image is 0 (R = I), and Qabf.m's zero padding turns the image border into edges
BENCHMARK_DIFFERENCES = {"SSIM": 2.0, "Q_NCIE": 1.0 - LOG3_B256, "Qabf": None}


def test_every_metric_has_a_documented_constant_value():
    assert set(CONSTANT_TRIPLE_VALUES) == set(METRICS)


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_constant_triple(name, convention):
    n = _size(name)
    c = np.full((n, n), 7.0)
    expected = CONSTANT_TRIPLE_VALUES[name]
    if convention != "default" and name in BENCHMARK_DIFFERENCES:
        expected = BENCHMARK_DIFFERENCES[name]
    value = METRICS[name](c, c, c, convention)
    if expected is None:
        assert 0.0 <= value <= 1.0
    else:
        assert value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", list(METRICS))
def test_degenerate_triples_are_nan_free(name):
    n = _size(name)
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 255, (n, n))
    zero, flat = np.zeros((n, n)), np.full((n, n), 3.0)
    cases = [(zero, zero, zero), (flat, flat, noise), (noise, flat, flat), (noise, noise, zero), (zero, noise, flat)]
    for convention in CONVENTIONS:
        for a, b, f in cases:
            value = METRICS[name](a, b, f, convention)
            assert type(value) is float and not math.isnan(value), convention
