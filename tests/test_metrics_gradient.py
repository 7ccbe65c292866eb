"""Q^AB/F and Q_P: perfect transfer, ranges, symmetry, 3D, and real Harvard pins checked against
pixel loops transcribing Petrovic's ``Qabf.m`` / our documented default, and a MATLAB-style
loop transcription of ``myphasecong3.m`` + ``metricZhao.m``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, signal

from monai_fusion.metrics import q_p, qabf
from monai_fusion.metrics.gradient import QABF_PERFECT, _qabf_matlab_2d
from tests.conftest import harvard_triple as _harvard_triple
from tests.conftest import shared_path

CONVENTIONS = ("default", "benchmark", "vifb")
TG, KG, DG, TA, KA, DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8




def _smooth_triple(shape=(40, 44), seed=0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 2)
    b = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 1)
    return a, b, np.maximum(a, b)


# ---------------------------------------------------------------- Qabf properties


def test_qabf_perfect_transfer_value():
    # G = 1 and A = 1: Q = 0.9994 / (1 + e^(-7.5)) * 0.9879 / (1 + e^(-4.4)) = 0.998848 * 0.975919 = 0.974794
    assert QABF_PERFECT == pytest.approx(TG / (1 + math.exp(KG * 0.5)) * TA / (1 + math.exp(KA * 0.2)), rel=1e-15)
    assert QABF_PERFECT == pytest.approx(0.974794, abs=1e-6)
    a, _, _ = _smooth_triple()
    assert qabf(a, a, a) == pytest.approx(QABF_PERFECT, rel=1e-12)  # F = A = B: every pixel perfect


def test_qabf_no_source_edges_scores_perfect_transfer():
    c = np.full((16, 16), 9.0)
    assert qabf(c, c, c) == pytest.approx(QABF_PERFECT)
    z = np.zeros((16, 16))  # zero padding gives a constant 0 image no border edges either
    assert qabf(z, z, z, "benchmark") == pytest.approx(QABF_PERFECT)


def test_qabf_lost_edges_score_near_zero():
    a, b, _ = _smooth_triple()
    # F flat: G = 0 -> Q_g = 0.9994 / (1 + e^7.5) = 5.5e-4, and A = 0 -> Q_a = 2.2e-8
    assert qabf(a, b, np.zeros_like(a)) < 1e-10


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_qabf_range_and_symmetry(convention):
    a, b, f = _smooth_triple(seed=1)
    noisy = f + np.random.default_rng(2).normal(0, 30, f.shape)
    for fused in (f, noisy):
        value = qabf(a, b, fused, convention)
        assert 0.0 <= value <= 1.0
        assert qabf(b, a, fused, convention) == pytest.approx(value, rel=1e-12)


def test_qabf_benchmark_quirk_when_strengths_are_equal():
    a = _smooth_triple(seed=3)[0] / 255.0
    # Qabf.m sets G = g_F (not 1) where g_A == g_F. On 0..1 data the Sobel strengths are mostly
    # below Dg = 0.5, so F = A = B scores well below perfect; the default convention is scale-free.
    assert qabf(a, a, a, "benchmark") < 0.9
    assert qabf(a, a, a) == pytest.approx(QABF_PERFECT, rel=1e-12)


def test_qabf_3d():
    a, b, f = _smooth_triple(seed=4)
    stack = lambda x: np.stack([x] * 5)  # noqa: E731
    # default: on a volume constant along depth the 3D Sobel equals the 2D one -> same value
    assert qabf(stack(a), stack(b), stack(f)) == pytest.approx(qabf(a, b, f), rel=1e-12)
    # benchmark: slices pooled, sum of numerators / sum of denominators
    volume = [np.stack([a, b]), np.stack([b, f]), np.stack([f, a])]
    parts = np.array([_qabf_matlab_2d(volume[0][k], volume[1][k], volume[2][k]) for k in range(2)])
    assert qabf(*volume, "benchmark") == pytest.approx(parts[:, 0].sum() / parts[:, 1].sum(), rel=1e-12)


# ---------------------------------------------------------------- Qabf naive loops


def _conv2_same(x, h):
    """MATLAB conv2(x, h, 'same') for a 3x3 kernel: true convolution, zero padding."""
    rows, cols = len(x), len(x[0])
    out = [[0.0] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            total = 0.0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    r, c = i - di, j - dj
                    if 0 <= r < rows and 0 <= c < cols:
                        total += x[r][c] * h[di + 1][dj + 1]
            out[i][j] = total
    return out


def _naive_qabf_matlab(a, b, f):
    """Qabf.m line by line."""
    h1 = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    h3 = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]

    def strength_angle(x):
        sx, sy = _conv2_same(x, h3), _conv2_same(x, h1)
        g = [[math.sqrt(u * u + v * v) for u, v in zip(rx, ry)] for rx, ry in zip(sx, sy)]
        alpha = [[math.pi / 2 if u == 0 else math.atan(v / u) for u, v in zip(rx, ry)] for rx, ry in zip(sx, sy)]
        return g, alpha

    (ga, aa), (gb, ab), (gf, af) = (strength_angle(x.tolist()) for x in (a, b, f))

    def q(gx, ax, i, j):
        if gx[i][j] > gf[i][j]:
            g = gf[i][j] / gx[i][j]
        elif gx[i][j] == gf[i][j]:
            g = gf[i][j]
        else:
            g = gx[i][j] / gf[i][j]
        orientation = 1 - abs(ax[i][j] - af[i][j]) / (math.pi / 2)
        return TG / (1 + math.exp(KG * (g - DG))) * TA / (1 + math.exp(KA * (orientation - DA)))

    num = den = 0.0
    for i in range(len(ga)):
        for j in range(len(ga[0])):
            num += q(ga, aa, i, j) * ga[i][j] + q(gb, ab, i, j) * gb[i][j]
            den += ga[i][j] + gb[i][j]
    return num / den


def _naive_qabf_default(a, b, f):
    """Our default written out per pixel: replicate Sobel, G = min/max, angle between gradient lines."""
    comps = [[ndimage.sobel(x, axis=k, mode="nearest").tolist() for k in (0, 1)] for x in (a, b, f)]
    num = den = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            gf = (comps[2][0][i][j], comps[2][1][i][j])
            for src in comps[:2]:
                gx = (src[0][i][j], src[1][i][j])
                nx, nf = math.hypot(*gx), math.hypot(*gf)
                g = 1.0 if max(nx, nf) == 0 else min(nx, nf) / max(nx, nf)
                # angle between the lines of the two gradients, in [0, pi/2]; pi/2 if one vanishes
                angle = math.pi / 2 if nx * nf == 0 else math.atan2(abs(gx[0] * gf[1] - gx[1] * gf[0]), abs(gx[0] * gf[0] + gx[1] * gf[1]))
                orientation = 1 - angle / (math.pi / 2)
                q = TG / (1 + math.exp(KG * (g - DG))) * TA / (1 + math.exp(KA * (orientation - DA)))
                num += q * nx
                den += nx
    return num / den


# ---------------------------------------------------------------- Q_P naive (MATLAB-style loops)


def _naive_phasecong(im):
    """myphasecong3.m with its default parameters, orientation by orientation, scale by scale."""
    nscale, norient, min_wl, mult, sigma_on_f, d_theta, k, cut_off, g, eps = 4, 6, 3, 2.1, 0.55, 1.2, 2.0, 0.5, 10, 1e-4
    rows, cols = im.shape
    image_fft = np.fft.fft2(im)
    theta_sigma = math.pi / norient / d_theta
    xr = np.arange(-(cols - 1) / 2, (cols - 1) / 2 + 1) / (cols - 1) if cols % 2 else np.arange(-cols / 2, cols / 2) / cols
    yr = np.arange(-(rows - 1) / 2, (rows - 1) / 2 + 1) / (rows - 1) if rows % 2 else np.arange(-rows / 2, rows / 2) / rows
    x, y = np.meshgrid(xr, yr)
    radius = np.sqrt(x ** 2 + y ** 2)
    radius[rows // 2, cols // 2] = 1
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    radius = np.fft.ifftshift(radius)
    lx = (np.ones((rows, 1)) * np.arange(1, cols + 1) - (cols // 2 + 1)) / cols
    ly = (np.arange(1, rows + 1)[:, None] * np.ones((1, cols)) - (rows // 2 + 1)) / rows
    lp = np.fft.fftshift(1 / (1 + (np.sqrt(lx ** 2 + ly ** 2) / 0.45) ** 30))
    log_gabor = []
    for s in range(nscale):
        fo = 1 / (min_wl * mult ** s)
        lg = np.exp(-(np.log(radius / fo)) ** 2 / (2 * math.log(sigma_on_f) ** 2)) * lp
        lg[0, 0] = 0
        log_gabor.append(lg)
    total_energy, total_sum_an = np.zeros((rows, cols)), np.zeros((rows, cols))
    covx2, covy2, covxy = np.zeros((rows, cols)), np.zeros((rows, cols)), np.zeros((rows, cols))
    for o in range(norient):
        angl = o * math.pi / norient
        ds = np.sin(theta) * math.cos(angl) - np.cos(theta) * math.sin(angl)
        dc = np.cos(theta) * math.cos(angl) + np.sin(theta) * math.sin(angl)
        spread = np.exp(-np.abs(np.arctan2(ds, dc)) ** 2 / (2 * theta_sigma ** 2))
        sum_e, sum_o, sum_an = (np.zeros((rows, cols)) for _ in range(3))
        eo, ifft_filters = [], []
        for s in range(nscale):
            filt = log_gabor[s] * spread
            ifft_filters.append(np.real(np.fft.ifft2(filt)) * math.sqrt(rows * cols))
            eo.append(np.fft.ifft2(image_fft * filt))
            an = np.abs(eo[s])
            sum_an, sum_e, sum_o = sum_an + an, sum_e + eo[s].real, sum_o + eo[s].imag
            if s == 0:
                em_n, max_an = (filt ** 2).sum(), an
            else:
                max_an = np.maximum(max_an, an)
        x_energy = np.sqrt(sum_e ** 2 + sum_o ** 2) + eps
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = np.zeros((rows, cols))
        for s in range(nscale):
            e, od = eo[s].real, eo[s].imag
            energy += e * mean_e + od * mean_o - np.abs(e * mean_o - od * mean_e)
        noise_power = -np.median(np.abs(eo[0]) ** 2) / math.log(0.5) / em_n
        est_an2 = sum((f ** 2).sum() for f in ifft_filters)
        est_aiaj = sum((ifft_filters[i] * ifft_filters[j]).sum() for i in range(nscale) for j in range(i + 1, nscale))
        tau = math.sqrt((2 * noise_power * est_an2 + 4 * noise_power * est_aiaj) / 2)
        threshold = (tau * math.sqrt(math.pi / 2) + k * math.sqrt((2 - math.pi / 2) * tau ** 2)) / 1.7
        energy = np.maximum(energy - threshold, 0)
        weight = 1 / (1 + np.exp((cut_off - sum_an / (max_an + eps) / nscale) * g))
        total_sum_an += sum_an
        total_energy += weight * energy
        with np.errstate(invalid="ignore", divide="ignore"):
            pc_o = np.where(sum_an > 0, weight * energy / sum_an, 0.0)
        covx2 += (pc_o * math.cos(angl)) ** 2
        covy2 += (pc_o * math.sin(angl)) ** 2
        covxy += pc_o * math.cos(angl) * pc_o * math.sin(angl)
    covx2, covy2, covxy = covx2 / (norient / 2), covy2 / (norient / 2), covxy / norient
    denom = np.sqrt(covxy ** 2 + (covx2 - covy2) ** 2) + eps
    return total_energy / (total_sum_an + eps), (covy2 + covx2 + denom) / 2, (covy2 + covx2 - denom) / 2


def _naive_q_p(a, b, f):
    """metricZhao.m: correlations of the masked PC, M and m maps with F's (Gaussian 11, 'same')."""
    x = np.arange(11) - 5
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5 ** 2))
    window /= window.sum()
    filt = lambda z: signal.convolve2d(z, window, mode="same")  # noqa: E731  (symmetric window)
    pa, pb, pf = _naive_phasecong(a), _naive_phasecong(b), _naive_phasecong(f)
    mask = pa[0] > pb[0]
    masks = [pa[0] > 0.1, pb[0] > 0.1, np.where(mask, pa[0], pb[0]) > 0.1]
    result = 1.0
    for feature in range(3):
        imf = pf[feature]
        sources = [pa[feature] * masks[0], pb[feature] * masks[1], np.where(mask, pa[feature], pb[feature]) * masks[2]]
        best = np.zeros_like(imf)
        for im, m in zip(sources, masks):
            mu, muf = filt(im), filt(imf)
            s_sq = np.maximum(filt(im * im) - mu * mu, 0)
            sf_sq = np.maximum(filt(imf * imf) - muf * muf, 0)
            s_f = filt(im * imf) - mu * muf
            best = np.maximum(best, np.where(m, (s_f + 1e-4) / (np.sqrt(np.abs(s_sq * sf_sq)) + 1e-4), 0))
        result *= best.sum() / masks[2].sum()
    return result


