"""``FusionQualityMetric``: the fusion metrics as a MONAI ``CumulativeIterationMetric``.

Our bundles stack the two source modalities as channels, so the metric takes the fused batch as
``y_pred`` ``(N, 1, *spatial)`` and the sources as ``y`` ``(N, 2, *spatial)`` (channel 0 = A,
channel 1 = B), 2D or 3D spatial. Each call buffers an ``(N, n_metrics)`` tensor of per-image
values; :meth:`aggregate` reduces each metric's column with MONAI's ``do_metric_reduction``
(NaN-aware, though our metrics never return NaN) and returns ``{name: value}``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from monai_fusion.errors import InputError
from monai_fusion.metrics._inputs import check_convention
from monai_fusion.metrics.registry import _check_names, compute_metrics

__all__ = ["FusionQualityMetric"]

DEFAULT_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")


class FusionQualityMetric(CumulativeIterationMetric):
    """Objective fusion quality of fused images against their two sources.

    Args:
        metrics: names from :data:`monai_fusion.metrics.METRICS`; by default the eight columns of
            the CDDFuse tables (EN, SD, SF, MI, SCD, VIF, Qabf, SSIM).
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see :mod:`monai_fusion.metrics`).
        reduction: MONAI reduction over the batch, applied to each metric separately:
            ``"mean"``/``"sum"``/``"mean_batch"``/``"sum_batch"`` give one value per metric,
            ``"none"`` the per-image values.

    Example:
        >>> import torch
        >>> metric = FusionQualityMetric(metrics=("EN", "CC"))
        >>> sources = torch.rand(2, 2, 32, 32)
        >>> _ = metric(y_pred=sources.mean(dim=1, keepdim=True), y=sources)
        >>> sorted(metric.aggregate())
        ['CC', 'EN']
    """

    def __init__(
        self,
        metrics: Sequence[str] = DEFAULT_METRICS,
        convention: str = "default",
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__()
        self.metric_names = tuple(_check_names(metrics))
        self.convention = check_convention(convention)
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``(N, n_metrics)`` float64 values for a fused batch and its sources."""
        if y is None:
            raise InputError("FusionQualityMetric needs the sources: call metric(y_pred=fused, y=sources)")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise InputError(
                f"y_pred must be fused images shaped (N, 1, *spatial) with 2 or 3 spatial axes, got {tuple(y_pred.shape)}"
            )
        expected = (y_pred.shape[0], 2, *y_pred.shape[2:])
        if tuple(y.shape) != expected:
            raise InputError(f"y must hold the two sources as channels, shaped (N, 2, *spatial) = {expected}, got {tuple(y.shape)}")
        rows = []
        for fused, sources in zip(y_pred, y):
            values = compute_metrics(sources[0], sources[1], fused[0], names=self.metric_names, convention=self.convention)
            rows.append([values[name] for name in self.metric_names])
        return torch.tensor(rows, dtype=torch.float64, device=y_pred.device)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> dict[str, torch.Tensor]:
        """``{name: reduced value}`` over everything buffered since the last :meth:`reset`.

        Args:
            reduction: overrides the reduction given at construction.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise InputError("FusionQualityMetric has no values to aggregate; call it on a batch first")
        out = {}
        for column, name in enumerate(self.metric_names):
            reduced, _ = do_metric_reduction(data[:, column : column + 1].clone(), reduction or self.reduction)
            out[name] = reduced.squeeze(-1) if reduced.ndim else reduced
        return out
