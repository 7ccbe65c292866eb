"""SSIM, MS-SSIM, Q_Y, Q_W, Q_E and Q_CB: identities, ranges, 3D windows, and real Harvard pins
checked against scikit-image (the benchmark SSIM is defined by its call), a window-by-window loop,
and plain ``scipy.signal.convolve2d`` transcriptions of the published MATLAB code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, signal

from monai_fusion.errors import InputError
from monai_fusion.metrics import multiscale_structural_similarity, q_cb, q_e, q_w, q_y, structural_similarity
from tests.conftest import harvard_triple as _harvard_triple
from tests.conftest import shared_path

CONVENTIONS = ("default", "benchmark", "vifb")
SSIM_FAMILY = (structural_similarity, q_y, q_w, q_e, q_cb)




def _random_triple(shape=(48, 48), seed=0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 2) * 2 - 100
    b = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 1.5)
    return a, b, 0.6 * a + 0.4 * b


# ---------------------------------------------------------------- identities and properties


def test_identical_images():
    a, _, _ = _random_triple()
    # SSIM(A, A) = 1 per source: mean of two (default) = 1, sum (benchmark, vifb) = 2
    assert structural_similarity(a, a, a) == pytest.approx(1.0, abs=1e-12)
    assert structural_similarity(a, a, a, "benchmark") == pytest.approx(2.0, abs=1e-12)
    assert structural_similarity(a, a, a, "vifb") == pytest.approx(2.0, abs=1e-12)
    # Q_Y: SSIM(A, B) = 1 >= 0.75 -> lam * 1 + (1 - lam) * 1; Q_W, Q_E: weighted means of ones
    for metric in (q_y, q_w, q_e, q_cb):
        for convention in CONVENTIONS:
            assert metric(a, a, a, convention) == pytest.approx(1.0, abs=1e-9), (metric.__name__, convention)


def test_identical_constants_have_ssim_one():
    c = np.full((20, 20), 42.0)
    # flat windows: (2 mu^2 + C1) / (2 mu^2 + C1) * (0 + C2) / (0 + C2) = 1
    assert structural_similarity(c, c, c) == 1.0
    assert structural_similarity(c, c, c, "benchmark") == pytest.approx(2.0)


@pytest.mark.parametrize("metric", SSIM_FAMILY)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_symmetric_in_sources(metric, convention):
    a, b, f = _random_triple(seed=1)
    assert metric(a, b, f, convention) == pytest.approx(metric(b, a, f, convention), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_ranges(convention):
    a, b, _ = _random_triple(seed=2)
    f = np.random.default_rng(3).uniform(-100, 300, a.shape)  # a poor fusion
    assert -1 <= structural_similarity(a, b, f) <= 1
    for metric in (q_y, q_w, q_e):
        assert -1 <= metric(a, b, f, convention) <= 1
    assert 0 <= q_cb(a, b, f, convention) <= 1


def test_ssim_3d_volumetric_window():
    rng = np.random.default_rng(4)
    a, b = (ndimage.gaussian_filter(rng.uniform(0, 255, (12, 30, 30)), 1.5) for _ in range(2))
    f = np.maximum(a, b)
    # default: Wang's SSIM with an 11^3 Gaussian window, 'valid', L = joint range of the triple
    g1 = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    window = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    window /= window.sum()
    data_range = max(a.max(), b.max(), f.max()) - min(a.min(), b.min(), f.min())
    expected = np.mean([_wang_ssim(x, f, data_range, window, signal.fftconvolve) for x in (a, b)])
    assert structural_similarity(a, b, f) == pytest.approx(expected, rel=1e-9)
    # benchmark: scikit-image's 7^3 window on the volume
    skimage_metrics = pytest.importorskip("skimage.metrics")
    expected = sum(skimage_metrics.structural_similarity(f, x, data_range=2) for x in (a, b))
    assert structural_similarity(a, b, f, "benchmark") == pytest.approx(expected, rel=1e-9)


def test_ssim_thin_volume_is_per_slice():
    a, b, f = (np.stack([x, x[::-1]]) for x in _random_triple(seed=5))
    # 2 slices < 11: per-slice SSIM averaged over the (non-empty) slices
    expected = np.mean([structural_similarity(a[k], b[k], f[k]) for k in range(2)])
    assert structural_similarity(a, b, f) == pytest.approx(expected, rel=1e-12)


def test_too_small_images_are_rejected():
    small = np.zeros((10, 40))
    with pytest.raises(InputError, match="SSIM needs at least 11 pixels"):
        structural_similarity(small, small, small)
    with pytest.raises(InputError, match="MS-SSIM needs at least 161 pixels"):
        multiscale_structural_similarity(np.zeros((160, 200)), np.zeros((160, 200)), np.zeros((160, 200)))


def test_ms_ssim_identical_images_is_one():
    a = ndimage.gaussian_filter(np.random.default_rng(6).uniform(0, 255, (176, 176)), 2)
    assert multiscale_structural_similarity(a, a, a) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- naive references


def _gaussian_window(size, sigma):
    """``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return w / w.sum()


