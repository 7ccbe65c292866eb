"""Q_P: Zhao et al.'s phase-congruency feature metric, with Kovesi's phase congruency.

References: J. Zhao, R. Laganiere, Z. Liu, "Performance assessment of combinative pixel-level
image fusion based on an absolute feature measurement", Int. J. Innov. Comput. Inf. Control 3
(2007); P. Kovesi, "Image features from phase congruency", Videre 1 (1999) and "Phase
congruency detects corners and edges", DICTA (2003). We follow Liu et al.'s toolbox
(``metricZhao.m`` with ``myphasecong3.m``, Kovesi's ``phasecong3`` defaults: 4 scales,
6 orientations, minimum wavelength 3, scale factor 2.1, sigmaOnf 0.55, dThetaOnSigma 1.2,
noise k = 2, cut-off 0.5, g = 10):

1. Phase congruency ``PC``, maximum moment ``M`` (edges) and minimum moment ``m`` (corners) of
   each image. The orientation-wise ``PC_o = W E / sum A_n`` is set to 0 where ``sum A_n`` is 0
   (a featureless image; the toolbox would divide 0 by 0).
2. For each feature map P in (PC, M, m): masks of salient pixels ``PC_X > 0.1`` for A, B and
   their pixelwise-PC-maximum image; local correlation coefficients
   ``(s_XF + C) / (sqrt(|s_X^2 s_F^2|) + C)`` (C = 1e-4, Gaussian 11, sigma 1.5, 'same' zero
   padding) of the masked source maps with F's map; the pixelwise maximum of the three, summed
   and divided by the size of the maximum image's mask.
3. ``Q_P = P_PC * P_M * P_m`` (exponents 1). When no source pixel is salient, nothing can be
   lost and Q_P = 1.

Conventions: ``default`` scales the triple to 0..255 by its data range first (phase congruency is
scale-free apart from a 1e-4 guard); ``benchmark``/``vifb`` use the values as given. 3D: per
slice along axis 0, mean over non-empty slices.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import fft as sp_fft

from monai_fusion.metrics._filters import gaussian_kernel, local_stats
from monai_fusion.metrics._inputs import check_convention, mean_over_slices, prepare_triple, require_min_size

__all__ = ["PhaseCongruency", "phase_congruency", "q_p"]

N_SCALE, N_ORIENT, MIN_WAVELENGTH, MULT = 4, 6, 3.0, 2.1
SIGMA_ON_F, D_THETA_ON_SIGMA, NOISE_K, CUT_OFF, G_SHARPNESS = 0.55, 1.2, 2.0, 0.5, 10.0
EPSILON = 1e-4
FEATURE_THRESHOLD = 0.1
CORRELATION_C = 1e-4


class PhaseCongruency(NamedTuple):
    """Phase congruency and the maximum/minimum moments of its covariance."""

    pc: np.ndarray
    maximum_moment: np.ndarray
    minimum_moment: np.ndarray


def _centred_range(n: int) -> np.ndarray:
    if n % 2:
        return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
    return np.arange(-n / 2, n / 2) / n


@lru_cache(maxsize=8)
def _filter_bank(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Log-Gabor filters (N_ORIENT, N_SCALE, rows, cols) and their spatial versions (same)."""
    rows, cols = shape
    x, y = np.meshgrid(_centred_range(cols), _centred_range(rows))
    radius = np.sqrt(x * x + y * y)
    radius[rows // 2, cols // 2] = 1.0
    theta = sp_fft.ifftshift(np.arctan2(-y, x))
    radius = sp_fft.ifftshift(radius)
    # Kovesi's lowpassfilter([rows cols], 0.45, 15)
    lx = (np.arange(1, cols + 1)[None, :] - (cols // 2 + 1)) / cols
    ly = (np.arange(1, rows + 1)[:, None] - (rows // 2 + 1)) / rows
    lowpass = sp_fft.fftshift(1.0 / (1.0 + (np.sqrt(lx * lx + ly * ly) / 0.45) ** 30))
    log_gabor = []
    for s in range(N_SCALE):
        centre = 1.0 / (MIN_WAVELENGTH * MULT ** s)
        lg = np.exp(-(np.log(radius / centre) ** 2) / (2 * np.log(SIGMA_ON_F) ** 2)) * lowpass
        lg[0, 0] = 0.0
        log_gabor.append(lg)
    theta_sigma = np.pi / N_ORIENT / D_THETA_ON_SIGMA
    bank = np.empty((N_ORIENT, N_SCALE, rows, cols))
    for o in range(N_ORIENT):
        angle = o * np.pi / N_ORIENT
        ds = np.sin(theta) * np.cos(angle) - np.cos(theta) * np.sin(angle)
        dc = np.cos(theta) * np.cos(angle) + np.sin(theta) * np.sin(angle)
        spread = np.exp(-(np.abs(np.arctan2(ds, dc)) ** 2) / (2 * theta_sigma ** 2))
        for s in range(N_SCALE):
            bank[o, s] = log_gabor[s] * spread
    spatial = np.real(sp_fft.ifft2(bank, axes=(-2, -1))) * np.sqrt(rows * cols)
    bank.setflags(write=False)
    spatial.setflags(write=False)
    return bank, spatial


def phase_congruency(image: np.ndarray) -> PhaseCongruency:
    """Kovesi's phase congruency of a 2D image (``myphasecong3`` of Liu's toolbox)."""
    bank, spatial = _filter_bank(image.shape)
    responses = sp_fft.ifft2(sp_fft.fft2(image)[None, None] * bank, axes=(-2, -1), workers=-1)
    even, odd, amplitude = responses.real, responses.imag, np.abs(responses)  # (orient, scale, H, W)
    sum_e, sum_o, sum_an = even.sum(axis=1), odd.sum(axis=1), amplitude.sum(axis=1)
    x_energy = np.sqrt(sum_e ** 2 + sum_o ** 2) + EPSILON
    mean_e, mean_o = (sum_e / x_energy)[:, None], (sum_o / x_energy)[:, None]
    energy = (even * mean_e + odd * mean_o - np.abs(even * mean_o - odd * mean_e)).sum(axis=1)
    # noise compensation, one threshold per orientation
    median_e2n = np.median((amplitude[:, 0] ** 2).reshape(N_ORIENT, -1), axis=1)
    noise_power = (-median_e2n / np.log(0.5)) / (bank[:, 0] ** 2).sum(axis=(1, 2))
    sum_an2 = (spatial ** 2).sum(axis=(1, 2, 3))
    sum_ai_aj = ((spatial.sum(axis=1) ** 2).sum(axis=(1, 2)) - sum_an2) / 2.0
    tau = np.sqrt((2 * noise_power * sum_an2 + 4 * noise_power * sum_ai_aj) / 2.0)
    threshold = (tau * np.sqrt(np.pi / 2) + NOISE_K * np.sqrt((2 - np.pi / 2) * tau ** 2)) / 1.7
    energy = np.maximum(energy - threshold[:, None, None], 0.0)
    width = sum_an / (amplitude.max(axis=1) + EPSILON) / N_SCALE
    weighted = energy / (1.0 + np.exp((CUT_OFF - width) * G_SHARPNESS))
    pc_orient = np.where(sum_an > 0, weighted / np.where(sum_an > 0, sum_an, 1.0), 0.0)
    pc = weighted.sum(axis=0) / (sum_an.sum(axis=0) + EPSILON)
    angles = np.arange(N_ORIENT) * np.pi / N_ORIENT
    cov_x = pc_orient * np.cos(angles)[:, None, None]
    cov_y = pc_orient * np.sin(angles)[:, None, None]
    cov_x2 = (cov_x ** 2).sum(axis=0) / (N_ORIENT / 2)
    cov_y2 = (cov_y ** 2).sum(axis=0) / (N_ORIENT / 2)
    cov_xy = (cov_x * cov_y).sum(axis=0) / N_ORIENT
    denom = np.sqrt(cov_xy ** 2 + (cov_x2 - cov_y2) ** 2) + EPSILON
    return PhaseCongruency(pc, (cov_y2 + cov_x2 + denom) / 2, (cov_y2 + cov_x2 - denom) / 2)


def _feature_preservation(maps: tuple[np.ndarray, ...], masks: tuple[np.ndarray, ...]) -> float:
    """Step 2 of the module docstring for one feature (maps: A, B, max image, F)."""
    map_a, map_b, map_max, map_f = maps
    kernel = gaussian_kernel(11, 1.5)
    best = np.zeros(map_f.shape)
    for source, mask in zip((map_a, map_b, map_max), masks):
        s = local_stats(source * mask, map_f, kernel, valid=False, mode="constant")
        rho = (s.cov_xy + CORRELATION_C) / (np.sqrt(np.abs(s.var_x * s.var_y)) + CORRELATION_C)
        best = np.maximum(best, np.where(mask, rho, 0.0))
    return float(best.sum() / masks[2].sum())


def _q_p_2d(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    pa, pb, pf = (phase_congruency(x) for x in (a, b, f))
    a_wins = pa.pc > pb.pc
    masks = (pa.pc > FEATURE_THRESHOLD, pb.pc > FEATURE_THRESHOLD,
             np.where(a_wins, pa.pc, pb.pc) > FEATURE_THRESHOLD)
    if not masks[2].any():
        return 1.0
    value = 1.0
    for field in range(3):
        map_a, map_b, map_f = pa[field], pb[field], pf[field]
        value *= _feature_preservation((map_a, map_b, np.where(a_wins, map_a, map_b), map_f), masks)
    return value


def q_p(a, b, f, convention: str = "default") -> float:
    """Q_P of Zhao et al. (2007); see the module docstring.

    Args:
        a, b: source images; f: fused image (2D, or 3D evaluated per slice).
        convention: ``default`` rescales by the data range to 0..255 first; others do not.
    """
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    require_min_size(a.shape, 3, "Q_P")
    if convention == "default":
        scale = 255.0 / data_range
        a, b, f = a * scale, b * scale, f * scale
    return mean_over_slices(_q_p_2d, a, b, f)
