"""FMI: feature mutual information of Haghighat et al., vectorised over all sliding windows.

References: M. B. A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, "A non-reference image fusion
metric based on mutual information of image features", Comput. Electr. Eng. 37 (2011);
M. Haghighat, M. A. Razian, "Fast-FMI: non-reference image fusion metric", AICT 2014. We follow
the authors' public Fast-FMI code (``fmi.m``), which every published FMI table uses:

1. A feature map of each image (below).
2. Every ``w x w`` window (``w = 3``, windows fully inside the map) of a source's map X and of F's
   map is min-max scaled to [0, 1] (a constant window becomes all ones) and divided by its sum:
   the ``l = w^2`` values, read column by column as MATLAB's ``x(:)``, are a distribution over
   positions ``1..l``.
3. Their joint distribution is Nelsen's mixture of the Frechet bound copula and independence:
   ``p(i, j) = t dC(F_i, X_j) + (1 - t) p_F(i) p_X(j)``, ``C`` the upper bound ``min(u, v)`` when
   the Pearson correlation ``c`` of the two distributions is >= 0 and the lower bound
   ``max(u + v - 1, 0)`` otherwise, ``t = c / corr_C`` the ratio of ``c`` to the correlation of
   the positions under ``C`` (``t = 0`` when ``c = 0`` or a distribution has no spread).
4. ``FMI_XF = 2 MI / (H(X) + H(F))`` in that window (0 when MI is 0; joint entropy terms are
   ``-p log2 |p|`` as MATLAB's ``real()`` makes them), and 1 when the two raw windows are equal.
5. FMI is the mean over windows of ``(FMI_AF + FMI_BF) / 2``, in [0, 1].

Features: ``pixel`` the image itself; ``edge`` a binary Sobel edge map in the manner of MATLAB's
``edge(I)`` (threshold ``|g|^2 > 4 mean(|g|^2)``, non-maximum thinning along the dominant
gradient axis, border pixels never edges; an approximation of MATLAB's thinning routine);
``gradient`` the central-difference gradient magnitude in the ``default`` convention, and in the
``benchmark`` convention what ``fmi.m`` computes, MATLAB's one-output ``gradient(I)``, i.e. the
horizontal derivative only; ``dct`` the orthonormal 2D DCT-II of the whole image (MATLAB
``dct2``), windowed like an image; ``wavelet`` one-level discrete Meyer DWT (PyWavelets
``'dmey'``, symmetric extension = MATLAB ``'sym'``), the four sub-bands tiled ``[cA cH; cV cD]``
and min-max scaled to [0, 1]. ``vifb`` uses the ``default`` definitions.

3D volumes: per slice along axis 0, mean over slices that are not empty.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pywt
from scipy import fft as sp_fft
from scipy import ndimage

from monai_fusion.metrics._inputs import check_convention, mean_over_slices, prepare_triple, require_min_size

__all__ = [
    "FMI_FEATURES",
    "feature_mutual_information",
    "fmi_pixel",
    "fmi_edge",
    "fmi_gradient",
    "fmi_dct",
    "fmi_wavelet",
    "sobel_edge_map",
]

FMI_FEATURES = ("pixel", "edge", "gradient", "dct", "wavelet")

#: Windows processed per vectorised block (bounds memory to a few tens of MB).
_CHUNK = 8192


def _rerange(x: np.ndarray) -> np.ndarray:
    low, high = x.min(), x.max()
    return np.ones_like(x) if high == low else (x - low) / (high - low)


def sobel_edge_map(x: np.ndarray) -> np.ndarray:
    """Binary Sobel edges with MATLAB ``edge``'s automatic threshold and axis-wise thinning."""
    gx = ndimage.sobel(x, axis=1, mode="nearest") / 8.0
    gy = ndimage.sobel(x, axis=0, mode="nearest") / 8.0
    strength = gx * gx + gy * gy
    cutoff = 4.0 * strength.mean()
    ax, ay = np.abs(gx), np.abs(gy)
    s = strength[1:-1, 1:-1]
    along_x = (ax[1:-1, 1:-1] >= ay[1:-1, 1:-1]) & (s >= strength[1:-1, :-2]) & (s > strength[1:-1, 2:])
    along_y = (ay[1:-1, 1:-1] >= ax[1:-1, 1:-1]) & (s >= strength[:-2, 1:-1]) & (s > strength[2:, 1:-1])
    edges = np.zeros(x.shape, dtype=np.float64)
    edges[1:-1, 1:-1] = (s > cutoff) & (along_x | along_y)
    return edges


def _gradient_magnitude(x: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(x)
    return np.sqrt(gx * gx + gy * gy)


def _wavelet_mosaic(x: np.ndarray) -> np.ndarray:
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x, "dmey", mode="symmetric")
    return _rerange(np.block([[c_a, c_h], [c_v, c_d]]))


def _feature_extractor(feature: str, convention: str) -> Callable[[np.ndarray], np.ndarray]:
    if feature == "pixel":
        return lambda x: x
    if feature == "edge":
        return sobel_edge_map
    if feature == "gradient":
        return (lambda x: np.gradient(x, axis=1)) if convention == "benchmark" else _gradient_magnitude
    if feature == "dct":
        return lambda x: sp_fft.dctn(x, norm="ortho")
    if feature == "wavelet":
        return _wavelet_mosaic
    raise ValueError(f"unknown FMI feature {feature!r}; choose one of {', '.join(FMI_FEATURES)}")


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """All ``w x w`` windows as rows of length ``w^2``, each read column by column."""
    view = np.lib.stride_tricks.sliding_window_view(x, (w, w))
    return view.transpose(0, 1, 3, 2).reshape(-1, w * w)


