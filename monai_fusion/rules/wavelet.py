"""Discrete-wavelet-transform fusion with orthogonal wavelets, in torch.

The transform: a multilevel separable DWT with periodic extension ("periodization"): each level
filters every spatial axis with the low-pass ``h`` and high-pass ``g[k] = (-1)^k h[L-1-k]`` of
an orthogonal wavelet and keeps every second sample, giving one approximation and
``2^d - 1`` detail subbands (3 in 2D, 7 in 3D). Because the filter bank is orthogonal and
periodic, synthesis is the exact transpose of analysis and reconstruction is perfect up to
rounding. Coefficients are identical to PyWavelets' ``wavedecn(..., mode="periodization")``
(same filters and alignment), which the tests check.

Borders: plain periodization treats opposite borders as neighbours and would put false edges
(and false decisions) there, so the fusion rule first mirrors each axis outward by the filters'
reach, ``(L - 1) * (2**levels - 1)`` voxels rounded up to whole ``2**levels`` blocks (24 for db2
at 3 levels, so the image keeps its dyadic alignment), pads the far end up to a multiple of
``2**levels``, and crops after reconstruction: the wrap-around then only ever joins two
mirrored margins, out of reach of the image.

Haar and Daubechies-2 (db2, 4 taps) are built in; any other orthogonal PyWavelets wavelet
(``"db4"``, ``"sym4"``, ``"coif1"``...) can be named when PyWavelets is installed.

Fusion (Li, Manjunath & Mitra 1995): approximation averaged; in each detail subband the
coefficient with the larger magnitude is chosen and the decision map goes through consistency
verification (a majority filter in a small window of the subband).
"""

from __future__ import annotations

import math

import torch

from monai_fusion.errors import InputError
from monai_fusion.rules.filters import pad_axis, take
from monai_fusion.rules.inputs import check_levels, check_window, prepare_pair
from monai_fusion.rules.result import FusionResult, make_result
from monai_fusion.rules.selection import blend, choose_max, consistency_verification, noise_level

__all__ = ["wavelet_filters", "dwt_decompose", "dwt_reconstruct", "dwt"]

_SQRT3 = math.sqrt(3.0)
_BUILT_IN = {
    "haar": [1.0 / math.sqrt(2.0)] * 2,
    "db1": [1.0 / math.sqrt(2.0)] * 2,
    "db2": [(1 + _SQRT3) / (4 * math.sqrt(2.0)), (3 + _SQRT3) / (4 * math.sqrt(2.0)),
            (3 - _SQRT3) / (4 * math.sqrt(2.0)), (1 - _SQRT3) / (4 * math.sqrt(2.0))],
}


def _low_pass(name: str) -> list[float]:
    if name in _BUILT_IN:
        return _BUILT_IN[name]
    try:
        import pywt
    except ImportError:  # pragma: no cover - PyWavelets is a dependency
        raise InputError(f"wavelet {name!r} needs PyWavelets; use 'haar' or 'db2'") from None
    if name not in pywt.wavelist(kind="discrete"):
        raise InputError(f"unknown wavelet {name!r}; use 'haar', 'db2' or an orthogonal PyWavelets name such as 'db4'")
    wavelet = pywt.Wavelet(name)
    if not wavelet.orthogonal:
        raise InputError(f"wavelet {name!r} is not orthogonal; use 'haar', 'db2', 'dbN', 'symN' or 'coifN'")
    return list(wavelet.rec_lo)


def wavelet_filters(name: str) -> tuple[list[float], list[float]]:
    """The (low-pass, high-pass) reconstruction filters of an orthogonal wavelet.

    Example:
        >>> low, high = wavelet_filters("haar")
        >>> [round(v, 4) for v in high]
        [0.7071, -0.7071]
    """
    low = _low_pass(name)
    length = len(low)
    high = [(-1) ** k * low[length - 1 - k] for k in range(length)]
    return low, high


