"""Structural-similarity metrics: SSIM, MS-SSIM, and the SSIM-based fusion scores Q_Y, Q_W, Q_E.

All of them build on local SSIM maps, ``l * cs`` with ``l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2
+ C1)`` and ``cs = (2 s_xy + C2) / (s_x^2 + s_y^2 + C2)``, ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``,
``K1 = 0.01``, ``K2 = 0.03``. Local variances are clipped at 0, so every constant is > 0 and no
map can divide 0 by 0: two identical constant images have SSIM 1.

3D volumes: SSIM is volumetric with a 3D window when the volume has at least as many slices as
the window is wide, otherwise per slice; MS-SSIM, Q_Y, Q_W and Q_E are per slice. Per-slice
values are averaged over the slices that are not empty (A, B and F not all constant).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from monai_fusion.metrics._filters import box_kernel, gaussian_kernel, local_stats, sobel_components
from monai_fusion.metrics._inputs import check_convention, mean_over_slices, prepare_triple, require_min_size

__all__ = ["structural_similarity", "multiscale_structural_similarity", "q_y", "q_w", "q_e"]

K1, K2 = 0.01, 0.03
#: MS-SSIM scale weights of Wang, Simoncelli & Bovik (2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Wang's window, and the scikit-image window of the benchmark convention.
GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 11, 1.5
SKIMAGE_WINDOW = 7
#: Q_Y window (Yang et al. use 7x7) and the near-zero constants of Liu's toolbox (metricYang.m).
Q_Y_SIZE, Q_Y_TOOLBOX_C = 7, 2e-16
Q_Y_SIMILAR = 0.75


def _ssim_maps(x, y, kernel, c1, c2, **stats_options):
    """SSIM map, contrast-structure map and the local statistics behind them."""
    s = local_stats(x, y, kernel, **stats_options)
    luminance = (2.0 * s.mu_x * s.mu_y + c1) / (s.mu_x ** 2 + s.mu_y ** 2 + c1)
    contrast_structure = (2.0 * s.cov_xy + c2) / (s.var_x + s.var_y + c2)
    return luminance * contrast_structure, contrast_structure, s


def _constants(data_range: float) -> tuple[float, float]:
    return (K1 * data_range) ** 2, (K2 * data_range) ** 2


def _ssim_wang(x, y, data_range):
    """Mean SSIM with Wang's 11x11 (or 11^3) Gaussian window, sigma 1.5, 'valid' windows only."""
    ssim_map, _, _ = _ssim_maps(x, y, gaussian_kernel(GAUSSIAN_SIZE, GAUSSIAN_SIGMA), *_constants(data_range))
    return float(ssim_map.mean())


def _ssim_skimage_legacy(x, y):
    """scikit-image ``structural_similarity(x, y, data_range=2)``: 7-wide box window, reflect
    padding, sample covariance, border of 3 cropped before the mean."""
    ssim_map, _, _ = _ssim_maps(x, y, box_kernel(SKIMAGE_WINDOW), *_constants(2.0), valid=False, mode="reflect",
                                sample_covariance=True)
    pad = (SKIMAGE_WINDOW - 1) // 2
    return float(ssim_map[tuple(slice(pad, n - pad) for n in x.shape)].mean())


def structural_similarity(a, b, f, convention: str = "default") -> float:
    """SSIM of F against each source, combined over the two sources.

    Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
    from error visibility to structural similarity", IEEE Trans. Image Process. 13 (2004).

    Conventions: ``default`` Wang's SSIM (Gaussian window 11, sigma 1.5, 'valid' windows,
    ``L`` = the data range of the triple), **mean** of SSIM(A,F) and SSIM(B,F), so in [-1, 1]
    and 1 for F = A = B. ``benchmark`` (CDDFuse ``Evaluator.SSIM``) scikit-image's
    ``structural_similarity`` as called on float images before scikit-image 0.19 made
    ``data_range`` mandatory: ``data_range = 2`` (the float dtype range -1..1) whatever the data,
    7-wide uniform window, sample covariance, **summed** over sources (F = A = B gives 2).
    ``vifb`` Wang's SSIM with ``L = 255``, summed over sources.

    3D: volumetric window (11^3, or 7^3 for ``benchmark``) when D is at least the window width,
    otherwise per slice.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    window = SKIMAGE_WINDOW if convention == "benchmark" else GAUSSIAN_SIZE
    require_min_size(a.shape, window, "SSIM")
    if convention == "benchmark":
        pair = _ssim_skimage_legacy
    else:
        scale = 255.0 if convention == "vifb" else data_range
        pair = lambda x, y: _ssim_wang(x, y, scale)  # noqa: E731
    combine = np.mean if convention == "default" else np.sum
    two_sources = lambda a_, b_, f_: float(combine([pair(a_, f_), pair(b_, f_)]))  # noqa: E731
    if a.ndim == 3 and a.shape[0] >= window:
        return two_sources(a, b, f)
    return mean_over_slices(two_sources, a, b, f)


def _downsample(x: np.ndarray) -> np.ndarray:
    """Wang's MS-SSIM step: 2x2 mean with symmetric padding ('same'), keep every other pixel."""
    padded = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), mode="symmetric")
    return 0.25 * (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2])


