"""EN, SD, SF, AG, EI: closed forms on hand-made images, conventions, 3D, and real Harvard pins
checked against deliberately naive loops written from the CDDFuse/VIFB formulas."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from monai_fusion.metrics import average_gradient, edge_intensity, entropy, spatial_frequency, standard_deviation
from tests.conftest import harvard_grey as _grey
from tests.conftest import shared_path

NO_REF = (entropy, standard_deviation, spatial_frequency, average_gradient, edge_intensity)



def _harvard_fused(task: str, functional: str, name: str) -> np.ndarray:
    """F = round((MRI + functional) / 2), the deterministic stand-in fusion of these tests."""
    folder = shared_path("harvard", task)
    return np.round((_grey(folder / "mri" / name) + _grey(folder / functional / name)) / 2)


def _ramp(shape, slope, axis):
    return slope * np.indices(shape)[axis].astype(np.float64)


# ---------------------------------------------------------------- hand-computable values


@pytest.mark.parametrize("metric", NO_REF)
@pytest.mark.parametrize("convention", ["default", "benchmark", "vifb"])
def test_constant_image_scores_zero(metric, convention):
    assert metric(np.full((16, 20), 37.0), convention) == 0.0
    assert metric(np.full((4, 16, 20), 37.0), convention) == 0.0


@pytest.mark.parametrize("convention", ["default", "benchmark", "vifb"])
def test_entropy_of_two_level_images(convention):
    half = np.zeros((32, 32))
    half[:, 16:] = 255.0
    # p = (1/2, 1/2): H = -2 * 1/2 log2(1/2) = 1 bit
    assert entropy(half, convention) == pytest.approx(1.0, abs=1e-12)
    quarter = np.zeros((32, 32))
    quarter[:8] = 200.0
    # p = (1/4, 3/4): H = -(1/4 log2 1/4 + 3/4 log2 3/4) = 0.5 + 0.311278 = 0.811278 bits
    assert entropy(quarter, convention) == pytest.approx(0.8112781244591328, abs=1e-12)


def test_entropy_conventions_differ_on_non_integer_levels():
    # values 0.4 and 0.6: round -> 0 and 1 (two levels, 1 bit); floor -> 0 and 0 (one level, 0 bits);
    # default bins the image's own range, 0.4 -> bin 0, 0.6 -> bin 255 (1 bit)
    x = np.zeros((8, 8)) + 0.4
    x[:, 4:] = 0.6
    assert entropy(x, "benchmark") == pytest.approx(1.0)
    assert entropy(x, "vifb") == 0.0
    assert entropy(x, "default") == pytest.approx(1.0)


def test_standard_deviation_of_two_level_image():
    x = np.zeros((10, 10))
    x[5:] = 255.0
    # population std of half 0, half 255: sqrt(mean((+-127.5)^2)) = 127.5
    assert standard_deviation(x) == pytest.approx(127.5)


def test_ramp_closed_forms_2d():
    height, width, s = 12, 17, 3.0
    ramp = _ramp((height, width), s, axis=1)  # F(i, j) = s j
    # SF: every row difference is s, column differences 0 -> SF = sqrt(s^2) = s
    assert spatial_frequency(ramp) == pytest.approx(s)
    assert spatial_frequency(ramp, "benchmark") == pytest.approx(s)
    # VIFB divides the H (W - 1) squared differences by H W: SF = s sqrt((W - 1) / W)
    assert spatial_frequency(ramp, "vifb") == pytest.approx(s * math.sqrt((width - 1) / width))
    # AG: gradient (s, 0) everywhere -> sqrt((s^2 + 0) / 2) = s / sqrt(2), on either grid
    assert average_gradient(ramp) == pytest.approx(s / math.sqrt(2))
    assert average_gradient(ramp, "benchmark") == pytest.approx(s / math.sqrt(2))
    # VIFB: sum over H W pixels divided by (H - 1)(W - 1)
    assert average_gradient(ramp, "vifb") == pytest.approx(s / math.sqrt(2) * height * width / ((height - 1) * (width - 1)))
    # EI: Sobel = smoothing (1+2+1) x central difference: 4 * 2s = 8s inside; with replicated
    # borders the first and last columns see one step: 4 * s -> mean = (8s (W-2) + 4s * 2) / W
    assert edge_intensity(ramp) == pytest.approx(8 * s * (width - 1) / width)


def test_ramp_closed_forms_3d():
    depth, s = 9, 2.0
    ramp = _ramp((depth, 10, 11), s, axis=0)  # F(k, i, j) = s k
    assert spatial_frequency(ramp) == pytest.approx(s)  # only depth differences, all s
    assert average_gradient(ramp) == pytest.approx(s / math.sqrt(3))  # sqrt((s^2 + 0 + 0) / 3)
    # 3D Sobel scaled to the 2D one: 8s inside, 4s on the first and last slice
    assert edge_intensity(ramp) == pytest.approx(8 * s * (depth - 1) / depth)


def test_single_slice_volume_equals_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (24, 30)).astype(np.float64)
    for metric in NO_REF:
        for convention in ("default", "benchmark", "vifb"):
            assert metric(image[None], convention) == pytest.approx(metric(image, convention), rel=1e-12)


def test_numpy_torch_uint8_agree():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (20, 24)).astype(np.uint8)
    for metric in NO_REF:
        for convention in ("default", "benchmark", "vifb"):
            expected = metric(image.astype(np.float64), convention)
            assert metric(image, convention) == pytest.approx(expected, rel=1e-12)
            assert metric(torch.from_numpy(image), convention) == pytest.approx(expected, rel=1e-12)
            assert metric(torch.from_numpy(image).float(), convention) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- naive references (loops)


def _naive_en_round(rows):
    counts = Counter(min(255, max(0, round(v))) for row in rows for v in row)  # python round = half-even
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _naive_sd(rows):
    values = [v for row in rows for v in row]
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _naive_sf(rows):
    h, w = len(rows), len(rows[0])
    rf = sum((rows[i][j] - rows[i][j - 1]) ** 2 for i in range(h) for j in range(1, w)) / (h * (w - 1))
    cf = sum((rows[i][j] - rows[i - 1][j]) ** 2 for i in range(1, h) for j in range(w)) / ((h - 1) * w)
    return math.sqrt(rf + cf)


def _naive_ag_cddfuse(rows):
    h, w = len(rows), len(rows[0])
    total = 0.0
    for i in range(h):
        for j in range(w):
            gx = rows[i][1] - rows[i][0] if j == 0 else rows[i][w - 1] - rows[i][w - 2] if j == w - 1 else (rows[i][j + 1] - rows[i][j - 1]) / 2
            gy = rows[1][j] - rows[0][j] if i == 0 else rows[h - 1][j] - rows[h - 2][j] if i == h - 1 else (rows[i + 1][j] - rows[i - 1][j]) / 2
            total += math.sqrt((gx * gx + gy * gy) / 2)
    return total / (h * w)


def _naive_ag_forward(rows):
    h, w = len(rows), len(rows[0])
    total = 0.0
    for i in range(h - 1):
        for j in range(w - 1):
            dx, dy = rows[i][j + 1] - rows[i][j], rows[i + 1][j] - rows[i][j]
            total += math.sqrt((dx * dx + dy * dy) / 2)
    return total / ((h - 1) * (w - 1))


def _naive_ei(rows):
    h, w = len(rows), len(rows[0])
    at = lambda i, j: rows[min(max(i, 0), h - 1)][min(max(j, 0), w - 1)]  # noqa: E731  replicate
    total = 0.0
    for i in range(h):
        for j in range(w):
            gx = (at(i - 1, j + 1) + 2 * at(i, j + 1) + at(i + 1, j + 1)) - (at(i - 1, j - 1) + 2 * at(i, j - 1) + at(i + 1, j - 1))
            gy = (at(i + 1, j - 1) + 2 * at(i + 1, j) + at(i + 1, j + 1)) - (at(i - 1, j - 1) + 2 * at(i - 1, j) + at(i - 1, j + 1))
            total += math.sqrt(gx * gx + gy * gy)
    return total / (h * w)


# Pinned values: F = round((MRI + functional) / 2) of the Harvard slice named, computed with the
# naive loops above (EN/SD/SF/AG in the benchmark convention reproduce CDDFuse's Evaluator) and
# printed to 10 significant digits.
HARVARD_PINS = {
    ("ct-mri", "ct", "2016.png"): {"EN": 3.756774167, "SD": 61.62958382, "SF": 18.98414909, "AG": 4.065504156,
                                   "AG_default": 4.854533455, "EI": 41.75316849},
    ("pet-mri", "pet", "25047.png"): {"EN": 5.303992226, "SD": 72.06563782, "SF": 21.84528093, "AG": 7.10529819,
                                      "AG_default": 9.151944715, "EI": 72.13313056},
}


@pytest.mark.parametrize("triple", list(HARVARD_PINS))
def test_harvard_benchmark_values(triple):
    fused = _harvard_fused(*triple)
    rows = fused.tolist()
    pins = HARVARD_PINS[triple]
    naive = {"EN": _naive_en_round(rows), "SD": _naive_sd(rows), "SF": _naive_sf(rows), "AG": _naive_ag_cddfuse(rows),
             "AG_default": _naive_ag_forward(rows), "EI": _naive_ei(rows)}
    ours = {"EN": entropy(fused, "benchmark"), "SD": standard_deviation(fused, "benchmark"),
            "SF": spatial_frequency(fused, "benchmark"), "AG": average_gradient(fused, "benchmark"),
            "AG_default": average_gradient(fused), "EI": edge_intensity(fused)}
    for name, value in ours.items():
        assert value == pytest.approx(naive[name], rel=1e-10), name
        assert value == pytest.approx(pins[name], rel=1e-8), name
