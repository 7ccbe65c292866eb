"""MI, NMI, Q_NCIE and the FMI family: two-level images whose information is computable by hand,
invariances, and real Harvard pins checked against scikit-learn (the benchmark MI is defined by
``sklearn.metrics.mutual_info_score``) and against naive loops written from the published code."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import pywt
from scipy import fft as sp_fft

from monai_fusion.metrics import (
    FMI_FEATURES,
    feature_mutual_information,
    mutual_information,
    normalized_mutual_information,
    q_ncie,
)
from tests.conftest import harvard_triple as _harvard_triple
from tests.conftest import shared_path

CONVENTIONS = ("default", "benchmark", "vifb")




def _halves(size: int = 32):
    """A = left/right halves, B = top/bottom halves (0 and 255): the four quadrants each hold 1/4."""
    a = np.zeros((size, size))
    a[:, size // 2:] = 255.0
    b = np.zeros((size, size))
    b[size // 2:, :] = 255.0
    return a, b


# ---------------------------------------------------------------- MI / NMI by hand


def test_mi_of_two_level_images():
    a, b = _halves()
    # F = A: MI(A, F) = H(A) = 1 bit; B is independent of A (each quadrant 1/4 = 1/2 * 1/2): MI(B, F) = 0
    assert mutual_information(a, b, a) == pytest.approx(1.0, abs=1e-12)
    # benchmark and vifb report nats: 1 bit = ln 2
    assert mutual_information(a, b, a, "benchmark") == pytest.approx(math.log(2), abs=1e-12)
    assert mutual_information(a, b, a, "vifb") == pytest.approx(math.log(2), abs=1e-12)
    # NMI = 2 [MI(A,F) / (H(A) + H(F)) + MI(B,F) / (H(B) + H(F))] = 2 [1 / 2 + 0] = 1
    assert normalized_mutual_information(a, b, a) == pytest.approx(1.0, abs=1e-12)
    # F = A = B: both terms 2 H / 2 H = 1
    assert normalized_mutual_information(a, a, a) == pytest.approx(2.0, abs=1e-12)


def test_mi_three_level_fused_image():
    a, b = _halves(8)
    f = (a + b) / 2  # levels 0, 127.5, 255 with p = 1/4, 1/2, 1/4 -> H(F) = 1.5 bits
    # H(F | A) = 1 bit (given A, F takes two equally likely values) -> MI(A, F) = 1.5 - 1 = 0.5, same for B
    assert mutual_information(a, b, f) == pytest.approx(1.0, abs=1e-12)
    # NMI = 2 [0.5 / (1 + 1.5) * 2] = 0.8
    assert normalized_mutual_information(a, b, f) == pytest.approx(0.8, abs=1e-12)


def test_mi_invariant_to_grey_level_permutation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 40)).astype(np.float64)
    b = rng.integers(0, 256, (40, 40)).astype(np.float64)
    f = np.round((a + b) / 2)
    f[0, 0], f[0, 1] = 0, 255  # F spans 0..255 so each of its values keeps its own level
    permutation = rng.permutation(256).astype(np.float64)
    permuted = permutation[f.astype(int)]
    for convention in CONVENTIONS:
        assert mutual_information(a, b, permuted, convention) == pytest.approx(mutual_information(a, b, f, convention), rel=1e-12)
        assert normalized_mutual_information(a, b, permuted, convention) == pytest.approx(
            normalized_mutual_information(a, b, f, convention), rel=1e-12)


@pytest.mark.parametrize("metric", [mutual_information, normalized_mutual_information, q_ncie])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_symmetric_in_sources(metric, convention):
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 30, (2, 30, 30))
    f = 0.7 * a + 0.3 * b
    assert metric(a, b, f, convention) == pytest.approx(metric(b, a, f, convention), rel=1e-12)


def test_volumetric_mi_counts_every_voxel():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 20, 20)).astype(np.float64)
    b = rng.integers(0, 256, (3, 20, 20)).astype(np.float64)
    f = np.maximum(a, b)
    # the volume's MI is the MI of its voxels laid out as one 2D image
    flat = lambda x: x.reshape(60, 20)  # noqa: E731
    assert mutual_information(a, b, f) == pytest.approx(mutual_information(flat(a), flat(b), flat(f)), rel=1e-12)


# ---------------------------------------------------------------- Q_NCIE by hand

LOG_B = math.log(256)


def test_q_ncie_identical_images_is_one():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(32, 32))  # N = 1024 = 4 * 256 voxels: 4 per rank level, H = 1 exactly
    # R = all ones -> eigenvalues (3, 0, 0) -> H_R = -(3/3) log_b(3/3) = 0 -> NCIE = 1
    assert q_ncie(a, a, a) == pytest.approx(1.0, abs=1e-12)


def test_q_ncie_constant_sources():
    rng = np.random.default_rng(4)
    c, f = np.zeros((20, 20)), rng.normal(size=(20, 20))
    # default: NCC(const, const) = 1, NCC(const, F) = 0 -> R = [[1,1,0],[1,1,0],[0,0,1]], eigenvalues 2, 1, 0
    # NCIE = 1 + (2/3) log_b(2/3) + (1/3) log_b(1/3) = 1 - 0.636514 / ln 256 = 0.885213
    expected = 1 + (2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / LOG_B
    assert q_ncie(c, c, f) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.8852130, abs=1e-6)
    # benchmark (toolbox): a constant image has entropy 0, so every NCC is 0: R = I, eigenvalues 1, 1, 1
    # NCIE = 1 + 3 (1/3) log_b(1/3) = 1 - ln 3 / ln 256 = 0.801880
    assert q_ncie(c, c, f, "benchmark") == pytest.approx(1 - math.log(3) / LOG_B, abs=1e-12)


def test_q_ncie_benchmark_two_level_images():
    a, b = _halves()
    # toolbox NCC = H(X) + H(Y) - H(X,Y) in base 256: NCC(A, A) = H(A) = 1 bit = 1/8, NCC(A, B) = NCC(B, A) = 0
    # R = [[1, 0, 1/8], [0, 1, 0], [1/8, 0, 1]] -> eigenvalues 1, 1 + 1/8, 1 - 1/8
    eigen = np.array([1.0, 1.125, 0.875]) / 3
    expected = 1 + float((eigen * np.log(eigen)).sum()) / LOG_B
    assert q_ncie(a, b, a, "benchmark") == pytest.approx(expected, abs=1e-12)


def test_q_ncie_default_invariant_to_monotone_maps():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 32, 32))
    f = a + 0.5 * b
    # ranks, hence the rank-grid NCC, do not change under strictly increasing maps
    assert q_ncie(np.exp(a), b ** 3, 10 * f + 4) == pytest.approx(q_ncie(a, b, f), abs=1e-12)


# ---------------------------------------------------------------- naive references


def _naive_levels_bins256(values):
    low, high = min(values), max(values)
    return [0 if high == low else min(255, math.floor((v - low) / (high - low) * 256)) for v in values]


def _naive_levels_normalize1(values):
    low, high = min(values), max(values)
    return [0 if high == low else math.floor((v - low) / (high - low) * 255 + 0.5) for v in values]


def _naive_entropies(x_levels, y_levels, log):
    n = len(x_levels)
    h = lambda counts: -sum(c / n * log(c / n) for c in counts.values())  # noqa: E731
    return h(Counter(x_levels)), h(Counter(y_levels)), h(Counter(zip(x_levels, y_levels)))


def _naive_mi_bits(x, y):
    hx, hy, hxy = _naive_entropies(_naive_levels_bins256(x), _naive_levels_bins256(y), math.log2)
    return hx + hy - hxy, hx, hy


def _naive_nmi(a, b, f):
    total = 0.0
    for x in (a, b):
        mi, hx, hf = _naive_mi_bits(x, f)
        total += 2 * mi / (hx + hf)
    return total


def _naive_q_ncie(a, b, f, levels):
    log256 = lambda p: math.log(p, 256)  # noqa: E731
    ncc = {}
    for (i, x), (j, y) in itertools.combinations(enumerate((a, b, f)), 2):
        hx, hy, hxy = _naive_entropies(levels(x), levels(y), log256)
        ncc[i, j] = hx + hy - hxy
    r = np.array([[1, ncc[0, 1], ncc[0, 2]], [ncc[0, 1], 1, ncc[1, 2]], [ncc[0, 2], ncc[1, 2], 1]])
    return 1 + sum(l / 3 * log256(l / 3) for l in np.linalg.eigvalsh(r) if l > 0)


def _naive_rank_levels(values):
    order = sorted(range(len(values)), key=lambda k: values[k])  # Python's sort is stable
    levels = [0] * len(values)
    for rank, k in enumerate(order):
        levels[k] = rank * 256 // len(values)
    return levels


# Pinned values for F = round((MRI + functional) / 2), from the naive histogram code above (MI
# benchmark: distinct values as labels, nats, which is also what sklearn's mutual_info_score gives).
HARVARD_PINS = {
    ("ct-mri", "ct", "2016.png"): {"MI_benchmark": 2.811165893, "MI_default": 4.055655093, "NMI": 1.27629327,
                                   "Q_NCIE_benchmark": 0.8100916855, "Q_NCIE_default": 0.8942615747},
    ("spect-mri", "spect", "10017.png"): {"MI_benchmark": 2.82855644, "MI_default": 4.080744349, "NMI": 0.8226182263,
                                          "Q_NCIE_benchmark": 0.8102733311, "Q_NCIE_default": 0.8478045373},
}


def _naive_mi_labels_nats(x, y):
    """scikit-learn's mutual_info_score semantics: every distinct value is a label, natural log."""
    hx, hy, hxy = _naive_entropies(x, y, math.log)
    return hx + hy - hxy