def _ms_ssim_min_size() -> int:
    size = GAUSSIAN_SIZE
    for _ in MS_SSIM_WEIGHTS[1:]:
        size = 2 * size - 1
    return size


def _ms_ssim_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    kernel, (c1, c2) = gaussian_kernel(GAUSSIAN_SIZE, GAUSSIAN_SIGMA), _constants(data_range)
    value = 1.0
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        ssim_map, cs_map, _ = _ssim_maps(x, y, kernel, c1, c2)
        last = level == len(MS_SSIM_WEIGHTS) - 1
        value *= max(float((ssim_map if last else cs_map).mean()), 0.0) ** weight
        if not last:
            x, y = _downsample(x), _downsample(y)
    return value


def multiscale_structural_similarity(a, b, f, convention: str = "default") -> float:
    """MS-SSIM of F against each source, mean over the two sources, in [0, 1].

    Reference: Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image
    quality assessment", Asilomar Conf. Signals, Systems and Computers (2003).

    As Wang's ``msssim.m``: 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
    Gaussian window 11 / sigma 1.5 'valid', 2x2 mean then decimation between scales,
    ``prod_{j<5} mcs_j^{w_j} * mssim_5^{w_5}`` (the last scale uses the mean SSIM map). Negative
    mean contrast-structure terms are clipped at 0 (a fractional power of a negative number is
    undefined). Images need at least 161 pixels along H and W. ``L``: the data range of the
    triple (``default``, ``benchmark``: CDDFuse has no MS-SSIM) or 255 (``vifb``). 3D: per slice.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    require_min_size(a.shape, _ms_ssim_min_size(), "MS-SSIM")
    scale = 255.0 if convention == "vifb" else data_range
    return mean_over_slices(lambda a_, b_, f_: (_ms_ssim_pair(a_, f_, scale) + _ms_ssim_pair(b_, f_, scale)) / 2.0,
                            a, b, f)


def _saliency_share(var_a: np.ndarray, var_b: np.ndarray) -> np.ndarray:
    """``var_a / (var_a + var_b)``, 0.5 where both are 0."""
    total = var_a + var_b
    return np.where(total > 0, var_a / np.where(total > 0, total, 1.0), 0.5)


def _q_y_2d(a, b, f, data_range: float, toolbox: bool) -> float:
    kernel = gaussian_kernel(Q_Y_SIZE, GAUSSIAN_SIGMA)
    c1, c2 = (Q_Y_TOOLBOX_C, Q_Y_TOOLBOX_C) if toolbox else _constants(data_range)
    options = {"exact_flat": toolbox}
    ssim_ab, _, stats_ab = _ssim_maps(a, b, kernel, c1, c2, **options)
    ssim_af, _, _ = _ssim_maps(a, f, kernel, c1, c2, **options)
    ssim_bf, _, _ = _ssim_maps(b, f, kernel, c1, c2, **options)
    share = _saliency_share(stats_ab.var_x, stats_ab.var_y)
    weighted = share * ssim_af + (1.0 - share) * ssim_bf
    return float(np.where(ssim_ab >= Q_Y_SIMILAR, weighted, np.maximum(ssim_af, ssim_bf)).mean())


def q_y(a, b, f, convention: str = "default") -> float:
    """Q_Y: Yang's SSIM-based fusion metric, in [-1, 1].

    Reference: C. Yang, J.-Q. Zhang, X.-R. Wang, X. Liu, "A novel similarity based quality metric
    for image fusion", Inf. Fusion 9 (2008).

    Per 7x7 window (Gaussian, sigma 1.5, 'valid'): where SSIM(A,B) >= 0.75 the sources are
    redundant and the score is ``lam SSIM(A,F) + (1 - lam) SSIM(B,F)``, ``lam = s_A^2 / (s_A^2 +
    s_B^2)`` (0.5 when both are 0); elsewhere ``max(SSIM(A,F), SSIM(B,F))``; Q_Y is the mean.

    Conventions: ``default`` SSIM constants from the data range of the triple. ``benchmark``
    Liu et al.'s toolbox (``metricYang.m``): ``C1 = C2 = 2e-16``; the variance and covariance of
    windows where an image is constant are set to exactly 0 so those windows do not turn round-off
    into noise. ``vifb`` = ``default``. 3D: per slice.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    require_min_size(a.shape, Q_Y_SIZE, "Q_Y")
    toolbox = convention == "benchmark"
    return mean_over_slices(lambda a_, b_, f_: _q_y_2d(a_, b_, f_, data_range, toolbox), a, b, f)


