"""The record of a fusion run: ``report.json`` (machine-readable) and ``report.html`` (for people).

The report never holds patient identifiers: inputs are described by file name, kind, modality,
geometry and value range only (no DICOM patient/study attributes, no UIDs, no folders). Output
files are listed with their size and SHA-256 so a later reader can check they are the ones the
report describes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import platform
from pathlib import Path

__all__ = ["sha256_of", "describe_outputs", "software_versions", "write_report_json", "render_html"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_outputs(outputs: dict[str, Path], root: Path) -> dict[str, dict]:
    """``{name: {path (relative to root), bytes, sha256}}``; folders (DICOM series) list their files' digest."""
    described = {}
    for name, path in outputs.items():
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            digest = hashlib.sha256()
            for file in files:
                digest.update(file.name.encode())
                digest.update(sha256_of(file).encode())
            described[name] = {"path": path.relative_to(root).as_posix() + "/", "files": len(files),
                               "bytes": sum(f.stat().st_size for f in files), "sha256": digest.hexdigest(),
                               "sha256_of": "file names and SHA-256 of the files, in name order"}
        else:
            described[name] = {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size,
                               "sha256": sha256_of(path)}
    return described


def software_versions() -> dict[str, str]:
    import monai
    import numpy
    import torch

    import monai_fusion

    return {"monai-fusion": monai_fusion.__version__, "monai": monai.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def write_report_json(report: dict, path: Path) -> Path:
    from monai_fusion.io.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---------------------------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 1280px;
       padding: 0 20px; box-sizing: border-box;
       color: #1d1d1f; background: #fafafa; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #137333; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
img.montage { max-width: 100%; border: 1px solid #ccc; }
code { font-size: 0.9em; } .warn { color: #8a5300; }
"""


def _cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, (list, tuple)):
        value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
    if value is None:
        value = ""
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _key_values(mapping: dict) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in mapping.items()) + "</table>"


def _displacement_summaries(transform: dict | None) -> list[dict]:
    """The displacement-field summaries inside a transform summary (composites searched)."""
    if not isinstance(transform, dict):
        return []
    if transform.get("type") == "displacement_field":
        return [transform]
    return [f for t in transform.get("transforms", []) for f in _displacement_summaries(t)]


def _png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(report: dict, montage=None) -> str:
    """A self-contained page (the montage embedded as a PNG data URI) summarising ``report``."""
    task, method = report["task"], report["method"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>monai-fusion: {html.escape(task)}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Fusion report: {html.escape(task)}, {html.escape(method)}</h1>",
             f"<p class='sub'>monai-fusion {html.escape(report['versions']['monai-fusion'])} &middot; "
             f"reference grid: <b>{html.escape(report['reference']['modality_name'])}</b> ({html.escape(report['reference']['role'])} image) "
             f"&middot; {report['seconds']:.1f} s &middot; mean weight of the reference in the fused image "
             f"{report.get('contribution_mean', float('nan')):.2f}</p>"]
    if report.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) + "</ul>")
    if montage is not None:
        parts.append("<h2>Quality control</h2><p>Rows: axial, coronal, sagittal through the centre of the reference "
                     "(radiological view: patient right on the left). Checkerboard: reference and registered image "
                     "alternate; continuous edges across squares mean good alignment.</p>")
        parts.append(f"<img class='montage' alt='QC montage' src='{_png_data_uri(montage)}'>")
    registration = report.get("registration") or {}
    parts.append("<h2>Registration</h2>")
    if registration:
        status = registration.get("converged")
        flag = "<span class='ok'>converged</span>" if status else f"<span class='bad'>not converged: {html.escape(str(registration.get('reason')))}</span>"
        parts.append(f"<p>{flag}</p>")
        keys = ("model", "backend", "metric", "metric_initial", "metric_final", "iterations", "seconds")
        parts.append(_key_values({k: registration[k] for k in keys if k in registration}))
        search = registration.get("orientation_search")
        if search and search.get("rotated"):
            unrotated = search["metric_unrotated"]
            unrotated = f"{unrotated:.3f}" if unrotated is not None else "no overlap"
            parts.append(f"<p><span class='bad'>The images were scanned in different poses</span>: the registration started "
                         f"from a rotation of {html.escape(search['rotation'])} (Mattes MI {search['metric_chosen']:.3f} "
                         f"against {unrotated} unrotated, on a coarse level). Check the checkerboard.</p>")
        elif search:
            parts.append("<p>Orientation search: the scanners' pose was kept (no axis-aligned rotation fitted clearly better).</p>")
        for field in _displacement_summaries(registration.get("transform")):
            folded = field.get("folded_fraction", 0.0)
            state = (f"<span class='bad'>folds in {folded:.2%} of its grid</span>" if folded > 0 else "does not fold")
            parts.append(f"<p>Deformation: up to {field['max_displacement_mm']:.1f} mm (mean "
                         f"{field['mean_displacement_mm']:.2f} mm), smallest Jacobian determinant "
                         f"{field.get('min_jacobian_determinant', float('nan')):.2f}; the field {state}.</p>")
        if "affine_ras" in registration:
            matrix = "".join("<tr>" + "".join(f'<td class="num">{v:+.4f}</td>' for v in row) + "</tr>" for row in registration["affine_ras"])
            parts.append(f"<p>Transform, fixed world &rarr; moving world (RAS mm):</p><table>{matrix}</table>")
    else:
        parts.append("<p>No registration (<code>registration='none'</code>): the images' world coordinates were trusted.</p>")
    parts.append("<h2>Inputs</h2>")
    inputs = [{"role": role, **info, "shape": " x ".join(str(v) for v in info["shape"]),
               "spacing_mm": " x ".join(f"{v:.4g}" for v in info["spacing_mm"]),
               "value_range": "{:.4g} .. {:.4g}".format(*info["value_range"])} for role, info in report["inputs"].items()]
    parts.append(_table(inputs, ["role", "name", "format", "modality", "modality_from", "units", "shape", "spacing_mm",
                                 "orientation", "value_range"]))
    if report.get("metrics"):
        parts.append(f"<h2>Fusion quality</h2><p>{html.escape(report.get('metrics_scope', ''))}</p>")
        parts.append(_key_values(report["metrics"]))
    parts.append("<h2>Timings (s)</h2>" + _key_values(report["timings"]))
    outputs = [{"output": name, **info} for name, info in report.get("outputs", {}).items()]
    if outputs:
        parts.append("<h2>Outputs</h2>" + _table(outputs, ["output", "path", "bytes", "sha256"]))
    if report.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in report["warnings"]) + "</ul>")
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    parts.append(f"<p class='sub'>Software: {html.escape(versions)}</p></body></html>")
    return "\n".join(parts)
