"""Visual information fidelity: VIF (pixel-domain VIFp, per source, summed) and VIFF of Han et al.

Both rest on the pixel-domain VIF of Sheikh & Bovik (``vifp_mscale.m``): four scales with
Gaussian windows of N = 17, 9, 5, 3 taps (sigma N/5, 'valid'), the image low-passed and decimated
by 2 before scales 2-4, and per window the gain ``g = s_XF / s_X^2`` and distortion variance
``s_V^2 = s_F^2 - g s_XF`` with the published guards (flat windows, negative gain, floor 1e-10).
Per scale and window: ``VID = log10(1 + g^2 s_X^2 / (s_V^2 + s_N^2))`` (information kept in F) and
``VIND = log10(1 + s_X^2 / s_N^2)`` (information in the source). ``s_N^2`` is a visual noise
variance on the 0..255 scale, so the ``default`` convention first rescales the triple to 0..255
by its data range (making both metrics independent of the intensity unit); ``benchmark`` and
``vifb`` use the values as given (the published code assumes 0..255). Images need at least 41
pixels along H and W.

3D volumes: slice by slice along axis 0, with the sums over windows pooled over all slices.
"""

from __future__ import annotations

import numpy as np

from monai_fusion.metrics._filters import filter_valid, gaussian_kernel, local_stats
from monai_fusion.metrics._inputs import Triple, check_convention, prepare_triple, require_min_size

__all__ = ["visual_information_fidelity", "viff"]

N_SCALES = 4
VIFP_NOISE = 2.0
VIFF_NOISE = 0.005 * 255.0 * 255.0
VIFF_SCALE_WEIGHTS = np.array([1.0, 0.0, 0.15, 1.0]) / 2.15
VIFF_C = 1e-7
_EPS = 1e-10
MIN_SIZE = 41


def _vifp_scales(ref: np.ndarray, dist: np.ndarray, noise: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scale: (VID map, VIND map, gain map) of a 2D reference/distorted pair."""
    out = []
    for scale in range(1, N_SCALES + 1):
        n = 2 ** (N_SCALES - scale + 1) + 1
        kernel = gaussian_kernel(n, n / 5.0)
        if scale > 1:
            ref = filter_valid(ref, kernel)[::2, ::2]
            dist = filter_valid(dist, kernel)[::2, ::2]
        s = local_stats(ref, dist, kernel, exact_flat=True)
        var_r, var_d, cov = s.var_x, s.var_y, s.cov_xy
        g = cov / (var_r + _EPS)
        sv_sq = var_d - g * cov
        flat_ref = var_r < _EPS
        g = np.where(flat_ref, 0.0, g)
        sv_sq = np.where(flat_ref, var_d, sv_sq)
        var_r = np.where(flat_ref, 0.0, var_r)
        flat_dist = var_d < _EPS
        g = np.where(flat_dist, 0.0, g)
        sv_sq = np.where(flat_dist, 0.0, sv_sq)
        negative = g < 0
        sv_sq = np.where(negative, var_d, sv_sq)
        g = np.where(negative, 0.0, g)
        sv_sq = np.maximum(sv_sq, _EPS)
        vid = np.log10(1.0 + g * g * var_r / (sv_sq + noise))
        vind = np.log10(1.0 + var_r / noise)
        out.append((vid, vind, g))
    return out


def _prepared(a, b, f, convention: str, metric: str) -> Triple:
    convention = check_convention(convention)
    triple = prepare_triple(a, b, f)
    require_min_size(triple.a.shape, MIN_SIZE, metric)
    if convention == "default":
        scale = 255.0 / triple.data_range
        triple = Triple(triple.a * scale, triple.b * scale, triple.f * scale, 255.0)
    return triple


def _slices(x: np.ndarray) -> list[np.ndarray]:
    return [x] if x.ndim == 2 else list(x)


def visual_information_fidelity(a, b, f, convention: str = "default") -> float:
    """VIF = VIFp(A, F) + VIFp(B, F), pixel-domain visual information fidelity summed over sources.

    Reference: H. R. Sheikh, A. C. Bovik, "Image information and visual quality", IEEE Trans.
    Image Process. 15 (2006); the fusion use (summed over sources) follows the CDDFuse
    ``Evaluator`` (whose function is named ``VIFF`` but computes VIFp; VIFF is :func:`viff`).

    ``VIFp(X, F) = sum VID / sum VIND`` over scales and windows, noise variance 2. A source with
    no local variance anywhere (``sum VIND = 0``) carries no visual information and scores 1, as
    the CDDFuse evaluator's NaN rule does. F = X gives 1 per source, so F = A = B gives 2.
    Conventions: see the module docstring (``default`` rescales to 0..255 by the data range).

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    a, b, f, _ = _prepared(a, b, f, convention, "VIF")
    total = 0.0
    for source in (a, b):
        vid = vind = 0.0
        for x, y in zip(_slices(source), _slices(f)):
            for num_map, den_map, _ in _vifp_scales(x, y, VIFP_NOISE):
                vid += float(num_map.sum())
                vind += float(den_map.sum())
        total += vid / vind if vind > 0 else 1.0
    return total


def viff(a, b, f, convention: str = "default") -> float:
    """VIFF of Han, Cai, Cao & Xu, a multi-source fusion metric built on VIF.

    Reference: Y. Han, Y. Cai, Y. Cao, X. Xu, "A new image fusion performance metric based on
    visual information fidelity", Inf. Fusion 14 (2013); as the authors' ``VIFF_Public.m``:
    visual noise variance ``0.005 * 255^2``; at each scale and pixel the source with the smaller
    gain ``g`` is taken, ``VIFF_s = sum(VID + C) / sum(VIND + C)`` over those choices
    (``C = 1e-7``), and ``VIFF = sum_s p_s VIFF_s`` with ``p = (1, 0, 0.15, 1) / 2.15``. A
    featureless triple gives 1. Not the same metric as VIF (:func:`visual_information_fidelity`).
    Conventions: see the module docstring.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    a, b, f, _ = _prepared(a, b, f, convention, "VIFF")
    vid = np.zeros(N_SCALES)
    vind = np.zeros(N_SCALES)
    for xa, xb, xf in zip(_slices(a), _slices(b), _slices(f)):
        for s, ((vid_a, vind_a, g_a), (vid_b, vind_b, g_b)) in enumerate(
            zip(_vifp_scales(xa, xf, VIFF_NOISE), _vifp_scales(xb, xf, VIFF_NOISE))
        ):
            take_a = g_a < g_b
            vid[s] += float((np.where(take_a, vid_a, vid_b) + VIFF_C).sum())
            vind[s] += float((np.where(take_a, vind_a, vind_b) + VIFF_C).sum())
    return float((VIFF_SCALE_WEIGHTS * vid / vind).sum())
