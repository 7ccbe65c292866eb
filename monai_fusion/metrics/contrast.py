"""Q_CB: Chen & Blum's human-perception fusion metric (contrast-sensitivity filtered contrast).

Reference: Y. Chen, R. S. Blum, "A new automated quality assessment algorithm for image fusion",
Image Vis. Comput. 27 (2009). We follow the implementation of Liu et al.'s toolbox
(``metricChenBlum.m``), which VIFB also uses:

1. Each image is min-max scaled to 0..255 (``normalize1``); a constant image becomes all 0.
2. Contrast sensitivity filtering in the frequency domain with the DoG-shaped CSF
   ``S(r) = exp(-(r / f0)^2) - a exp(-(r / f1)^2)``, ``f0 = 15.3870``, ``f1 = 1.3456``,
   ``a = 0.7622``, on MATLAB ``freqspace`` frequencies scaled by ``W / 30`` and ``H / 30``.
   The filter is symmetric, so the filtered image is real (the toolbox keeps a round-off
   imaginary part that its ``abs`` then folds in; we take the real part).
3. Local contrast ``C = |(I * G1) / (I * G2) - 1|`` with 31x31 Gaussians of sigma 2 and 4
   (unnormalised, ``1 / (2 pi sigma^2)`` scaling, zero padding). Deviation from the toolbox:
   ``C = 0`` where ``|I * G2| <= 1e-8`` or ``C < 1e-8``. Far from the anatomy the CSF-filtered
   black background is 0 up to FFT round-off (~1e-13), so the toolbox's ratio there is a ratio
   of round-off values, random in [0, inf): on a Harvard slice it moves Q_CB by ~1e-3 from one
   FFT library to another. With the floors these pixels have no contrast, deterministically.
4. Masked contrast ``C' = C^3 / (C^2 + 1e-4)``; preservation ``Q_XF = min(C'_X, C'_F) /
   max(C'_X, C'_F)`` (1 where both are 0); saliency ``lam_X = C'_X^2 / (C'_A^2 + C'_B^2)``
   (0.5 where both are 0); ``Q_CB = mean(lam_A Q_AF + lam_B Q_BF)``, in [0, 1].

Conventions: ``benchmark`` and ``vifb`` round the 0..255 scaling to integers as ``normalize1``
does; ``default`` keeps it continuous. 3D: per slice along axis 0, mean over non-empty slices.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft

from monai_fusion.metrics._filters import filter_same
from monai_fusion.metrics._inputs import check_convention, mean_over_slices, prepare_triple

__all__ = ["q_cb"]

CSF_F0, CSF_F1, CSF_A = 15.3870, 1.3456, 0.7622
CONTRAST_SIGMAS = (2.0, 4.0)
CONTRAST_HALF_WIDTH = 15
MASK_P, MASK_Q, MASK_Z = 3, 2, 1e-4
#: Below these, on the 0..255 scale, the CSF-filtered response and the contrast are round-off.
RESPONSE_FLOOR = 1e-8
CONTRAST_FLOOR = 1e-8


def _scaled_0_255(x: np.ndarray, rounded: bool) -> np.ndarray:
    low, high = x.min(), x.max()
    if high == low:
        return np.zeros_like(x)
    y = (x - low) / (high - low) * 255.0
    return np.floor(y + 0.5) if rounded else y


def _freqspace(n: int) -> np.ndarray:
    """MATLAB ``freqspace`` along one axis: ``((0:n-1) - floor(n/2)) * 2 / n``."""
    return (np.arange(n) - n // 2) * (2.0 / n)


@lru_cache(maxsize=8)
def _csf(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = shape
    u = _freqspace(cols)[None, :] * (cols / 30.0)
    v = _freqspace(rows)[:, None] * (rows / 30.0)
    r = np.sqrt(u * u + v * v)
    return np.exp(-((r / CSF_F0) ** 2)) - CSF_A * np.exp(-((r / CSF_F1) ** 2))


def _csf_filter(x: np.ndarray) -> np.ndarray:
    spectrum = sp_fft.fftshift(sp_fft.fft2(x)) * _csf(x.shape)
    return np.real(sp_fft.ifft2(sp_fft.ifftshift(spectrum)))


@lru_cache(maxsize=4)
def _unnormalised_gaussian(sigma: float) -> np.ndarray:
    """1D factor of ``exp(-(x^2 + y^2) / (2 sigma^2)) / (2 pi sigma^2)`` on -15..15."""
    x = np.arange(-CONTRAST_HALF_WIDTH, CONTRAST_HALF_WIDTH + 1, dtype=np.float64)
    return np.exp(-(x * x) / (2.0 * sigma * sigma)) / (np.sqrt(2.0 * np.pi) * sigma)


def _masked_contrast(x: np.ndarray) -> np.ndarray:
    fine = filter_same(x, _unnormalised_gaussian(CONTRAST_SIGMAS[0]), mode="constant")
    coarse = filter_same(x, _unnormalised_gaussian(CONTRAST_SIGMAS[1]), mode="constant")
    defined = np.abs(coarse) > RESPONSE_FLOOR
    c = np.abs(np.where(defined, fine / np.where(defined, coarse, 1.0) - 1.0, 0.0))
    c[c < CONTRAST_FLOOR] = 0.0
    # C^3 / (C^2 + Z) written as C * 1 / (1 + Z / C^2) so huge contrasts cannot overflow
    c_sq = c * c
    with np.errstate(over="ignore"):
        return np.where(c > 0, c / (1.0 + MASK_Z / np.where(c > 0, c_sq, 1.0)), 0.0)


def _preservation(cx: np.ndarray, cf: np.ndarray) -> np.ndarray:
    high = np.maximum(cx, cf)
    return np.where(high > 0, np.minimum(cx, cf) / np.where(high > 0, high, 1.0), 1.0)


def _q_cb_2d(a: np.ndarray, b: np.ndarray, f: np.ndarray, rounded: bool) -> float:
    ca, cb, cf = (_masked_contrast(_csf_filter(_scaled_0_255(x, rounded))) for x in (a, b, f))
    high = np.maximum(ca, cb)
    ra = np.where(high > 0, ca / np.where(high > 0, high, 1.0), 1.0)
    rb = np.where(high > 0, cb / np.where(high > 0, high, 1.0), 1.0)
    lam_a = ra * ra / (ra * ra + rb * rb)
    return float((lam_a * _preservation(ca, cf) + (1.0 - lam_a) * _preservation(cb, cf)).mean())


def q_cb(a, b, f, convention: str = "default") -> float:
    """Q_CB of Chen & Blum (2009), in [0, 1]; see the module docstring for every step.

    Args:
        a, b: source images; f: fused image (2D, or 3D evaluated per slice).
        convention: ``default`` continuous 0..255 scaling; ``benchmark``/``vifb`` rounded.
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    rounded = convention != "default"
    return mean_over_slices(lambda a_, b_, f_: _q_cb_2d(a_, b_, f_, rounded), a, b, f)
