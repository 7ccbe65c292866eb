"""Grey-level quantisation, histograms and the entropies built on them.

Histogram metrics (EN, MI, NMI, Q_NCIE) need every voxel mapped to one of 256 grey levels. The
published tools disagree on how, so each scheme is named:

* ``"bins256"`` (our default): 256 equal-width bins over the image's own ``[min, max]``,
  ``level = floor((x - min) / (max - min) * 256)`` clipped to 255; a constant image is one level.
  Integer-valued images spanning at most 256 values get one level per value, so uint8 data and
  the same values as floats give identical histograms.
* ``"round"`` (CDDFuse ``Evaluator``): ``clip(round(x), 0, 255)`` with numpy's round-half-to-even.
  The evaluator's ``np.uint8`` cast would wrap values outside 0..255; we clip them instead.
* ``"floor"`` (VIFB ``metricsEntropy``): ``clip(floor(x), 0, 255)``.
* ``"minmax_round"`` (VIFB ``metricsMutinf``, Liu's ``normalize1``): rescale to 0..1 by the
  image's min and max, then ``round(255 x)`` with MATLAB's round-half-away-from-zero; a constant
  image is all level 0 (MATLAB would divide 0 by 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LEVELS", "grey_levels", "entropy", "mutual_information", "joint_counts"]

LEVELS = 256


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _unit_range(x: np.ndarray) -> np.ndarray | None:
    low, high = float(x.min()), float(x.max())
    if high == low:
        return None
    return (x - low) / (high - low)


def grey_levels(x: np.ndarray, scheme: str = "bins256") -> np.ndarray:
    """Flat int64 array of grey levels in ``0..255`` (see the module docstring for ``scheme``)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if scheme == "bins256":
        unit = _unit_range(x)
        if unit is None:
            return np.zeros(x.size, dtype=np.int64)
        return np.minimum(np.floor(unit * LEVELS), LEVELS - 1).astype(np.int64)
    if scheme == "round":
        return np.clip(np.round(x), 0, LEVELS - 1).astype(np.int64)
    if scheme == "floor":
        return np.clip(np.floor(x), 0, LEVELS - 1).astype(np.int64)
    if scheme == "minmax_round":
        unit = _unit_range(x)
        if unit is None:
            return np.zeros(x.size, dtype=np.int64)
        return _round_half_away(unit * (LEVELS - 1)).astype(np.int64)
    raise ValueError(f"unknown grey-level scheme {scheme!r}")


def _plogp_sum(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def entropy(levels: np.ndarray, base: float = 2.0) -> float:
    """Shannon entropy of the grey-level histogram of ``levels``, in units of log ``base``."""
    counts = np.bincount(levels, minlength=LEVELS).astype(np.float64)
    return float(_plogp_sum(counts / counts.sum()) / np.log(base))


def joint_counts(levels_x: np.ndarray, levels_y: np.ndarray, n_levels: int = LEVELS) -> np.ndarray:
    """``n_levels x n_levels`` joint histogram (rows: ``levels_x``)."""
    flat = np.bincount(levels_x * n_levels + levels_y, minlength=n_levels * n_levels)
    return flat.reshape(n_levels, n_levels).astype(np.float64)


def mutual_information(levels_x: np.ndarray, levels_y: np.ndarray, base: float = 2.0) -> tuple[float, float, float]:
    """``(MI(X;Y), H(X), H(Y))`` from the joint grey-level histogram, in units of log ``base``.

    MI is ``sum p(x,y) log(p(x,y) / (p(x) p(y)))`` over occupied cells, clipped at 0 against
    round-off (as scikit-learn's ``mutual_info_score`` does).
    """
    joint = joint_counts(levels_x, levels_y)
    joint /= joint.sum()
    px, py = joint.sum(axis=1), joint.sum(axis=0)
    rows, cols = np.nonzero(joint)
    p = joint[rows, cols]
    mi = float((p * (np.log(p) - np.log(px[rows]) - np.log(py[cols]))).sum())
    log_base = np.log(base)
    return float(max(mi, 0.0) / log_base), float(_plogp_sum(px) / log_base), float(_plogp_sum(py) / log_base)