def _q_w_2d(a, b, f, data_range: float, toolbox: bool) -> float:
    """Piella's weighted fusion quality index (see :func:`q_w`)."""
    kernel, (c1, c2) = gaussian_kernel(GAUSSIAN_SIZE, GAUSSIAN_SIGMA), _constants(data_range)
    ssim_af, _, stats_a = _ssim_maps(a, f, kernel, c1, c2)
    ssim_bf, _, stats_b = _ssim_maps(b, f, kernel, c1, c2)
    var_a, var_b = stats_a.var_x, stats_b.var_x
    if toolbox:  # metricPeilla.m: windows flat in both sources count with variance 0.5 each
        both_flat = (var_a + var_b) == 0
        var_a, var_b = var_a + 0.5 * both_flat, var_b + 0.5 * both_flat
    share = _saliency_share(var_a, var_b)
    weight = np.maximum(var_a, var_b)
    weight = weight / weight.sum() if weight.sum() > 0 else np.full(weight.shape, 1.0 / weight.size)
    return float((weight * (share * ssim_af + (1.0 - share) * ssim_bf)).sum())


def _edge_map(x: np.ndarray, toolbox: bool) -> np.ndarray:
    if toolbox:  # filter2 with Prewitt kernels, zero padding
        gx = ndimage.prewitt(x, axis=1, mode="constant")
        gy = ndimage.prewitt(x, axis=0, mode="constant")
        return np.sqrt(gx * gx + gy * gy)
    return np.sqrt(sum(g * g for g in sobel_components(x, mode="nearest")))


def _joint_range(*images: np.ndarray) -> float:
    span = max(float(x.max()) for x in images) - min(float(x.min()) for x in images)
    return span if span > 0 else 1.0


def _q_e_2d(a, b, f, data_range: float, toolbox: bool) -> float:
    edges = [_edge_map(x, toolbox) for x in (a, b, f)]
    edge_range = 255.0 if toolbox else _joint_range(*edges)
    return _q_w_2d(a, b, f, data_range, toolbox) * _q_w_2d(*edges, edge_range, toolbox)


def _piella(a, b, f, convention: str, metric: str, q_2d) -> float:
    convention = check_convention(convention)
    a, b, f, data_range = prepare_triple(a, b, f)
    require_min_size(a.shape, GAUSSIAN_SIZE, metric)
    toolbox = convention == "benchmark"
    scale = 255.0 if toolbox else data_range
    return mean_over_slices(lambda a_, b_, f_: q_2d(a_, b_, f_, scale, toolbox), a, b, f)


def q_w(a, b, f, convention: str = "default") -> float:
    """Q_W: Piella's weighted fusion quality index, in [-1, 1].

    Reference: G. Piella, H. Heijmans, "A new quality metric for image fusion", ICIP (2003).

    ``Q_W = sum_w c(w) [lam(w) Q(A,F|w) + (1 - lam(w)) Q(B,F|w)]`` with the saliency of a window
    its local variance, ``lam = s_A / (s_A + s_B)`` (0.5 when both are 0) and
    ``c(w) = max(s_A, s_B) / sum_w' max(s_A, s_B)`` (uniform when the sources are flat
    everywhere). As in Liu et al.'s toolbox (``metricPeilla.m``), the local quality ``Q`` is
    Wang's SSIM (Gaussian 11, sigma 1.5, 'valid') rather than the constant-free universal index,
    which is undefined on flat windows.

    Conventions: ``default`` SSIM constants from the data range of the triple. ``benchmark`` the
    toolbox: ``L = 255``, and windows flat in both sources get variance 0.5 each (weight 0.5).
    ``vifb`` = ``default``. 3D: per slice.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    return _piella(a, b, f, convention, "Q_W", _q_w_2d)


def q_e(a, b, f, convention: str = "default") -> float:
    """Q_E: Piella's edge-dependent fusion quality index, ``Q_W(A,B,F) * Q_W(A',B',F')``.

    Reference: G. Piella, H. Heijmans, "A new quality metric for image fusion", ICIP (2003), with
    ``alpha = 1`` in the form of Liu et al.'s survey (IEEE TPAMI 34, 2012):
    ``Q_E = Q_W(A,B,F) Q_W(A',B',F')^alpha``, primes denoting edge images.

    Conventions: ``default`` edge images are Sobel gradient magnitudes (replicated borders), their
    SSIM constants from the joint range of the three edge images. ``benchmark`` the toolbox:
    Prewitt magnitudes with zero padding and ``L = 255`` (``metricPeilla.m``'s ``Qe`` uses an
    undefined ``Q``; we use its ``Q_W`` there). ``vifb`` = ``default``. 3D: per slice.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    return _piella(a, b, f, convention, "Q_E", _q_e_2d)
