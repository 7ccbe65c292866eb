"""MSE, RMSE, PSNR, CC, SCD, VIF and VIFF: closed forms, conventions, invariances, and real
Harvard pins checked against plain transcriptions of the CDDFuse evaluator, ``vifp_mscale.m``
and ``VIFF_Public.m``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, signal

from monai_fusion.errors import InputError
from monai_fusion.metrics import (
    correlation_coefficient,
    mean_squared_error,
    peak_signal_to_noise_ratio,
    root_mean_squared_error,
    sum_of_correlations_of_differences,
    viff,
    visual_information_fidelity,
)
from tests.conftest import harvard_triple as _harvard_triple
from tests.conftest import shared_path

CONVENTIONS = ("default", "benchmark", "vifb")




def _smooth_triple(shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 2)
    b = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 1)
    return a, b, 0.5 * (a + b)


# ---------------------------------------------------------------- errors by hand


def test_errors_of_constant_images():
    n = 64
    a, b, f = np.zeros((n, n)), np.full((n, n), 10.0), np.full((n, n), 5.0)
    # every pixel is 5 away from both sources: MSE = 25, RMSE = 5
    for convention in ("default", "benchmark"):
        assert mean_squared_error(a, b, f, convention) == 25.0
        assert root_mean_squared_error(a, b, f, convention) == 5.0
    # default PSNR: L = max - min over the triple = 10 -> 10 log10(100 / 25) = 6.0206 dB
    assert peak_signal_to_noise_ratio(a, b, f) == pytest.approx(10 * math.log10(4))
    # benchmark (CDDFuse): peak = max(F) = 5 -> 10 log10(25 / 25) = 0 dB
    assert peak_signal_to_noise_ratio(a, b, f, "benchmark") == pytest.approx(0.0, abs=1e-12)
    # vifb: "mse" = sqrt(sum 25) / N = 5 n / n^2 = 5 / 64 per source -> RMSE = 0.078125,
    # PSNR = 20 log10(255 / 0.279508) = 20 log10(912.31) = 59.2029 dB
    assert root_mean_squared_error(a, b, f, "vifb") == pytest.approx(5 / 64)
    assert peak_signal_to_noise_ratio(a, b, f, "vifb") == pytest.approx(20 * math.log10(255 / math.sqrt(5 / 64)))
    assert peak_signal_to_noise_ratio(a, b, f, "vifb") == pytest.approx(59.2029, abs=1e-4)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_psnr_of_perfect_fusion_is_infinite(convention):
    a = np.arange(16.0).reshape(4, 4)
    assert peak_signal_to_noise_ratio(a, a, a, convention) == math.inf
    assert mean_squared_error(a, a, a, convention) == 0.0


def test_uint8_psnr_uses_255():
    a = np.zeros((8, 8), dtype=np.uint8)
    f = np.full((8, 8), 10, dtype=np.uint8)
    # MSE = 100 for both sources; L = 255 for uint8 data: 10 log10(255^2 / 100) = 28.1308 dB
    assert peak_signal_to_noise_ratio(a, a, f) == pytest.approx(10 * math.log10(255 ** 2 / 100))


# ---------------------------------------------------------------- correlations by hand


def test_cc_and_scd_of_orthogonal_ramps():
    i, j = np.indices((32, 32)).astype(np.float64)
    a, b = j, i  # uncorrelated on the full grid (cov = 0) with equal variances v
    f = (a + b) / 2
    # corr(A, F) = cov(A, (A+B)/2) / (sd A sd F) = (v/2) / (sqrt v sqrt(v/2)) = 1 / sqrt 2 -> CC = 0.70711
    assert correlation_coefficient(a, b, f) == pytest.approx(1 / math.sqrt(2))
    # F - B = (A - B)/2: corr(A - B, A) = v / (sqrt(2v) sqrt v) = 1 / sqrt 2, and symmetrically -> SCD = sqrt 2
    assert sum_of_correlations_of_differences(a, b, f) == pytest.approx(math.sqrt(2))


def test_correlations_with_constant_images_are_zero():
    a, b, _ = _smooth_triple()
    constant = np.full(a.shape, 7.0)
    assert correlation_coefficient(a, b, constant) == 0.0
    # F = A = B: F - B and F - A are constant -> both correlations 0
    assert sum_of_correlations_of_differences(a, a, a) == 0.0
    assert correlation_coefficient(a, a, a) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [mean_squared_error, root_mean_squared_error, peak_signal_to_noise_ratio,
                                    correlation_coefficient, sum_of_correlations_of_differences,
                                    visual_information_fidelity, viff])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_symmetric_in_sources(metric, convention):
    a, b, _ = _smooth_triple(seed=1)
    f = np.maximum(a, b)
    assert metric(b, a, f, convention) == pytest.approx(metric(a, b, f, convention), rel=1e-12)


# ---------------------------------------------------------------- VIF / VIFF properties


def test_vif_and_viff_of_perfect_fusion():
    a, _, _ = _smooth_triple(seed=2)
    # F = X: g = 1, s_V^2 = 0 (floored at 1e-10), so VID = VIND in every window: VIFp = 1 per source
    assert visual_information_fidelity(a, a, a) == pytest.approx(2.0, rel=1e-9)
    # VIFF: every scale ratio is 1 and the weights (1, 0, 0.15, 1) / 2.15 sum to 1
    assert viff(a, a, a) == pytest.approx(1.0, rel=1e-9)


def test_vif_default_is_unit_free():
    a, b, f = _smooth_triple(seed=3)
    scaled = [x / 255.0 * 4.0 - 1.0 for x in (a, b, f)]  # the same images in other units
    for metric in (visual_information_fidelity, viff):
        assert metric(*scaled) == pytest.approx(metric(a, b, f), rel=1e-9)
        # the benchmark noise variance assumes 0..255 and changes with the units
        assert metric(*scaled, "benchmark") != pytest.approx(metric(a, b, f, "benchmark"), rel=1e-3)


def test_vif_3d_pools_slices():
    a, b, f = _smooth_triple(seed=4)
    stacked = [np.stack([x, x]) for x in (a, b, f)]
    # two identical slices double every sum: the ratio is unchanged
    assert visual_information_fidelity(*stacked) == pytest.approx(visual_information_fidelity(a, b, f), rel=1e-12)
    assert viff(*stacked) == pytest.approx(viff(a, b, f), rel=1e-12)


def test_vif_needs_41_pixels():
    small = np.zeros((40, 60))
    with pytest.raises(InputError, match="VIF needs at least 41 pixels"):
        visual_information_fidelity(small, small, small)


def test_vif_of_featureless_source_is_one():
    a, _, f = _smooth_triple(seed=5)
    flat = np.full(a.shape, 3.0)
    # the flat source has no variance anywhere: its VIFp term is 1 (the CDDFuse NaN rule)
    assert visual_information_fidelity(flat, a, a) == pytest.approx(2.0, rel=1e-9)
    assert np.isfinite(visual_information_fidelity(flat, flat, f))


# ---------------------------------------------------------------- naive transcriptions


def _fspecial_gaussian(n, sigma):
    x = np.arange(n) - (n - 1) / 2
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return h / h.sum()


def _vifp_maps(ref, dist, sigma_nsq):
    """vifp_mscale.m / VIFF_Public.m's ComVidVindG, with filter2 as convolve2d of the rotated window."""
    out = []
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _fspecial_gaussian(n, n / 5)
        filt = lambda z: signal.convolve2d(z, np.rot90(win, 2), mode="valid")  # noqa: E731
        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        mu1, mu2 = filt(ref), filt(dist)
        sigma1_sq = filt(ref * ref) - mu1 * mu1
        sigma2_sq = filt(dist * dist) - mu2 * mu2
        sigma12 = filt(ref * dist) - mu1 * mu2
        sigma1_sq[sigma1_sq < 0] = 0
        sigma2_sq[sigma2_sq < 0] = 0
        g = sigma12 / (sigma1_sq + 1e-10)
        sv_sq = sigma2_sq - g * sigma12
        g[sigma1_sq < 1e-10] = 0
        sv_sq[sigma1_sq < 1e-10] = sigma2_sq[sigma1_sq < 1e-10]
        sigma1_sq[sigma1_sq < 1e-10] = 0
        g[sigma2_sq < 1e-10] = 0
        sv_sq[sigma2_sq < 1e-10] = 0
        sv_sq[g < 0] = sigma2_sq[g < 0]
        g[g < 0] = 0
        sv_sq[sv_sq <= 1e-10] = 1e-10
        out.append((np.log10(1 + g ** 2 * sigma1_sq / (sv_sq + sigma_nsq)), np.log10(1 + sigma1_sq / sigma_nsq), g))
    return out


