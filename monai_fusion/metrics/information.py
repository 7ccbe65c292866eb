"""Information-theoretic metrics on grey-level histograms: MI, NMI and Q_NCIE.

All three are volumetric on 3D input (one histogram over every voxel). Grey levels follow the
schemes of :mod:`monai_fusion.metrics._histograms`. Constant images are handled explicitly: a
constant image has entropy 0 and shares no information with anything, and two constant images
are treated as fully dependent where a normalised score needs a value for 0/0.
"""

from __future__ import annotations

import numpy as np

from monai_fusion.metrics._histograms import grey_levels, mutual_information as _mi
from monai_fusion.metrics._inputs import check_convention, prepare_triple

__all__ = ["mutual_information", "normalized_mutual_information", "q_ncie"]

_MI_SCHEME = {"default": "bins256", "benchmark": "round", "vifb": "minmax_round"}
_MI_BASE = {"default": 2.0, "benchmark": np.e, "vifb": np.e}
_NMI_SCHEME = {"default": "bins256", "benchmark": "round", "vifb": "bins256"}

#: Number of grey levels ``b`` of Q_NCIE (its logarithms are to base b).
NCIE_LEVELS = 256


def mutual_information(a, b, f, convention: str = "default") -> float:
    """MI = MI(A, F) + MI(B, F) from 256-level joint histograms.

    Reference: G. Qu, D. Zhang, P. Yan, "Information measure for performance of image fusion",
    Electron. Lett. 38 (2002).

    Conventions: ``default`` in bits, levels = 256 equal bins over each image's min..max.
    ``benchmark`` (CDDFuse ``Evaluator.MI`` = ``sklearn.metrics.mutual_info_score``) in nats,
    levels = ``round(x)`` on 0..255; identical to scikit-learn for integer-valued images (the
    published tables evaluate PNGs), while scikit-learn on non-integer floats would count every
    distinct value as its own label. ``vifb`` in nats, each image min-max scaled to 0..255 and
    rounded half away from zero (VIFB ``metricsMutinf``).

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    scheme, base = _MI_SCHEME[convention], _MI_BASE[convention]
    levels_f = grey_levels(f, scheme)
    return float(sum(_mi(grey_levels(x, scheme), levels_f, base)[0] for x in (a, b)))


def _normalised_term(levels_x: np.ndarray, levels_f: np.ndarray) -> float:
    mi, h_x, h_f = _mi(levels_x, levels_f)
    if h_x + h_f == 0:  # both constant: each determines the other
        return 1.0
    return 2.0 * mi / (h_x + h_f)


def normalized_mutual_information(a, b, f, convention: str = "default") -> float:
    """NMI = 2 [MI(A,F) / (H(A) + H(F)) + MI(B,F) / (H(B) + H(F))], in [0, 2].

    Reference: M. Hossny, S. Nahavandi, D. Creighton, "Comments on 'Information measure for
    performance of image fusion'", Electron. Lett. 44 (2008).

    Independent of the logarithm base. Levels: ``default`` and ``vifb`` 256 bins over each
    image's min..max, ``benchmark`` ``round(x)`` on 0..255 (as for MI). A term whose two images
    are both constant (0/0) counts as 1.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    scheme = _NMI_SCHEME[convention]
    levels_f = grey_levels(f, scheme)
    return float(sum(_normalised_term(grey_levels(x, scheme), levels_f) for x in (a, b)))


def _rank_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Equal-count rank grid: the i-th smallest of N voxels goes to level ``i * b // N``.

    Ties are broken by raster position (stable sort), so identical images get identical grids.
    """
    flat = x.ravel()
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return ranks * n_levels // flat.size


def _ncc_rank(x: np.ndarray, y: np.ndarray) -> float:
    x_constant, y_constant = x.max() == x.min(), y.max() == y.min()
    if x_constant or y_constant:
        return 1.0 if (x_constant and y_constant) else 0.0
    return _mi(_rank_levels(x, NCIE_LEVELS), _rank_levels(y, NCIE_LEVELS), base=NCIE_LEVELS)[0]


def _ncc_grey(x: np.ndarray, y: np.ndarray) -> float:
    return _mi(grey_levels(x, "minmax_round"), grey_levels(y, "minmax_round"), base=NCIE_LEVELS)[0]


def q_ncie(a, b, f, convention: str = "default") -> float:
    """Q_NCIE: nonlinear correlation information entropy of (A, B, F), in [1 - log_b 3, 1].

    References: Q. Wang, Y. Shen, J. Jin, "Performance evaluation of image fusion techniques", in
    T. Stathaki (ed.), Image Fusion: Algorithms and Applications, Academic Press (2008), ch. 19;
    Q. Wang, Y. Shen, J. Q. Zhang, "A nonlinear correlation measure for multivariable data set",
    Physica D 200 (2005).

    ``NCIE = 1 + sum_i (l_i / 3) log_b (l_i / 3)``, ``l_i`` the eigenvalues of the 3x3 matrix of
    nonlinear correlation coefficients ``NCC(X, Y) = H(X) + H(Y) - H(X, Y)`` (logs to base
    b = 256) with ones on its diagonal. Eigenvalues at or below 0 contribute 0.

    Conventions: ``default`` follows the paper: each image is ranked into b equal-count levels
    (ties broken by raster position), so ``H(X) = 1`` and ``NCC(X, X) = 1`` (exactly when the
    voxel count N is a multiple of 256, as for 256x256 slices; otherwise levels hold
    ``floor(N/b)`` or ``ceil(N/b)`` voxels and ``NCC(X, X)`` is slightly below 1); a constant
    image has NCC 0 with a non-constant one and 1 with another constant one. ``benchmark`` and
    ``vifb`` follow Liu et al.'s toolbox (``metricWang.m``, used by published tables): plain
    grey-level histograms after min-max scaling to 0..255 (``normalize1``), so ``NCC(X, X)`` is
    ``H(X) / 8 bits`` rather than 1.

    Args:
        a, b: source images, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        f: fused image, same shape.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    a, b, f, _ = prepare_triple(a, b, f)
    ncc = _ncc_rank if convention == "default" else _ncc_grey
    c_ab, c_af, c_bf = ncc(a, b), ncc(a, f), ncc(b, f)
    correlation = np.array([[1.0, c_ab, c_af], [c_ab, 1.0, c_bf], [c_af, c_bf, 1.0]])
    share = np.linalg.eigvalsh(correlation) / 3.0
    share = share[share > 0]
    h_r = -float((share * np.log(share)).sum()) / np.log(NCIE_LEVELS)
    return float(1.0 - h_r)
