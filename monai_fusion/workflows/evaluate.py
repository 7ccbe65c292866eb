"""``monai-fusion evaluate``: fusion-quality metrics over many (A, B, fused) cases.

Cases come from three folders matched by file name (``--a``, ``--b``, ``--fused``; the name
without its extension, so ``12015.png`` matches ``12015.nii.gz``) or from a datalist: a JSON list
(or a MONAI-style ``{"testing": [...]}`` dictionary) of ``{"a": ..., "b": ..., "fused": ...,
"case": ...}`` items, or a CSV with columns ``a,b,fused[,case]``; relative paths are resolved
against the datalist's folder, as MONAI does.

Colour images (the Harvard PET/SPECT pseudo-colour PNGs, RGB fused products) are measured on
their luma (BT.601 Y on the 0..255 scale), as the literature does for grey-level metrics.

A case that cannot be read or measured is reported with its reason and the others go on; the
per-case CSV and the summary are written atomically when every case has been tried.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from monai_fusion.errors import InputError, MonaiFusionError
from monai_fusion.io import load_image
from monai_fusion.io.atomic import atomic_file, ensure_folder
from monai_fusion.workflows.datalist import read_datalist, resolve_datalist_path

__all__ = ["EvaluationCase", "EvaluationResult", "cases_from_folders", "cases_from_datalist", "evaluate_cases",
           "load_grey", "case_key"]


@dataclass(frozen=True)
class EvaluationCase:
    """One (source A, source B, fused) triple."""

    case: str
    a: Path
    b: Path
    fused: Path


@dataclass
class EvaluationResult:
    """Per-case metric values, failures, and the per-metric summary."""

    metrics: list[str]
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """mean, sd (sample, n-1) and n for each metric over the cases that succeeded."""
        out = {}
        for name in self.metrics:
            values = np.array([row[name] for row in self.rows if row.get(name) is not None and math.isfinite(row[name])])
            out[name] = {
                "mean": float(values.mean()) if values.size else float("nan"),
                "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "n": int(values.size),
            }
        return out

    def summary_table(self) -> str:
        lines = [f"{'metric':<14} {'mean':>12} {'sd':>12} {'n':>6}"]
        for name, stats in self.summary().items():
            lines.append(f"{name:<14} {stats['mean']:>12.4f} {stats['sd']:>12.4f} {stats['n']:>6d}")
        return "\n".join(lines)


def case_key(path: Path) -> str:
    """File name without image extensions (``a.nii.gz`` -> ``a``)."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give the folder that holds the images")
    entries = {case_key(p): p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}
    if not entries:
        raise InputError(f"{folder} is empty; give the folder that holds the images")
    return entries


def cases_from_folders(a_dir: str | Path, b_dir: str | Path, fused_dir: str | Path) -> list[EvaluationCase]:
    """Triples matched by file name across three folders (names missing from any folder are an error)."""
    a, b, fused = _index(Path(a_dir)), _index(Path(b_dir)), _index(Path(fused_dir))
    common = sorted(set(a) & set(b) & set(fused))
    if not common:
        raise InputError(f"no file name is present in all three folders ({a_dir}, {b_dir}, {fused_dir})")
    unmatched = (set(a) | set(b) | set(fused)) - set(common)
    if unmatched:
        example = ", ".join(sorted(unmatched)[:3])
        raise InputError(f"{len(unmatched)} case(s) are missing from at least one folder (e.g. {example}); "
                         "every case needs an A, a B and a fused image")
    return [EvaluationCase(name, a[name], b[name], fused[name]) for name in common]


def cases_from_datalist(path: str | Path) -> list[EvaluationCase]:
    """Triples from a JSON or CSV datalist (see the module docstring)."""
    path = Path(path)
    cases = []
    for number, item in enumerate(read_datalist(path), 1):
        if not all(item.get(k) for k in ("a", "b", "fused")):
            raise InputError(f"{path}: case {number} needs 'a', 'b' and 'fused' entries")
        paths = [resolve_datalist_path(item[k], path) for k in ("a", "b", "fused")]
        cases.append(EvaluationCase(str(item.get("case") or case_key(paths[2])), *paths))
    if not cases:
        raise InputError(f"{path} lists no case")
    return cases


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255 (what OpenCV's RGB->GRAY gives before rounding)."""
    from monai_fusion.rules.colour import rgb_to_ycbcr

    return rgb_to_ycbcr(rgb.astype(np.float64), max_value=255)[0].numpy()


def load_grey(path: Path) -> np.ndarray:
    """An image as a float64 grey array (spatial only); colour images as their luma on 0..255."""
    image = load_image(path, require_3d=False)
    array = image.numpy()
    if image.shape[0] == 3 and image.meta.get("is_rgb"):
        return _luma(array)
    if image.shape[0] != 1:
        raise InputError(f"{path} has {image.shape[0]} channels; evaluation takes grey or RGB images")
    grey = array[0].astype(np.float64)
    return grey[..., 0] if grey.ndim == 3 and grey.shape[-1] == 1 else grey


def _progress(iterable: Sequence, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc="evaluate", unit="case", file=sys.stderr, leave=False)


def evaluate_cases(
    cases: Sequence[EvaluationCase],
    metrics: Iterable[str] | None = None,
    convention: str = "default",
    progress: bool = False,
) -> EvaluationResult:
    """Compute the chosen metrics for every case (all metrics when ``metrics`` is None)."""
    from monai_fusion.metrics import CONVENTIONS, METRICS, compute_metrics

    names = list(metrics) if metrics is not None else list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if convention not in CONVENTIONS:
        raise InputError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    result = EvaluationResult(metrics=names)
    start = time.perf_counter()
    for case in _progress(cases, progress):
        try:
            a, b, fused = (load_grey(p) for p in (case.a, case.b, case.fused))
            values = compute_metrics(a, b, fused, names=names, convention=convention)
        except MonaiFusionError as err:
            result.failures.append({"case": case.case, "error": str(err)})
            continue
        result.rows.append({"case": case.case, **{n: float(values[n]) for n in names}})
    result.seconds = time.perf_counter() - start
    return result


def write_evaluation(result: EvaluationResult, out_dir: str | Path, convention: str) -> dict[str, Path]:
    """``metrics.csv`` (one row per case), ``summary.csv`` and ``summary.json`` in ``out_dir``."""
    out_dir = ensure_folder(out_dir)
    paths = {"cases": out_dir / "metrics.csv", "summary": out_dir / "summary.csv", "json": out_dir / "summary.json"}
    with atomic_file(paths["cases"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", *result.metrics])
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    summary = result.summary()
    with atomic_file(paths["summary"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "mean", "sd", "n"])
        for name, stats in summary.items():
            writer.writerow([name, f"{stats['mean']:.6g}", f"{stats['sd']:.6g}", stats["n"]])
    with atomic_file(paths["json"]) as tmp:
        tmp.write_text(json.dumps({"convention": convention, "cases": len(result.rows), "failures": result.failures,
                                   "summary": summary, "seconds": result.seconds}, indent=2))
    return paths