def _naive_vif(a, b, f):
    total = 0.0
    for x in (a, b):
        maps = _vifp_maps(x, f, 2.0)
        vifp = sum(m[0].sum() for m in maps) / sum(m[1].sum() for m in maps)
        total += 1.0 if np.isnan(vifp) else vifp
    return total


def _naive_viff(a, b, f):
    p = np.array([1, 0, 0.15, 1]) / 2.15
    maps_a, maps_b = _vifp_maps(a, f, 0.005 * 255 * 255), _vifp_maps(b, f, 0.005 * 255 * 255)
    values = []
    for (z1, m1, g1), (z2, m2, g2) in zip(maps_a, maps_b):
        pick = g1 < g2
        values.append(np.where(pick, z1, z2).sum() + 1e-7 * z1.size)
        values[-1] /= np.where(pick, m1, m2).sum() + 1e-7 * m1.size
    return float((p * np.array(values)).sum())


def _naive_cddfuse(a, b, f):
    """CDDFuse Evaluator's MSE, PSNR, CC and SCD, with Python sums."""
    fa, fb, ff = (x.ravel().tolist() for x in (a, b, f))
    n = len(ff)
    mse = (sum((u - v) ** 2 for u, v in zip(fa, ff)) / n + sum((u - v) ** 2 for u, v in zip(fb, ff)) / n) / 2

    def corr(x, y):
        mx, my = sum(x) / n, sum(y) / n
        num = sum((u - mx) * (v - my) for u, v in zip(x, y))
        return num / math.sqrt(sum((u - mx) ** 2 for u in x) * sum((v - my) ** 2 for v in y))

    f_minus_a = [v - u for u, v in zip(fa, ff)]
    f_minus_b = [v - u for u, v in zip(fb, ff)]
    return {"MSE": mse, "RMSE": math.sqrt(mse), "PSNR": 10 * math.log10(max(ff) ** 2 / mse),
            "CC": (corr(fa, ff) + corr(fb, ff)) / 2, "SCD": corr(f_minus_b, fa) + corr(f_minus_a, fb)}


