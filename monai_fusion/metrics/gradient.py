"""Q^AB/F: Xydeas & Petrovic's edge-information transfer metric.

Reference: C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure", Electron.
Lett. 36 (2000). For each source X and every pixel, with Sobel strength ``g`` and orientation:

* relative strength ``G = min(g_X, g_F) / max(g_X, g_F)`` and orientation agreement
  ``A = 1 - d / (pi / 2)``, ``d`` the angle between the two orientations;
* ``Q_XF = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da)))`` with Tg = 0.9994,
  kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8;
* ``Q^AB/F = sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B)`` (weights ``g^L``, L = 1), in
  ``[0, Q_max]``, ``Q_max = Q(G=1, A=1) ~ 0.9748`` for perfect transfer.

When the sources have no edges at all (sum of strengths 0) nothing can be lost: Q^AB/F = Q_max.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from monai_fusion.metrics._filters import sobel_components
from monai_fusion.metrics._inputs import check_convention, prepare_triple

__all__ = ["qabf", "QABF_CONSTANTS", "QABF_PERFECT"]

QABF_CONSTANTS = {"Tg": 0.9994, "kg": -15.0, "Dg": 0.5, "Ta": 0.9879, "ka": -22.0, "Da": 0.8}

# MATLAB's Qabf.m: x response to h3 and y response to h1, both with conv2(..., 'same')
_H1 = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
_H3 = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _sigmoid_product(strength_ratio: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    c = QABF_CONSTANTS
    q_g = c["Tg"] / (1.0 + np.exp(c["kg"] * (strength_ratio - c["Dg"])))
    q_a = c["Ta"] / (1.0 + np.exp(c["ka"] * (orientation - c["Da"])))
    return q_g * q_a


QABF_PERFECT = float(_sigmoid_product(np.array(1.0), np.array(1.0)))


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num / np.where(den != 0, den, 1.0)


def _transfer_default(cx: list[np.ndarray], cf: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(Q_XF, g_X) with min/max strength ratio and the angle between undirected orientations."""
    gx = np.sqrt(sum(c * c for c in cx))
    gf = np.sqrt(sum(c * c for c in cf))
    high = np.maximum(gx, gf)
    strength = np.where(high > 0, _safe_ratio(np.minimum(gx, gf), high), 1.0)
    # angle between the gradient lines, atan2(|x cross f|, |x . f|) in [0, pi/2]: exact for
    # parallel gradients, where arccos of the normalised dot product would lose half the digits
    dot = np.abs(sum(p * q for p, q in zip(cx, cf)))
    if len(cx) == 2:
        cross = np.abs(cx[0] * cf[1] - cx[1] * cf[0])
    else:
        cross = np.sqrt(sum((cx[i] * cf[j] - cx[j] * cf[i]) ** 2 for i, j in ((1, 2), (2, 0), (0, 1))))
    angle = np.where(gx * gf > 0, np.arctan2(cross, dot), np.pi / 2)
    orientation = 1.0 - angle / (np.pi / 2)
    return _sigmoid_product(strength, orientation), gx


def _qabf_default(a, b, f) -> tuple[float, float]:
    ca, cb, cf = (sobel_components(x, mode="nearest") for x in (a, b, f))
    q_af, g_a = _transfer_default(ca, cf)
    q_bf, g_b = _transfer_default(cb, cf)
    return float((q_af * g_a + q_bf * g_b).sum()), float((g_a + g_b).sum())


def _sobel_matlab(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strength and ``atan`` orientation exactly as ``Qabf.m`` (pi/2 where the x response is 0)."""
    sx = ndimage.convolve(x, _H3, mode="constant")
    sy = ndimage.convolve(x, _H1, mode="constant")
    angle = np.where(sx == 0, np.pi / 2, np.arctan(_safe_ratio(sy, sx)))
    return np.sqrt(sx * sx + sy * sy), angle


def _transfer_matlab(gx, ax, gf, af) -> np.ndarray:
    strength = np.where(gx > gf, _safe_ratio(gf, gx), np.where(gx == gf, gf, _safe_ratio(gx, gf)))
    orientation = 1.0 - np.abs(ax - af) / (np.pi / 2)
    return _sigmoid_product(strength, orientation)


def _qabf_matlab_2d(a, b, f) -> tuple[float, float]:
    (g_a, a_a), (g_b, a_b), (g_f, a_f) = (_sobel_matlab(x) for x in (a, b, f))
    q_af, q_bf = _transfer_matlab(g_a, a_a, g_f, a_f), _transfer_matlab(g_b, a_b, g_f, a_f)
    return float((q_af * g_a + q_bf * g_b).sum()), float((g_a + g_b).sum())


def qabf(a, b, f, convention: str = "default") -> float:
    """Q^AB/F of Xydeas & Petrovic (2000); see the module docstring.

    Conventions:

    * ``default``: Sobel with replicated borders (2D, or the 3D Sobel operator on volumes);
      ``G = min/max`` of the strengths; ``d`` the angle between the two gradient *lines*,
      ``atan2(|grad X x grad F|, |grad X . grad F|)`` in [0, pi/2] (orientation agreement 0 where
      either gradient vanishes), so ``A`` is in [0, 1] and F = A = B gives exactly ``Q_max``. In
      2D this is the paper's ``|alpha_X - alpha_F|`` taken modulo pi (edges have no direction).
    * ``benchmark`` / ``vifb`` (CDDFuse ``Evaluator.Qabf`` = Petrovic's ``Qabf.m`` = VIFB):
      Sobel by ``conv2(X, h, 'same')`` (zero padding), orientation ``atan(s_y / s_x)`` (not
      ``atan2``) with pi/2 where ``s_x = 0``, ``A = 1 - |alpha_X - alpha_F| / (pi/2)`` (can be
      negative: orientations just either side of vertical count as opposite), and the quirk of
      ``Qabf.m`` that ``G = g_F`` (not 1) where ``g_X == g_F``. 3D volumes are summed slice by
      slice: ``sum over slices of the numerators / sum of the denominators``.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    if convention == "default":
        numerator, denominator = _qabf_default(a, b, f)
    elif a.ndim == 2:
        numerator, denominator = _qabf_matlab_2d(a, b, f)
    else:
        parts = np.array([_qabf_matlab_2d(a[k], b[k], f[k]) for k in range(a.shape[0])])
        numerator, denominator = parts.sum(axis=0)
    return float(numerator / denominator) if denominator > 0 else QABF_PERFECT