def _filter2_valid(w, x, convolve=signal.convolve2d):
    return convolve(x, np.flip(w), mode="valid")


def _moments(x, y, window, convolve=signal.convolve2d, mode="valid"):
    """ssim_index.m's moments, filter2(window, ., mode)."""
    filt = lambda z: convolve(z, np.flip(window), mode=mode)  # noqa: E731
    mu_x, mu_y = filt(x), filt(y)
    return mu_x, mu_y, filt(x * x) - mu_x ** 2, filt(y * y) - mu_y ** 2, filt(x * y) - mu_x * mu_y


def _wang_ssim_map(x, y, data_range, window, convolve=signal.convolve2d):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y, s_x, s_y, s_xy = _moments(x, y, window, convolve)
    return ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_x + s_y + c2)), s_x, s_y


def _wang_ssim(x, y, data_range, window, convolve=signal.convolve2d):
    return float(_wang_ssim_map(x, y, data_range, window, convolve)[0].mean())


def _loop_ssim(x, y, data_range, size=11, sigma=1.5):
    """SSIM window by window, straight from Wang et al. (2004) eq. 13 with Gaussian weights."""
    w = _gaussian_window(size, sigma).tolist()
    xs, ys = x.tolist(), y.tolist()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(len(xs) - size + 1):
        for j in range(len(xs[0]) - size + 1):
            cells = [(w[p][q], xs[i + p][j + q], ys[i + p][j + q]) for p in range(size) for q in range(size)]
            mx = sum(c * u for c, u, _ in cells)
            my = sum(c * v for c, _, v in cells)
            vx = sum(c * (u - mx) ** 2 for c, u, _ in cells)
            vy = sum(c * (v - my) ** 2 for c, _, v in cells)
            cxy = sum(c * (u - mx) * (v - my) for c, u, v in cells)
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return sum(values) / len(values)


def _naive_ms_ssim(x, y, data_range):
    """msssim.m: 5 levels, mcs at levels 1-4 and mssim at level 5, 2x2 mean + decimation."""
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    window = _gaussian_window(11, 1.5)
    c2 = (0.03 * data_range) ** 2
    value = 1.0
    for level, weight in enumerate(weights):
        ssim_map, s_x, s_y = _wang_ssim_map(x, y, data_range, window)
        _, _, _, _, s_xy = _moments(x, y, window)
        cs = float(((2 * s_xy + c2) / (s_x + s_y + c2)).mean())
        value *= (float(ssim_map.mean()) if level == 4 else cs) ** weight
        down = lambda z: ndimage.correlate(z, np.full((2, 2), 0.25), mode="reflect", origin=(-1, -1))[::2, ::2]  # noqa: E731
        x, y = down(x), down(y)
    return value


def _naive_q_y(a, b, f, c):
    """metricYang.m with the 7x7 Gaussian; windows flat in an image get exactly 0 (co)variance."""
    window = _gaussian_window(7, 1.5)
    flat = lambda z: (ndimage.maximum_filter(z, 7) == ndimage.minimum_filter(z, 7))[3:-3, 3:-3]  # noqa: E731

    def ssim(x, y):
        c1, c2 = c
        mu_x, mu_y, s_x, s_y, s_xy = _moments(x, y, window)
        s_x, s_y = np.maximum(s_x, 0), np.maximum(s_y, 0)
        if c1 < 1e-10:  # toolbox constants
            s_x[flat(x)] = 0
            s_y[flat(y)] = 0
            s_xy[flat(x) | flat(y)] = 0
        return ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_x + s_y + c2)), s_x, s_y

    s_ab, s_a, s_b = ssim(a, b)
    s_af, _, _ = ssim(a, f)
    s_bf, _, _ = ssim(b, f)
    lam = np.where(s_a + s_b > 0, s_a / np.where(s_a + s_b > 0, s_a + s_b, 1), 0.5)
    return float(np.where(s_ab >= 0.75, lam * s_af + (1 - lam) * s_bf, np.maximum(s_af, s_bf)).mean())