def _harvard_reference(triple):
    a, b, f = _harvard_triple(*triple)
    fa, fb, ff = (x.ravel() for x in (a, b, f))
    lists = [x.tolist() for x in (fa, fb, ff)]
    naive = {
        "MI_benchmark": _naive_mi_labels_nats(lists[2], lists[0]) + _naive_mi_labels_nats(lists[2], lists[1]),
        "MI_default": _naive_mi_bits(lists[0], lists[2])[0] + _naive_mi_bits(lists[1], lists[2])[0],
        "NMI": _naive_nmi(*lists),
        "Q_NCIE_benchmark": _naive_q_ncie(*lists, levels=_naive_levels_normalize1),
        "Q_NCIE_default": _naive_q_ncie(*lists, levels=_naive_rank_levels),
    }
    ours = {
        "MI_benchmark": mutual_information(a, b, f, "benchmark"),
        "MI_default": mutual_information(a, b, f),
        "NMI": normalized_mutual_information(a, b, f),
        "Q_NCIE_benchmark": q_ncie(a, b, f, "benchmark"),
        "Q_NCIE_default": q_ncie(a, b, f),
    }
    return ours, naive


@pytest.mark.parametrize("triple", list(HARVARD_PINS))
def test_harvard_information_values(triple):
    ours, naive = _harvard_reference(triple)
    for name, value in ours.items():
        assert value == pytest.approx(naive[name], rel=1e-10), name
        assert value == pytest.approx(HARVARD_PINS[triple][name], rel=1e-8), name