# Pinned values for F = round((MRI + functional luma) / 2), printed from the transcriptions above
# (benchmark convention = CDDFuse: PSNR peak max(F), VIF summed over sources, VIFF of Han et al.).
HARVARD_PINS = {
    ("pet-mri", "pet", "25047.png"): {"MSE": 1860.847038, "RMSE": 43.1375363, "PSNR": 14.53744996, "CC": 0.8780043889,
                                      "SCD": 0.951941213, "VIF": 0.6372050081, "VIFF": 0.4548009664},
    ("spect-mri", "spect", "10017.png"): {"MSE": 320.3554306, "RMSE": 17.89847565, "PSNR": 18.80617106,
                                          "CC": 0.9110891189, "SCD": 0.7826878465, "VIF": 0.5138248652,
                                          "VIFF": 0.3870591671},
}


def _harvard_reference(triple):
    a, b, f = _harvard_triple(*triple)
    naive = {**_naive_cddfuse(a, b, f), "VIF": _naive_vif(a, b, f), "VIFF": _naive_viff(a, b, f)}
    ours = {"MSE": mean_squared_error(a, b, f, "benchmark"), "RMSE": root_mean_squared_error(a, b, f, "benchmark"),
            "PSNR": peak_signal_to_noise_ratio(a, b, f, "benchmark"), "CC": correlation_coefficient(a, b, f, "benchmark"),
            "SCD": sum_of_correlations_of_differences(a, b, f, "benchmark"),
            "VIF": visual_information_fidelity(a, b, f, "benchmark"), "VIFF": viff(a, b, f, "benchmark")}
    return ours, naive, (a, b, f)


@pytest.mark.parametrize("triple", list(HARVARD_PINS))
def test_harvard_fidelity_values(triple):
    ours, naive, (a, b, f) = _harvard_reference(triple)
    for name, value in ours.items():
        assert value == pytest.approx(naive[name], rel=1e-9), name
        assert value == pytest.approx(HARVARD_PINS[triple][name], rel=1e-8), name
    # the triple spans 0..255, so the default rescaling is the identity
    assert visual_information_fidelity(a, b, f) == pytest.approx(ours["VIF"], rel=1e-12)
    assert viff(a, b, f) == pytest.approx(ours["VIFF"], rel=1e-12)