def test_q_p_identical_images_and_symmetry():
    a, b, f = _smooth_triple((48, 48), seed=5)
    # F = A = B: masked maps equal F's inside the masks; windows straddling a mask edge keep Q_P just below 1
    assert 0.9 < q_p(a, a, a) <= 1.0
    assert q_p(a, b, f) == pytest.approx(q_p(b, a, f), rel=1e-12)
    assert -1.0 <= q_p(a, b, f) <= 1.0


def test_q_p_featureless_sources_score_one():
    c = np.full((32, 32), 5.0)
    assert q_p(c, c, np.random.default_rng(6).normal(size=(32, 32))) == 1.0


def test_q_p_matches_loops_on_odd_sized_crop():
    a, b, f = _smooth_triple((37, 41), seed=7)  # odd sizes exercise the other frequency grid
    assert q_p(a, b, f, "benchmark") == pytest.approx(_naive_q_p(a, b, f), rel=1e-9)


# Pinned values for F = round((MRI + functional luma) / 2): printed from the naive loops above.
HARVARD_PINS = {
    ("ct-mri", "ct", "2016.png"): {"Qabf_benchmark": 0.3680836844, "Qabf_default": 0.3759371074, "Q_P": 0.2705736443},
    ("spect-mri", "spect", "10017.png"): {"Qabf_benchmark": 0.368899673, "Qabf_default": 0.3764317905, "Q_P": 0.2990608509},
}


def _harvard_reference(triple):
    a, b, f = _harvard_triple(*triple)
    naive = {"Qabf_benchmark": _naive_qabf_matlab(a, b, f), "Qabf_default": _naive_qabf_default(a, b, f),
             "Q_P": _naive_q_p(a, b, f)}
    ours = {"Qabf_benchmark": qabf(a, b, f, "benchmark"), "Qabf_default": qabf(a, b, f), "Q_P": q_p(a, b, f, "benchmark")}
    return ours, naive, q_p(a, b, f)


@pytest.mark.parametrize("triple", list(HARVARD_PINS))
def test_harvard_gradient_values(triple):
    ours, naive, q_p_default = _harvard_reference(triple)
    for name, value in ours.items():
        assert value == pytest.approx(naive[name], rel=1e-9), name
        assert value == pytest.approx(HARVARD_PINS[triple][name], rel=1e-8), name
    assert q_p_default == pytest.approx(ours["Q_P"], rel=1e-9)  # the triple spans 0..255: no rescaling
