"""The metric registry: names as published tables use them, one uniform call signature.

Every entry of :data:`METRICS` is called as ``METRICS[name](a, b, f, convention="default")`` and
returns a Python float. No-reference metrics (:data:`NO_REFERENCE`) ignore ``a`` and ``b``, which
may then be ``None``.
"""

from __future__ import annotations

from typing import Callable, Iterable

from monai_fusion.errors import InputError
from monai_fusion.metrics import contrast, feature_mi, fidelity, gradient, information, no_reference, phase
from monai_fusion.metrics import structural, visual_information
from monai_fusion.metrics._inputs import check_convention, prepare_image, prepare_triple

__all__ = ["METRICS", "NO_REFERENCE", "HIGHER_IS_BETTER", "compute_metrics"]

MetricFunction = Callable[..., float]


def _no_reference(metric: Callable[..., float]) -> MetricFunction:
    def call(a, b, f, convention: str = "default") -> float:
        return metric(f, convention=convention)

    call.__name__ = metric.__name__
    call.__doc__ = metric.__doc__
    return call


_NO_REFERENCE_FUNCTIONS = {
    "EN": no_reference.entropy,
    "SD": no_reference.standard_deviation,
    "SF": no_reference.spatial_frequency,
    "AG": no_reference.average_gradient,
    "EI": no_reference.edge_intensity,
}

_REFERENCE_FUNCTIONS = {
    "MI": information.mutual_information,
    "FMI_pixel": feature_mi.fmi_pixel,
    "FMI_edge": feature_mi.fmi_edge,
    "FMI_gradient": feature_mi.fmi_gradient,
    "FMI_dct": feature_mi.fmi_dct,
    "FMI_wavelet": feature_mi.fmi_wavelet,
    "NMI": information.normalized_mutual_information,
    "Q_NCIE": information.q_ncie,
    "SSIM": structural.structural_similarity,
    "MS_SSIM": structural.multiscale_structural_similarity,
    "MSE": fidelity.mean_squared_error,
    "RMSE": fidelity.root_mean_squared_error,
    "PSNR": fidelity.peak_signal_to_noise_ratio,
    "Qabf": gradient.qabf,
    "VIF": visual_information.visual_information_fidelity,
    "VIFF": visual_information.viff,
    "SCD": fidelity.sum_of_correlations_of_differences,
    "CC": fidelity.correlation_coefficient,
    "Q_Y": structural.q_y,
    "Q_CB": contrast.q_cb,
    "Q_W": structural.q_w,
    "Q_E": structural.q_e,
    "Q_P": phase.q_p,
}

#: name -> ``f(a, b, f, convention="default") -> float``, in the order of the documentation table.
METRICS: dict[str, MetricFunction] = {
    **{name: _no_reference(fn) for name, fn in _NO_REFERENCE_FUNCTIONS.items()},
    **_REFERENCE_FUNCTIONS,
}

#: Names of the metrics that look at the fused image only.
NO_REFERENCE: frozenset[str] = frozenset(_NO_REFERENCE_FUNCTIONS)

#: ``True`` where a larger value means a better fusion (only the error metrics are lower-better).
HIGHER_IS_BETTER: dict[str, bool] = {name: name not in ("MSE", "RMSE") for name in METRICS}


def _check_names(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(METRICS)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown fusion metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(METRICS)}")
    return names


def compute_metrics(a, b, f, names: Iterable[str] | None = None, convention: str = "default") -> dict[str, float]:
    """Several metrics of one (A, B, F) triple, checked once up front.

    Args:
        a, b: source images; ``None`` allowed only when every requested metric is no-reference.
        f: fused image; 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        names: metric names (keys of :data:`METRICS`); all of them by default.
        convention: one of ``"default"``, ``"benchmark"``, ``"vifb"``.

    Returns:
        ``{name: value}`` in the order of ``names``.

    Example:
        >>> import numpy as np
        >>> a = np.tile(np.arange(64.0), (64, 1)); b = a.T.copy()
        >>> values = compute_metrics(a, b, (a + b) / 2, names=["EN", "CC"])
        >>> round(values["CC"], 4)
        0.7071
    """
    names = _check_names(names)
    check_convention(convention)
    if all(n in NO_REFERENCE for n in names):
        prepare_image(f)
    else:
        prepare_triple(a, b, f)
    return {name: METRICS[name](a, b, f, convention=convention) for name in names}