@pytest.mark.parametrize("triple", list(HARVARD_PINS))
def test_harvard_benchmark_mi_is_sklearn(triple):
    """The CDDFuse evaluator's MI is literally sklearn's mutual_info_score(F, X) summed over X."""
    metrics = pytest.importorskip("sklearn.metrics")
    a, b, f = _harvard_triple(*triple)
    expected = sum(metrics.mutual_info_score(f.ravel(), x.ravel()) for x in (a, b))
    assert mutual_information(a, b, f, "benchmark") == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- FMI


def _naive_window_fmi(x_sub, f_sub):
    """One window of ``fmi.m`` written out as the MATLAB loops (positions 1..l, column-major)."""
    if x_sub == f_sub:
        return 1.0

    def pdf(values):
        low, high = min(values), max(values)
        scaled = [1.0] * len(values) if high == low else [(v - low) / (high - low) for v in values]
        total = sum(scaled)
        return [v / total for v in scaled]

    xp, fp = pdf(x_sub), pdf(f_sub)
    l = len(xp)
    xc, fc = list(itertools.accumulate(xp)), list(itertools.accumulate(fp))
    mx, mf = sum(xp) / l, sum(fp) / l
    num = sum((xp[i] - mx) * (fp[i] - mf) for i in range(l))
    c = 0.0 if num == 0 else num / math.sqrt(sum((v - mx) ** 2 for v in xp) * sum((v - mf) ** 2 for v in fp))
    sd = lambda p: math.sqrt(max(sum((i + 1) ** 2 * p[i] for i in range(l)) - sum((i + 1) * p[i] for i in range(l)) ** 2, 0.0))  # noqa: E731
    x_sd, f_sd = sd(xp), sd(fp)
    if c >= 0:
        bound = lambda u, v: 0.5 * (u + v - abs(u - v))  # noqa: E731  Frechet upper bound
        degenerate = c == 0 or x_sd == 0 or f_sd == 0
    else:
        bound = lambda u, v: 0.5 * (u + v - 1 + abs(u + v - 1))  # noqa: E731  Frechet lower bound
        degenerate = x_sd == 0 or f_sd == 0
    if degenerate:
        t = 0.0
    else:
        cov = sum(bound(fc[i], xc[j]) - fc[i] * xc[j] for i in range(l) for j in range(l))
        t = c / (cov / (f_sd * x_sd))

    def jpdf(i, j):
        up = bound(fc[i], xc[j])
        if i > 0:
            up -= bound(fc[i - 1], xc[j])
        if j > 0:
            up -= bound(fc[i], xc[j - 1])
        if i > 0 and j > 0:
            up += bound(fc[i - 1], xc[j - 1])
        return t * up + (1 - t) * fp[i] * xp[j]

    plogp = lambda p: -p * math.log2(abs(p)) if p != 0 else 0.0  # noqa: E731  MATLAB real(-p log2 p)
    joint = sum(plogp(jpdf(i, j)) for i in range(l) for j in range(l))
    hx, hf = sum(plogp(p) for p in xp), sum(plogp(p) for p in fp)
    mi = hx + hf - joint
    return 0.0 if mi == 0 or hx + hf == 0 else 2 * mi / (hx + hf)


