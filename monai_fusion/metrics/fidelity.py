"""Pixel fidelity and correlation: MSE, RMSE, PSNR, CC, SCD. All volumetric on 3D input.

Correlations use ``corr2`` (Pearson over all voxels); the correlation of a constant image with
anything is defined as 0. Errors are on the images' own intensity scale (uint8: 0..255).
"""

from __future__ import annotations

import numpy as np

from monai_fusion.metrics._inputs import check_convention, prepare_triple

__all__ = ["corr2", "mean_squared_error", "root_mean_squared_error", "peak_signal_to_noise_ratio",
           "correlation_coefficient", "sum_of_correlations_of_differences"]


def corr2(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two images over all voxels (MATLAB ``corr2``); 0 if one is constant."""
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else 0.0


def _mse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x - y) ** 2))


def _vifb_error(x: np.ndarray, y: np.ndarray) -> float:
    """VIFB's ``mse`` helper: ``sqrt(sum((x - y)^2)) / N`` (sic: it is RMSE / sqrt(N))."""
    return float(np.sqrt(((x - y) ** 2).sum()) / x.size)


def mean_squared_error(a, b, f, convention: str = "default") -> float:
    """MSE = (MSE(A,F) + MSE(B,F)) / 2.

    Reference: P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image", Aquatic
    Procedia 4 (2015). Identical in every convention (CDDFuse ``Evaluator.MSE``; VIFB has none).

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    return (_mse(a, f) + _mse(b, f)) / 2.0


def root_mean_squared_error(a, b, f, convention: str = "default") -> float:
    """RMSE.

    Conventions: ``default`` and ``benchmark`` ``sqrt(MSE)`` with MSE as in
    :func:`mean_squared_error` (CDDFuse has no RMSE). ``vifb`` reproduces VIFB's
    ``metricsRmse``: the mean over sources of ``sqrt(sum((X - F)^2)) / N``, which is
    RMSE / sqrt(N) and so depends on the image size.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    if convention == "vifb":
        return (_vifb_error(a, f) + _vifb_error(b, f)) / 2.0
    return float(np.sqrt((_mse(a, f) + _mse(b, f)) / 2.0))


def peak_signal_to_noise_ratio(a, b, f, convention: str = "default") -> float:
    """PSNR in dB; ``+inf`` when F equals both sources.

    Reference: P. Jagalingam, A. V. Hegde (2015), as above.

    Conventions: ``default`` ``10 log10(L^2 / MSE)``, ``L`` the data range of the triple.
    ``benchmark`` (CDDFuse ``Evaluator.PSNR``) ``10 log10(max(F)^2 / MSE)``: the peak is F's
    maximum, not the range. ``vifb`` (``metricsPsnr``) ``20 log10(255 / sqrt(E))`` with ``E``
    the mean over sources of VIFB's ``sqrt(sum((X - F)^2)) / N`` (see :func:`root_mean_squared_error`).

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    if convention == "vifb":
        error = (_vifb_error(a, f) + _vifb_error(b, f)) / 2.0
        return float(20.0 * np.log10(255.0 / np.sqrt(error))) if error > 0 else float("inf")
    mse = (_mse(a, f) + _mse(b, f)) / 2.0
    if mse == 0:
        return float("inf")
    peak = float(f.max()) if convention == "benchmark" else data_range
    if peak == 0:
        return float("-inf")
    return float(10.0 * np.log10(peak * peak / mse))


def correlation_coefficient(a, b, f, convention: str = "default") -> float:
    """CC = (corr2(A, F) + corr2(B, F)) / 2, in [-1, 1]; identical in every convention.

    Reference: as used in the CDDFuse ``Evaluator.CC`` and J. Ma et al.'s fusion surveys.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    return (corr2(a, f) + corr2(b, f)) / 2.0


def sum_of_correlations_of_differences(a, b, f, convention: str = "default") -> float:
    """SCD = corr2(F - B, A) + corr2(F - A, B), in [-2, 2]; identical in every convention.

    Reference: V. Aslantas, E. Bendes, "A new image quality metric for image fusion: the sum of
    the correlations of differences", AEU Int. J. Electron. Commun. 69 (2015). F = A = B gives 0
    (the differences are constant).

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    return corr2(f - b, a) + corr2(f - a, b)
