"""Finding DICOM series in files and folders, and choosing one.

A folder may hold several series (a CT and its scout, an MR with several sequences, a whole
study). :func:`scan_dicom` reads only headers (no pixel data) and groups image instances by
SeriesInstanceUID; :func:`select_series` narrows them by UID, modality or series number and
refuses to guess when more than one series is left.

Files that are not DICOM are skipped (counted); files that start like DICOM but cannot be
parsed are an error, since silently skipping them would drop slices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from monai_fusion.errors import InputError

__all__ = ["DicomSeries", "scan_dicom", "select_series", "is_dicom_file", "describe_series_list"]

_DICOM_MAGIC_OFFSET = 128


@dataclass
class DicomSeries:
    """One series found on disk: its identity and the headers of its image instances.

    Attributes:
        series_instance_uid: the SeriesInstanceUID shared by all instances.
        modality: DICOM Modality (``"CT"``, ``"MR"``, ``"PT"``, ``"NM"``...).
        series_number: SeriesNumber, or ``None`` when absent.
        description: SeriesDescription ('' when absent).
        files: instance files, in the order found (slice order is decided later, by position).
        headers: the matching headers, read without pixel data.
    """

    series_instance_uid: str
    modality: str
    series_number: int | None
    description: str
    files: list[Path] = field(default_factory=list)
    headers: list[Dataset] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        """Number of 2D frames over all instances (multi-frame objects count each frame)."""
        return sum(int(h.get("NumberOfFrames", 1) or 1) for h in self.headers)

    @property
    def sop_class_name(self) -> str:
        uid = self.headers[0].get("SOPClassUID", "")
        return getattr(uid, "name", str(uid)) if uid else "unknown"

    def summary(self) -> dict:
        """Plain description, free of patient identifiers, for listings and ``--json``."""
        first = self.headers[0]
        return {
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "modality": self.modality,
            "description": self.description,
            "sop_class": self.sop_class_name,
            "instances": len(self.files),
            "frames": self.n_frames,
            "rows": int(first.get("Rows", 0) or 0),
            "columns": int(first.get("Columns", 0) or 0),
        }


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM Part 10 magic ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _looks_truncated(header: Dataset) -> bool:
    """pydicom reads truncated files leniently; a Part 10 file missing its identity or, for an
    image storage class, its image size, was cut short."""
    if "SOPInstanceUID" not in header or "SOPClassUID" not in header:
        return True
    name = getattr(header.SOPClassUID, "name", "")
    return "Image Storage" in name and ("Rows" not in header or "Columns" not in header)


def _read_header(path: Path) -> Dataset | None:
    """Header without pixel data; ``None`` for a file that is not DICOM at all."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if is_dicom_file(path) and _looks_truncated(header):
            raise InputError(f"{path} looks like DICOM but its header is incomplete; the file may be truncated")
        return header
    except InputError:
        raise
    except InvalidDicomError:
        if is_dicom_file(path):
            raise InputError(f"{path} looks like DICOM but its header cannot be read; the file may be truncated") from None
        return None
    except Exception as err:  # pydicom raises assorted errors on corrupt data
        if is_dicom_file(path):
            raise InputError(f"{path} is a damaged DICOM file ({type(err).__name__}); replace or remove it") from None
        return None


def _is_image(header: Dataset) -> bool:
    return "Rows" in header and "Columns" in header and "SeriesInstanceUID" in header


def _files_below(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / n for n in sorted(names) if not n.startswith(".") and n.upper() != "DICOMDIR")
    return found


def scan_dicom(path: str | os.PathLike) -> list[DicomSeries]:
    """Group the DICOM image instances in ``path`` (a file or a folder, searched recursively) by series.

    Non-image objects (structured reports, RT structures, presentation states) are left out.

    Raises:
        InputError: the path is missing, or holds no DICOM image, or holds a damaged DICOM file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    files = _files_below(path)
    if not files:
        raise InputError(f"{path} is an empty folder; point to a folder that holds a DICOM series")
    by_uid: dict[str, DicomSeries] = {}
    n_other = 0
    for file in files:
        header = _read_header(file)
        if header is None or not _is_image(header):
            n_other += 1
            continue
        uid = str(header.SeriesInstanceUID)
        series = by_uid.get(uid)
        if series is None:
            number = header.get("SeriesNumber")
            series = by_uid[uid] = DicomSeries(
                series_instance_uid=uid,
                modality=str(header.get("Modality", "OT") or "OT"),
                series_number=int(number) if number not in (None, "") else None,
                description=str(header.get("SeriesDescription", "") or ""),
            )
        series.files.append(file)
        series.headers.append(header)
    if not by_uid:
        raise InputError(f"no DICOM image found in {path} ({n_other} file(s) looked at); point to a DICOM series")
    return sorted(by_uid.values(), key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid))


def describe_series_list(series: Sequence[DicomSeries]) -> str:
    """One line per series, for error messages: number, modality, frames, description, UID."""
    lines = []
    for s in series:
        number = "-" if s.series_number is None else str(s.series_number)
        lines.append(f"series {number} {s.modality} {s.n_frames} frame(s) '{s.description}' uid={s.series_instance_uid}")
    return "; ".join(lines)


def select_series(
    series: Sequence[DicomSeries],
    series_uid: str | None = None,
    modality: str | None = None,
    series_number: int | None = None,
) -> DicomSeries:
    """The one series matching every given criterion.

    Raises:
        InputError: no series matches, or several do and nothing tells them apart; the message
            lists the candidates so the user can choose.
    """
    candidates = list(series)
    if series_uid is not None:
        candidates = [s for s in candidates if s.series_instance_uid == str(series_uid)]
    if modality is not None:
        candidates = [s for s in candidates if s.modality.upper() == str(modality).upper()]
    if series_number is not None:
        candidates = [s for s in candidates if s.series_number == int(series_number)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"no series matches the selection; available: {describe_series_list(series)}")
    raise InputError(
        f"{len(candidates)} series found, select one by series UID, modality or series number: "
        f"{describe_series_list(candidates)}"
    )