def _naive_fmi_maps(xa, xb, xf, w=3):
    rows, cols = xa.shape
    a, b, f = xa.tolist(), xb.tolist(), xf.tolist()
    column_major = lambda m, p, q: [m[r][s] for s in range(q, q + w) for r in range(p, p + w)]  # noqa: E731
    values = []
    for p in range(rows - w + 1):
        for q in range(cols - w + 1):
            sub_f = column_major(f, p, q)
            values.append((_naive_window_fmi(column_major(a, p, q), sub_f) + _naive_window_fmi(column_major(b, p, q), sub_f)) / 2)
    return sum(values) / len(values)


def _naive_edges(x):
    """MATLAB-style Sobel edge map: |g|^2 > 4 mean |g|^2, thinned along the dominant axis."""
    h, w = x.shape
    m = x.tolist()
    at = lambda i, j: m[min(max(i, 0), h - 1)][min(max(j, 0), w - 1)]  # noqa: E731
    gx = [[((at(i - 1, j + 1) + 2 * at(i, j + 1) + at(i + 1, j + 1)) - (at(i - 1, j - 1) + 2 * at(i, j - 1) + at(i + 1, j - 1))) / 8
           for j in range(w)] for i in range(h)]
    gy = [[((at(i + 1, j - 1) + 2 * at(i + 1, j) + at(i + 1, j + 1)) - (at(i - 1, j - 1) + 2 * at(i - 1, j) + at(i - 1, j + 1))) / 8
           for j in range(w)] for i in range(h)]
    s = [[gx[i][j] ** 2 + gy[i][j] ** 2 for j in range(w)] for i in range(h)]
    cutoff = 4 * sum(map(sum, s)) / (h * w)
    edges = np.zeros((h, w))
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            horizontal = abs(gx[i][j]) >= abs(gy[i][j]) and s[i][j] >= s[i][j - 1] and s[i][j] > s[i][j + 1]
            vertical = abs(gy[i][j]) >= abs(gx[i][j]) and s[i][j] >= s[i - 1][j] and s[i][j] > s[i + 1][j]
            edges[i, j] = s[i][j] > cutoff and (horizontal or vertical)
    return edges