class _WindowDistributions:
    """Per-window position distributions of one feature map: pdf, cdf, spread and entropy."""

    def __init__(self, raw: np.ndarray):
        low = raw.min(axis=1, keepdims=True)
        high = raw.max(axis=1, keepdims=True)
        span = high - low
        scaled = np.where(span > 0, (raw - low) / np.where(span > 0, span, 1.0), 1.0)
        self.raw = raw
        self.pdf = scaled / scaled.sum(axis=1, keepdims=True)
        self.cdf = np.cumsum(self.pdf, axis=1)
        self.centered = self.pdf - self.pdf.mean(axis=1, keepdims=True)
        position = np.arange(1, raw.shape[1] + 1, dtype=np.float64)
        mean = self.pdf @ position
        self.spread = np.sqrt(np.maximum(self.pdf @ (position * position) - mean * mean, 0.0))
        self.entropy = _entropy_rows(self.pdf)


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Row-wise ``sum -p log2 |p|`` over non-zero entries (MATLAB ``real(-p .* log2(p))``)."""
    magnitude = np.abs(p)
    return -(p * np.log2(np.where(magnitude > 0, magnitude, 1.0))).sum(axis=tuple(range(1, p.ndim)))


def _window_fmi(x: _WindowDistributions, f: _WindowDistributions) -> np.ndarray:
    """Normalised feature MI of each window pair (step 3-4 of the module docstring)."""
    num = (x.centered * f.centered).sum(axis=1)
    den = np.sqrt((x.centered ** 2).sum(axis=1) * (f.centered ** 2).sum(axis=1))
    c = np.where(num == 0, 0.0, num / np.where(den > 0, den, 1.0))
    n = c.shape[0]
    f_cdf = np.concatenate([np.zeros((n, 1)), f.cdf], axis=1)[:, :, None]
    x_cdf = np.concatenate([np.zeros((n, 1)), x.cdf], axis=1)[:, None, :]
    upper = np.minimum(f_cdf, x_cdf)
    lower = np.maximum(f_cdf + x_cdf - 1.0, 0.0)
    bound = np.where((c >= 0)[:, None, None], upper, lower)
    independent = f.cdf[:, :, None] * x.cdf[:, None, :]
    spreads = f.spread * x.spread
    bound_corr = (bound[:, 1:, 1:] - independent).sum(axis=(1, 2)) / np.where(spreads > 0, spreads, 1.0)
    degenerate = (c == 0) | (x.spread == 0) | (f.spread == 0) | (bound_corr == 0)
    t = np.where(degenerate, 0.0, c / np.where(bound_corr != 0, bound_corr, 1.0))[:, None, None]
    bound_pdf = bound[:, 1:, 1:] - bound[:, :-1, 1:] - bound[:, 1:, :-1] + bound[:, :-1, :-1]
    joint = t * bound_pdf + (1.0 - t) * (f.pdf[:, :, None] * x.pdf[:, None, :])
    h_sum = x.entropy + f.entropy
    mi = h_sum - _entropy_rows(joint)
    value = np.where((mi == 0) | (h_sum == 0), 0.0, 2.0 * mi / np.where(h_sum != 0, h_sum, 1.0))
    return np.where(np.all(x.raw == f.raw, axis=1), 1.0, value)


def _fmi_2d(a: np.ndarray, b: np.ndarray, f: np.ndarray, extract, window: int) -> float:
    maps = [_windows(extract(x), window) for x in (a, b, f)]
    total, count = 0.0, maps[0].shape[0]
    for start in range(0, count, _CHUNK):
        block = slice(start, start + _CHUNK)
        f_dist = _WindowDistributions(maps[2][block])
        for source in maps[:2]:
            total += _window_fmi(_WindowDistributions(source[block]), f_dist).sum() / 2.0
    return total / count


def feature_mutual_information(a, b, f, feature: str = "pixel", convention: str = "default", window: int = 3) -> float:
    """FMI of Haghighat et al. on the given ``feature`` map (see the module docstring).

    Args:
        a, b: source images; f: fused image (2D, or 3D evaluated per slice).
        feature: one of :data:`FMI_FEATURES`.
        convention: ``benchmark`` differs from ``default`` only for ``gradient``.
        window: sliding window size ``w`` (``fmi.m`` default 3).
    """
    convention = check_convention(convention)
    extract = _feature_extractor(feature, convention)
    a, b, f, _ = prepare_triple(a, b, f)
    require_min_size(a.shape, max(window, 3), f"FMI_{feature}")
    return mean_over_slices(lambda *imgs: _fmi_2d(*imgs, extract, window), a, b, f)


def fmi_pixel(a, b, f, convention: str = "default") -> float:
    """FMI on raw pixels (``fmi(A, B, F, 'none')``); see :func:`feature_mutual_information`."""
    return feature_mutual_information(a, b, f, "pixel", convention)


def fmi_edge(a, b, f, convention: str = "default") -> float:
    """FMI on binary Sobel edge maps; see :func:`feature_mutual_information`."""
    return feature_mutual_information(a, b, f, "edge", convention)


def fmi_gradient(a, b, f, convention: str = "default") -> float:
    """FMI on gradients (magnitude; ``benchmark``: horizontal derivative as ``fmi.m``)."""
    return feature_mutual_information(a, b, f, "gradient", convention)


def fmi_dct(a, b, f, convention: str = "default") -> float:
    """FMI on the whole-image orthonormal DCT; see :func:`feature_mutual_information`."""
    return feature_mutual_information(a, b, f, "dct", convention)


def fmi_wavelet(a, b, f, convention: str = "default") -> float:
    """FMI on the tiled discrete Meyer wavelet sub-bands; see :func:`feature_mutual_information`."""
    return feature_mutual_information(a, b, f, "wavelet", convention)