def _naive_q_w(a, b, f, data_range, toolbox):
    """metricPeilla.m case 2 (and our default's guards): variance-weighted SSIM of F with A, B."""
    window = _gaussian_window(11, 1.5)
    ssim_af, s_a, _ = _wang_ssim_map(a, f, data_range, window)
    ssim_bf, s_b, _ = _wang_ssim_map(b, f, data_range, window)
    s_a, s_b = np.maximum(s_a, 0), np.maximum(s_b, 0)
    if toolbox:
        zero = (s_a + s_b) == 0
        s_a, s_b = s_a + 0.5 * zero, s_b + 0.5 * zero
    lam = np.where(s_a + s_b > 0, s_a / np.where(s_a + s_b > 0, s_a + s_b, 1), 0.5)
    cw = np.maximum(s_a, s_b)
    return float((cw / cw.sum() * (lam * ssim_af + (1 - lam) * ssim_bf)).sum())


def _naive_q_e(a, b, f, data_range, toolbox):
    if toolbox:  # filter2 with the Prewitt kernels of metricPeilla.m, zero padding
        k1 = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]])
        k2 = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]])
        edge = lambda z: np.hypot(signal.correlate2d(z, k1, "same"), signal.correlate2d(z, k2, "same"))  # noqa: E731
    else:  # Sobel with replicated borders
        k1 = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
        edge = lambda z: np.hypot(signal.correlate2d(np.pad(z, 1, mode="edge"), k1, "valid"),  # noqa: E731
                                  signal.correlate2d(np.pad(z, 1, mode="edge"), k1.T, "valid"))
    edges = [edge(x) for x in (a, b, f)]
    edge_range = 255.0 if toolbox else max(e.max() for e in edges) - min(e.min() for e in edges)
    return _naive_q_w(a, b, f, data_range, toolbox) * _naive_q_w(*edges, edge_range, toolbox)


def _naive_q_cb(a, b, f, rounded):
    """metricChenBlum.m transcribed: normalize1, CSF in the frequency domain, 31x31 DoG contrast."""
    def normalize1(x):
        y = (x - x.min()) / (x.max() - x.min()) * 255
        return np.floor(y + 0.5) if rounded else y

    rows, cols = a.shape
    u, v = np.meshgrid((np.arange(cols) - cols // 2) * 2 / cols * cols / 30, (np.arange(rows) - rows // 2) * 2 / rows * rows / 30)
    r = np.sqrt(u ** 2 + v ** 2)
    sd = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    xs, ys = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    g1 = np.exp(-(xs ** 2 + ys ** 2) / (2 * 2 ** 2)) / (2 * math.pi * 2 ** 2)
    g2 = np.exp(-(xs ** 2 + ys ** 2) / (2 * 4 ** 2)) / (2 * math.pi * 4 ** 2)

    def masked_contrast(x):
        filtered = np.real(np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(normalize1(x))) * sd)))
        fine, coarse = signal.correlate2d(filtered, g1, "same"), signal.correlate2d(filtered, g2, "same")
        c = np.abs(fine / coarse - 1)
        c[(np.abs(coarse) <= 1e-8) | (c < 1e-8)] = 0  # round-off floors (documented deviation from the toolbox)
        return c ** 3 / (c ** 2 + 1e-4)

    with np.errstate(invalid="ignore", divide="ignore"):
        ca, cb, cf = (masked_contrast(x) for x in (a, b, f))
        q = lambda cx: np.where((cx == 0) & (cf == 0), 1.0, np.where(cx < cf, cx / cf, cf / cx))  # noqa: E731
        lam = np.where((ca == 0) & (cb == 0), 0.5, ca ** 2 / (ca ** 2 + cb ** 2))
        return float((lam * q(ca) + (1 - lam) * q(cb)).mean())