def _analyse_axis(x: torch.Tensor, axis: int, low, high) -> tuple[torch.Tensor, torch.Tensor]:
    n, length = x.shape[axis], len(low)
    shift = length // 2 - 1  # aligns with PyWavelets' periodization
    padded = pad_axis(x, axis, shift, length - 1 - shift, mode="circular")
    approx = detail = None
    for k in range(length):
        tap = take(padded, axis, k, n // 2, step=2)
        approx = tap * low[k] if approx is None else approx.add_(tap, alpha=low[k])
        detail = tap * high[k] if detail is None else detail.add_(tap, alpha=high[k])
    return approx, detail


def _synthesise_axis(approx: torch.Tensor, detail: torch.Tensor, axis: int, low, high) -> torch.Tensor:
    # x[2j + p] = sum_m approx[j - m] h[2m + p + s] + detail[j - m] g[2m + p + s], indices periodic
    half, length = approx.shape[axis], len(low)
    shift = length // 2 - 1
    reach_back, reach_ahead = (length - 1 - shift) // 2, (shift + 1) // 2
    pad = lambda t: pad_axis(t, axis, reach_back, reach_ahead, mode="circular")  # noqa: E731
    padded_approx, padded_detail = pad(approx), pad(detail)
    phases = []
    for parity in (0, 1):
        out = torch.zeros_like(approx)
        for m in range(-reach_ahead, reach_back + 1):
            k = 2 * m + parity + shift
            if 0 <= k < length:
                start = reach_back - m
                out.add_(take(padded_approx, axis, start, half), alpha=low[k])
                out.add_(take(padded_detail, axis, start, half), alpha=high[k])
        phases.append(out)
    return torch.stack(phases, dim=axis + 1).flatten(axis, axis + 1)


def _analyse(x: torch.Tensor, low, high) -> list[torch.Tensor]:
    """One level: the 2^d subbands, index bit (d - 1 - axis) set where that axis is high-passed."""
    bands = [x]
    for axis in range(1, x.ndim):
        bands = [part for band in bands for part in _analyse_axis(band, axis, low, high)]
    return bands


def _synthesise(bands: list[torch.Tensor], low, high) -> torch.Tensor:
    for axis in reversed(range(1, bands[0].ndim)):
        bands = [_synthesise_axis(bands[i], bands[i + 1], axis, low, high) for i in range(0, len(bands), 2)]
    return bands[0]


def dwt_decompose(x: torch.Tensor, levels: int, wavelet: str = "db2") -> list:
    """Multilevel DWT of a ``(C, *spatial)`` tensor whose sizes are multiples of ``2**levels``.

    Returns ``[details_level_1 (finest), ..., details_level_L, approximation]`` where each
    ``details`` is the list of ``2^d - 1`` subbands in PyWavelets' ``wavedecn`` key order
    (``'ad', 'da', 'dd'`` in 2D, 'a' low-pass and 'd' high-pass per axis).
    """
    low, high = wavelet_filters(wavelet)
    levels_out = []
    for _ in range(levels):
        bands = _analyse(x, low, high)
        levels_out.append(bands[1:])
        x = bands[0]
    return levels_out + [x]


def dwt_reconstruct(coefficients: list, wavelet: str = "db2") -> torch.Tensor:
    """Invert :func:`dwt_decompose` (perfect reconstruction up to rounding)."""
    low, high = wavelet_filters(wavelet)
    x = coefficients[-1]
    for details in reversed(coefficients[:-1]):
        x = _synthesise([x, *details], low, high)
    return x


def _mirror_pad(x: torch.Tensor, margin: int, multiple: int) -> torch.Tensor:
    """Mirror ``margin`` voxels onto both ends of every spatial axis, then pad up to a ``multiple``."""
    for axis in range(1, x.ndim):
        extra = -(x.shape[axis] + 2 * margin) % multiple
        x = pad_axis(x, axis, margin, margin + extra, mode="reflect")
    return x


def _crop(x: torch.Tensor, margin: int, shape: tuple[int, ...]) -> torch.Tensor:
    return x[(slice(None), *(slice(margin, margin + n) for n in shape))]


def _finest_weight(decisions, details_a, details_b, margin: int, shape) -> torch.Tensor:
    """Energy-weighted mean of the finest level's subband decisions, at full resolution."""
    magnitude = [da.abs() + db.abs() for da, db in zip(details_a, details_b)]
    total = sum(magnitude)
    votes = sum(d * m for d, m in zip(decisions, magnitude))
    weight = torch.where(total > 0, votes / total.clamp(min=torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))
    for axis in range(1, weight.ndim):
        weight = weight.repeat_interleave(2, dim=axis)
    return _crop(weight, margin, shape)


def dwt(a, b, levels: int = 3, wavelet: str = "db2", consistency_window: int = 3) -> FusionResult:
    """Fuse two sources in the wavelet domain: approximation averaged, details by max-abs.

    Args:
        a, b: channel-first ``(C, H, W)`` or ``(C, D, H, W)`` sources of identical shape, on
            comparable intensity scales (0..1 recommended). Not rescaled.
        levels: decomposition depth; every spatial size must be at least ``2 * 2**levels``.
        wavelet: ``"haar"``, ``"db2"`` (default) or another orthogonal PyWavelets wavelet.
        consistency_window: odd width of the majority filter applied to each subband's decision
            map (1 disables consistency verification).

    Returns:
        :class:`FusionResult`. The DWT has no full-resolution decision, so ``weight`` is a proxy:
        the finest level's subband decisions (1: A's coefficient, 0: B's, 0.5: tie) averaged
        with the subbands' coefficient magnitudes ``|a| + |b|`` as weights, repeated to full
        resolution (each finest-level coefficient covers a 2x2(x2) block). It is 0.5 where
        neither source has fine detail.

    Fusing an image with itself returns it (up to rounding); constant inputs give their mean.

    Example:
        >>> x = torch.rand(1, 32, 32, dtype=torch.float64)
        >>> bool(torch.allclose(dwt(x, x).fused, x))
        True
    """
    ta, tb, dtype = prepare_pair(a, b)
    shape = tuple(ta.shape[1:])
    check_levels(levels, shape, 2, "dwt")
    check_window(consistency_window, "consistency_window")
    wavelet_filters(wavelet)  # an unknown name fails here, before any work
    block = 2**levels
    reach = (len(wavelet_filters(wavelet)[0]) - 1) * (block - 1)
    margin = -(-reach // block) * block  # whole blocks keep the image's dyadic alignment
    coeffs_a = dwt_decompose(_mirror_pad(ta, margin, block), levels, wavelet)
    coeffs_b = dwt_decompose(_mirror_pad(tb, margin, block), levels, wavelet)
    tolerance = noise_level(ta, tb)
    fused, weight = [], None
    for details_a, details_b in zip(coeffs_a[:-1], coeffs_b[:-1]):
        decisions = [consistency_verification(choose_max(da.abs(), db.abs(), tolerance), consistency_window)
                     for da, db in zip(details_a, details_b)]
        fused.append([blend(da, db, d) for da, db, d in zip(details_a, details_b, decisions)])
        if weight is None:
            weight = _finest_weight(decisions, details_a, details_b, margin, shape)
    fused.append(0.5 * coeffs_a[-1] + 0.5 * coeffs_b[-1])
    return make_result(_crop(dwt_reconstruct(fused, wavelet), margin, shape), weight, dtype)