def _naive_features(x, feature, convention):
    if feature == "pixel":
        return x
    if feature == "edge":
        return _naive_edges(x)
    if feature == "gradient":
        gy, gx = np.gradient(x)
        return gx if convention == "benchmark" else np.hypot(gx, gy)
    if feature == "dct":
        return sp_fft.dctn(x, norm="ortho")  # MATLAB dct2
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x, "dmey", mode="symmetric")
    mosaic = np.block([[c_a, c_h], [c_v, c_d]])
    return (mosaic - mosaic.min()) / (mosaic.max() - mosaic.min())


def test_fmi_identical_images_is_one():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(20, 20))
    for feature in FMI_FEATURES:
        # every raw window of F equals the source's window -> each window scores 1
        assert feature_mutual_information(a, a, a, feature) == pytest.approx(1.0)


@pytest.mark.parametrize("feature", FMI_FEATURES)
def test_fmi_range_and_symmetry(feature):
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 256, (2, 24, 24)).astype(np.float64)
    f = np.maximum(a, b)
    value = feature_mutual_information(a, b, f, feature)
    assert 0.0 <= value <= 1.0
    assert feature_mutual_information(b, a, f, feature) == pytest.approx(value, rel=1e-12)


def test_fmi_rejects_unknown_feature():
    with pytest.raises(ValueError, match="unknown FMI feature"):
        feature_mutual_information(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8)), "colour")


def test_fmi_3d_is_mean_over_non_empty_slices():
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 256, (2, 3, 16, 16)).astype(np.float64)
    a[1] = b[1] = 0.0
    f = (a + b) / 2  # slice 1 is empty (A, B, F all constant) and is left out
    expected = np.mean([feature_mutual_information(a[k], b[k], f[k]) for k in (0, 2)])
    assert feature_mutual_information(a, b, f) == pytest.approx(expected, rel=1e-12)


# FMI of F = round((MRI + CT) / 2) of ct-mri/2016.png: full image pinned (printed from our
# vectorised code after the crop check below agreed with the naive loops), and a 20x20 crop
# checked window by window against the naive transcription of fmi.m.
FMI_PINS = {
    ("pixel", "default"): 0.7167629011,
    ("edge", "default"): 0.9049049956,
    ("gradient", "default"): 0.6682588539,
    ("gradient", "benchmark"): 0.7258326688,
    ("dct", "default"): 0.4332782309,
    ("wavelet", "default"): 0.4309140531,
}
FMI_CROP = (slice(100, 120), slice(90, 110))


@pytest.mark.parametrize("feature, convention", list(FMI_PINS))
def test_harvard_fmi_against_naive_loops(feature, convention):
    a, b, f = _harvard_triple("ct-mri", "ct", "2016.png")
    crop = [x[FMI_CROP] for x in (a, b, f)]
    naive = _naive_fmi_maps(*(_naive_features(x, feature, convention) for x in crop))
    assert feature_mutual_information(*crop, feature, convention) == pytest.approx(naive, rel=1e-9, abs=1e-12)
    assert feature_mutual_information(a, b, f, feature, convention) == pytest.approx(FMI_PINS[feature, convention], rel=1e-8)
