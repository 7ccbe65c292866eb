"""The outcome of a registration: the transform and how the optimisation went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monai_fusion.registration.spatial import SpatialTransform

__all__ = ["RegistrationResult", "LevelReport"]


@dataclass(frozen=True)
class LevelReport:
    """One optimisation run: a stage (model) at one pyramid level."""

    model: str
    shrink: float
    iterations: int
    metric_start: float
    metric_end: float
    samples: int
    stop: str  # "converged", "max_iterations", or why it stopped early


@dataclass
class RegistrationResult:
    """What :func:`~monai_fusion.registration.register` returns.

    Attributes:
        transform: fixed world -> moving world (RAS mm), the resampling direction.
        metric_initial: Mattes mutual information (nats, higher is better) at the start of the
            optimisation (after initialisation), measured by the engine's scoring function at full
            resolution with this registration's settings (bins, masks). Every backend is scored by
            that same function; to compare runs made with different settings, score them with
            :func:`~monai_fusion.registration.evaluate_metric` and one set of options.
        metric_final: the same at the result.
        iterations: iterations per (stage, level), coarse to fine.
        converged: False when the result should not be trusted; ``reason`` says why.
        reason: ``"converged"`` or the problem (no overlap left, metric got worse, degenerate
            transform, iteration limit at the finest level...).
        seconds: wall-clock time of the registration (pyramids, sampling and optimisation; not
            the scoring of ``metric_initial``/``metric_final``).
        backend: ``"torch"``, ``"simpleitk"`` or ``"elastix"``.
        model: the model(s) run, e.g. ``"rigid"`` or ``"rigid+affine"``.
        levels: per-run details (:class:`LevelReport`).
        orientation: what the orientation search chose
            (:class:`~monai_fusion.registration.orientation.OrientationReport`), ``None`` when it was off.
            ``metric_initial`` is measured at the initial alignment before that search.
    """

    transform: SpatialTransform
    metric_initial: float
    metric_final: float
    iterations: tuple[int, ...]
    converged: bool
    reason: str
    seconds: float
    backend: str = "torch"
    model: str = ""
    metric: str = "mattes"
    levels: tuple[LevelReport, ...] = field(default_factory=tuple)
    orientation: Any = None

    def summary(self) -> dict:
        """JSON-friendly record for image metadata (``meta["registration"]``)."""
        linear = self.transform.linear_part()
        record = {
            "model": self.model,
            "backend": self.backend,
            "metric": self.metric,
            "metric_initial": float(self.metric_initial),
            "metric_final": float(self.metric_final),
            "converged": bool(self.converged),
            "reason": self.reason,
            "iterations": [int(i) for i in self.iterations],
            "seconds": float(self.seconds),
            "direction": "fixed world -> moving world (RAS mm)",
            "affine_ras": linear.matrix.tolist(),
            "transform": self.transform.summary(),
        }
        if self.orientation is not None:
            record["orientation_search"] = self.orientation.summary()
        return record