def test_ssim_matches_window_loop():
    a, b, f = _random_triple((30, 34), seed=7)
    data_range = max(a.max(), b.max(), f.max()) - min(a.min(), b.min(), f.min())
    expected = (_loop_ssim(a, f, data_range) + _loop_ssim(b, f, data_range)) / 2
    assert structural_similarity(a, b, f) == pytest.approx(expected, rel=1e-10)


# Pinned values for F = round((MRI + PET luma) / 2) of pet-mri/25047.png, computed by the
# references named in the test (scikit-image for the benchmark SSIM, the convolve2d transcriptions
# of ssim_index.m / msssim.m / metricYang.m / metricPeilla.m / metricChenBlum.m for the others).
HARVARD_PINS = {
    "SSIM_default": 0.656103254, "SSIM_benchmark": 1.1501503, "SSIM_vifb": 1.312206508, "MS_SSIM": 0.6627175378,
    "Q_Y_default": 0.7980680636, "Q_Y_benchmark": 0.7586549139, "Q_W_default": 0.6672753965,
    "Q_W_benchmark": 0.6672970468, "Q_E_default": 0.4200426769, "Q_E_benchmark": 0.4126779332,
    "Q_CB_default": 0.613434099, "Q_CB_benchmark": 0.6144825652,
}


def _harvard_reference():
    a, b, f = _harvard_triple("pet-mri", "pet", "25047.png")
    skimage_metrics = pytest.importorskip("skimage.metrics")
    window = _gaussian_window(11, 1.5)
    data_range = 255.0  # the triple spans 0..255
    naive = {
        "SSIM_default": (_wang_ssim(a, f, data_range, window) + _wang_ssim(b, f, data_range, window)) / 2,
        "SSIM_benchmark": sum(skimage_metrics.structural_similarity(f, x, data_range=2) for x in (a, b)),
        "SSIM_vifb": _wang_ssim(a, f, 255.0, window) + _wang_ssim(b, f, 255.0, window),
        "MS_SSIM": (_naive_ms_ssim(a, f, data_range) + _naive_ms_ssim(b, f, data_range)) / 2,
        "Q_Y_default": _naive_q_y(a, b, f, ((0.01 * data_range) ** 2, (0.03 * data_range) ** 2)),
        "Q_Y_benchmark": _naive_q_y(a, b, f, (2e-16, 2e-16)),
        "Q_W_default": _naive_q_w(a, b, f, data_range, toolbox=False),
        "Q_W_benchmark": _naive_q_w(a, b, f, 255.0, toolbox=True),
        "Q_E_default": _naive_q_e(a, b, f, data_range, toolbox=False),
        "Q_E_benchmark": _naive_q_e(a, b, f, 255.0, toolbox=True),
        "Q_CB_default": _naive_q_cb(a, b, f, rounded=False),
        "Q_CB_benchmark": _naive_q_cb(a, b, f, rounded=True),
    }
    ours = {
        "SSIM_default": structural_similarity(a, b, f),
        "SSIM_benchmark": structural_similarity(a, b, f, "benchmark"),
        "SSIM_vifb": structural_similarity(a, b, f, "vifb"),
        "MS_SSIM": multiscale_structural_similarity(a, b, f),
        "Q_Y_default": q_y(a, b, f),
        "Q_Y_benchmark": q_y(a, b, f, "benchmark"),
        "Q_W_default": q_w(a, b, f),
        "Q_W_benchmark": q_w(a, b, f, "benchmark"),
        "Q_E_default": q_e(a, b, f),
        "Q_E_benchmark": q_e(a, b, f, "benchmark"),
        "Q_CB_default": q_cb(a, b, f),
        "Q_CB_benchmark": q_cb(a, b, f, "benchmark"),
    }
    return ours, naive


def test_harvard_structural_values():
    ours, naive = _harvard_reference()
    for name, value in ours.items():
        # Q_CB: pixels whose coarse response sits just above the 1e-8 floor keep ~1e-5 of FFT round-off
        assert value == pytest.approx(naive[name], rel=1e-8 if name.startswith("Q_CB") else 1e-9), name
        assert value == pytest.approx(HARVARD_PINS[name], rel=1e-8), name
