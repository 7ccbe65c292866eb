"""Windows, separable filtering, Sobel gradients and local window statistics, in 2D and 3D.

Every window used by the metrics is separable (Gaussian, box), so an n-D filter is a sequence of
1D correlations (``scipy.ndimage.correlate1d``). Two border policies appear in the published
code and both are needed:

* ``valid`` (MATLAB ``filter2(w, x, 'valid')``): only windows that fit inside the image; the
  output is ``size - len(kernel) + 1`` along each axis.
* ``same`` with a padding ``mode`` (``'constant'`` = MATLAB zero padding, ``'nearest'`` =
  ``'replicate'``, ``'reflect'`` = scipy/scikit-image's half-sample symmetric padding).

Local variances computed as ``E[x^2] - E[x]^2`` can come out as tiny negatives or, on perfectly
flat windows, as round-off noise around 0; they are clipped at 0, and metrics whose constants are
themselves near 0 (Q_Y in the benchmark convention) ask for ``exact_flat=True``, which sets the
variance and covariance of windows whose values are all equal to exactly 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = [
    "LocalStats",
    "gaussian_kernel",
    "box_kernel",
    "filter_valid",
    "filter_same",
    "sobel_components",
    "local_stats",
]


@lru_cache(maxsize=32)
def _gaussian_kernel_cached(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g /= g.sum()
    g.setflags(write=False)
    return g


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """1D Gaussian of ``size`` taps normalised to sum 1; its n-fold outer product is
    MATLAB's ``fspecial('gaussian', size, sigma)`` (normalised the same way)."""
    return _gaussian_kernel_cached(int(size), float(sigma))


def box_kernel(size: int) -> np.ndarray:
    """1D uniform window of ``size`` taps summing to 1."""
    return np.full(int(size), 1.0 / size)


def filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation with ``kernel`` along every axis, keeping only windows inside ``x``."""
    r_lo = (len(kernel) - 1) // 2
    r_hi = len(kernel) - 1 - r_lo
    out = x
    for axis in range(x.ndim):
        out = ndimage.correlate1d(out, kernel, axis=axis, mode="constant")
        index = [slice(None)] * x.ndim
        index[axis] = slice(r_lo, out.shape[axis] - r_hi)
        out = out[tuple(index)]
    return out


def filter_same(x: np.ndarray, kernel: np.ndarray, mode: str = "constant") -> np.ndarray:
    """Separable correlation with ``kernel`` along every axis, output the size of ``x``."""
    out = x
    for axis in range(x.ndim):
        out = ndimage.correlate1d(out, kernel, axis=axis, mode=mode)
    return out


def sobel_components(x: np.ndarray, mode: str = "nearest") -> list[np.ndarray]:
    """Sobel derivative along each axis, scaled so a ramp of slope 1 gives 8 in 2D and in 3D.

    In 2D this is the classic operator (derivative ``[-1, 0, 1]``, smoothing ``[1, 2, 1]``). In
    3D the smoothing is ``[1, 2, 1]`` along both other axes; it is divided by 4 so that 2D and 3D
    edge strengths share one scale.
    """
    scale = 1.0 if x.ndim == 2 else 0.25
    return [ndimage.sobel(x, axis=axis, mode=mode) * scale for axis in range(x.ndim)]


class LocalStats(NamedTuple):
    """Window means, variances and covariance of two images."""

    mu_x: np.ndarray
    mu_y: np.ndarray
    var_x: np.ndarray
    var_y: np.ndarray
    cov_xy: np.ndarray


def _flat_windows(x: np.ndarray, size: int) -> np.ndarray:
    """Boolean map of the 'valid' windows of ``size`` on which ``x`` is constant."""
    flat = ndimage.maximum_filter(x, size=size) == ndimage.minimum_filter(x, size=size)
    r_lo = (size - 1) // 2
    r_hi = size - 1 - r_lo
    return flat[tuple(slice(r_lo, n - r_hi) for n in x.shape)]


def local_stats(
    x: np.ndarray,
    y: np.ndarray,
    kernel: np.ndarray,
    *,
    valid: bool = True,
    mode: str = "constant",
    sample_covariance: bool = False,
    exact_flat: bool = False,
) -> LocalStats:
    """Weighted local moments of ``x`` and ``y`` under the separable window ``kernel``.

    Args:
        x, y: images of one shape.
        kernel: 1D window (sums to 1), applied along every axis.
        valid: ``True`` for MATLAB ``'valid'`` output, ``False`` for ``'same'`` with ``mode``.
        mode: padding for ``valid=False`` (see the module docstring).
        sample_covariance: multiply (co)variances by ``n / (n - 1)``, ``n`` the window's voxel
            count (scikit-image's ``use_sample_covariance``).
        exact_flat: zero the variance and covariance of windows where an image is constant
            (``valid`` windows only).
    """
    if exact_flat and not valid:
        raise ValueError("exact_flat is only defined for 'valid' windows")
    smooth = (lambda z: filter_valid(z, kernel)) if valid else (lambda z: filter_same(z, kernel, mode))
    mu_x, mu_y = smooth(x), smooth(y)
    var_x = smooth(x * x) - mu_x * mu_x
    var_y = smooth(y * y) - mu_y * mu_y
    cov_xy = smooth(x * y) - mu_x * mu_y
    if sample_covariance:
        n = len(kernel) ** x.ndim
        factor = n / (n - 1.0)
        var_x, var_y, cov_xy = var_x * factor, var_y * factor, cov_xy * factor
    np.maximum(var_x, 0.0, out=var_x)
    np.maximum(var_y, 0.0, out=var_y)
    if exact_flat:
        flat_x = _flat_windows(x, len(kernel))
        flat_y = _flat_windows(y, len(kernel))
        var_x[flat_x] = 0.0
        var_y[flat_y] = 0.0
        cov_xy[flat_x | flat_y] = 0.0
    return LocalStats(mu_x, mu_y, var_x, var_y, cov_xy)
