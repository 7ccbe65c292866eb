"""What a path holds: the facts ``monai-fusion info`` prints, as plain dictionaries.

For a DICOM folder every series is listed; each is loaded to report its grid and value range.
A series that cannot be assembled (a localizer with mixed orientations, a missing slice) is
still listed, with the reason in ``problem``, so one odd series does not hide the others.
No patient identifier is ever part of the description.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from monai_fusion.errors import InputError
from monai_fusion.io.dicom_scan import scan_dicom
from monai_fusion.io.geometry import orientation_code
from monai_fusion.io.reader import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, load_image

__all__ = ["describe_path", "format_table"]


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES)


def _describe_image(image) -> dict:
    values = image.as_tensor()
    finite = values[values.isfinite()] if values.is_floating_point() else values
    meta = image.meta
    return {
        "modality": meta.get("modality") or "",
        "size": [int(v) for v in image.shape[1:]],
        "channels": int(image.shape[0]),
        "spacing": [round(float(v), 6) for v in meta["spacing"]],
        "orientation": orientation_code(image.affine.numpy()),
        "origin": [round(float(v), 4) for v in image.affine[:3, 3].tolist()],
        "value_range": [float(finite.min()), float(finite.max())] if finite.numel() else [None, None],
        "units": meta.get("units", ""),
        "nonfinite_voxels": int(meta.get("nonfinite_voxels", 0)),
        "warnings": list(meta.get("warnings", [])),
    }


def describe_path(path: str | os.PathLike) -> list[dict]:
    """One dictionary per image (file) or series (DICOM) found at ``path``.

    Raises:
        InputError: nothing readable at ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    if _is_image_file(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry = _describe_image(load_image(path, nonfinite="keep", require_3d=False))
        return [{"path": str(path), "format": path.name.split(".", 1)[-1], "series_instance_uid": "", "series_number": None,
                 "description": "", "problem": "", **entry}]
    rows = []
    for series in scan_dicom(path):
        row = {"path": str(path), "format": "dicom", **series.summary(), "problem": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row.update(_describe_image(load_image(path, series_uid=series.series_instance_uid, nonfinite="keep")))
        except InputError as err:
            row["problem"] = str(err)
        rows.append(row)
    return rows


def _fmt_range(values) -> str:
    low, high = values
    return "-" if low is None else f"{low:.6g}..{high:.6g}"


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table of :func:`describe_path` rows, problems and warnings below it."""
    header = ["#", "series", "modality", "size", "spacing (mm)", "orient", "value range", "units", "description"]
    lines = []
    for index, row in enumerate(rows, 1):
        size = "x".join(str(v) for v in row.get("size", [])) or "-"
        if row.get("channels", 1) > 1:
            size += f" x{row['channels']}ch"
        spacing = "x".join(f"{v:.4g}" for v in row.get("spacing", [])) or "-"
        number = row.get("series_number")
        lines.append([
            str(index), "-" if number is None else str(number), row.get("modality") or "-", size, spacing,
            row.get("orientation", "-"), _fmt_range(row.get("value_range", (None, None))), row.get("units") or "-",
            (row.get("description") or row.get("format", ""))[:40],
        ])
    widths = [max(len(h), *(len(line[c]) for line in lines)) for c, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines]
    for index, row in enumerate(rows, 1):
        if row.get("series_instance_uid"):
            out.append(f"  [{index}] series uid {row['series_instance_uid']}")
        if row.get("problem"):
            out.append(f"  [{index}] problem: {row['problem']}")
        for note in row.get("warnings", []):
            out.append(f"  [{index}] warning: {note}")
        if row.get("nonfinite_voxels"):
            out.append(f"  [{index}] warning: {row['nonfinite_voxels']} NaN/Inf voxel(s)")
    return "\n".join(out)
