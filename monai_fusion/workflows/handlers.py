"""Ignite handlers of the fusion bundles: fusion-quality metrics and CSV/JSON logs (no TensorBoard).

* :class:`FusionMetricHandler` - :class:`~monai_fusion.metrics.FusionQualityMetric` as a MONAI
  metric handler. Its value (a key metric for model selection) is one named metric; every metric
  it computes also goes to ``engine.state.metrics``; with ``output_dir`` it writes the per-image
  values (``<name>_per_image.csv``) and a summary (``<name>_summary.json``).
* :class:`LossTermsLogger` - per-iteration loss and loss terms (``FusionLoss.last_terms``) of a
  trainer, appended to a CSV file.
* :class:`MetricsLogger` - an evaluator's metrics after each run, appended to a CSV and a JSON
  file, tagged with the epoch of the trainer that ran the validation.

Files are appended to, so a resumed training run continues its logs.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from monai.handlers import IgniteMetricHandler
from monai.utils import min_version, optional_import

from monai_fusion.errors import InputError
from monai_fusion.metrics.monai_metric import DEFAULT_METRICS, FusionQualityMetric

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")

__all__ = ["FusionMetricHandler", "LossTermsLogger", "MetricsLogger"]


def _append_csv(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header when the file is new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _number(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    return value


class FusionMetricHandler(IgniteMetricHandler):
    """Fusion-quality metrics of fused images against their sources, for MONAI evaluators.

    Args:
        metrics: names from :data:`monai_fusion.metrics.METRICS` (default: the CDDFuse table columns).
        key: the metric this handler reports as its value (the key metric); default the first.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see :mod:`monai_fusion.metrics`).
        output_transform: engine output -> ``(fused, sources)``, e.g.
            ``monai.handlers.from_engine(["pred", "image"])``; fused ``(1, *spatial)`` and sources
            ``(2, *spatial)`` per item.
        output_dir: if given, write ``<name>_per_image.csv`` and ``<name>_summary.json`` there.

    Example (config)::

        "key_metric": {"val_qabf": {"_target_": "monai_fusion.workflows.handlers.FusionMetricHandler",
                                    "metrics": ["Qabf", "SSIM"],
                                    "output_transform": "$monai.handlers.from_engine(['pred', 'image'])"}}
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, key: str | None = None, convention: str = "default",
                 output_transform: Callable = lambda x: x, output_dir=None) -> None:
        metric = FusionQualityMetric(metrics=metrics, convention=convention, reduction="mean")
        key = metric.metric_names[0] if key is None else key
        if key not in metric.metric_names:
            raise InputError(f"key metric {key!r} is not among the computed metrics {list(metric.metric_names)}")
        self.key = key
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.filenames: list[str] = []
        self.values: dict[str, float] = {}
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=False)

    def reset(self) -> None:
        super().reset()
        self.filenames = []

    def update(self, output) -> None:
        fused = output[0]
        items = fused if isinstance(fused, (list, tuple)) else [fused]
        for item in items:
            meta = getattr(item, "meta", {}) or {}
            name = meta.get("filename_or_obj", "")
            self.filenames.append(str(name[0] if isinstance(name, (list, tuple)) and name else name))
        super().update(output)

    def compute(self):
        per_metric = self.metric_fn.aggregate()
        self._is_reduced = True
        self.values = {name: float(value) for name, value in per_metric.items()}
        if self.output_dir is not None:
            self._write()
        return self.values[self.key]

    def completed(self, engine, name: str) -> None:
        super().completed(engine, name)
        for metric, value in self.values.items():
            engine.state.metrics[metric] = value  # every run: the evaluator keeps state.metrics across epochs

    def _write(self) -> None:
        table = self.metric_fn.get_buffer()
        names = self.metric_fn.metric_names
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stem = self._name or "metrics"
        with (self.output_dir / f"{stem}_per_image.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", *names])
            for index, row in enumerate(table.tolist()):
                filename = self.filenames[index] if index < len(self.filenames) else str(index)
                writer.writerow([filename, *(f"{v:.6g}" for v in row)])
        columns = table.double()
        summary = {
            "convention": self.metric_fn.convention,
            "images": int(columns.shape[0]),
            "mean": {n: float(columns[:, i].mean()) for i, n in enumerate(names)},
            "std": {n: float(columns[:, i].std(unbiased=False)) for i, n in enumerate(names)},
        }
        (self.output_dir / f"{stem}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


class LossTermsLogger:
    """Append ``epoch, iteration, loss, <term>...`` to ``<output_dir>/<filename>`` every ``interval`` iterations.

    Args:
        output_dir: folder of the CSV file.
        loss_function: the trainer's loss; its ``last_terms`` (``{term: value}``) are logged when present.
        filename: CSV file name.
        interval: log every ``interval`` iterations.
    """

    def __init__(self, output_dir, loss_function=None, filename: str = "train_loss.csv", interval: int = 1) -> None:
        self.path = Path(output_dir) / filename
        self.loss_function = loss_function
        self.interval = int(interval)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine) -> None:
        output = engine.state.output
        loss = output[0]["loss"] if isinstance(output, (list, tuple)) else output["loss"]
        row = {"epoch": engine.state.epoch, "iteration": engine.state.iteration, "loss": float(loss)}
        row.update({name: float(value) for name, value in getattr(self.loss_function, "last_terms", {}).items()})
        _append_csv(self.path, row)


class MetricsLogger:
    """After each evaluator run, append its metrics to ``<output_dir>/<stem>.csv`` and ``<stem>.json``.

    Args:
        output_dir: folder of the log files.
        stem: file name without suffix.
        epoch_source: the trainer whose epoch tags the row (the evaluator's own epoch otherwise).
    """

    def __init__(self, output_dir, stem: str = "validation_metrics", epoch_source=None) -> None:
        self.folder = Path(output_dir)
        self.stem = stem
        self.epoch_source = epoch_source

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        source = self.epoch_source if self.epoch_source is not None else engine
        row = {"epoch": source.state.epoch}
        for name, value in engine.state.metrics.items():
            value = _number(value)
            if isinstance(value, (int, float)) and math.isfinite(value):
                row[name] = value
        _append_csv(self.folder / f"{self.stem}.csv", row)
        json_path = self.folder / f"{self.stem}.json"
        history = json.loads(json_path.read_text()) if json_path.is_file() else []
        history.append(row)
        json_path.write_text(json.dumps(history, indent=2) + "\n")
