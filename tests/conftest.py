"""Shared fixtures: the real data in ../shared/data (skipped when absent), pydicom's test files,
dciodvfy, and a factory of small synthetic DICOM series with exactly known geometry."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SHARED_DATA = Path(os.environ.get("MONAI_FUSION_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path in ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (set MONAI_FUSION_DATA to the shared data folder)")
    return path


def pydicom_test_file(name: str) -> Path:
    """A file shipped with pydicom or pydicom-data; skip when it is not installed (never download)."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except TypeError:  # older pydicom without the download flag
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data)")
    return Path(path)


def harvard_grey(path) -> np.ndarray:
    """A Harvard PNG as grey levels: luma of RGB pseudo-colour, rounded as the CDDFuse reader does."""
    from PIL import Image

    x = np.asarray(Image.open(path)).astype(np.float64)
    if x.ndim == 3:
        x = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return np.round(x)


def harvard_triple(task: str, functional: str, name: str):
    """(MRI, functional, round((MRI + functional) / 2)) of one Harvard slice, skipping without data."""
    folder = shared_path("harvard", task)
    a, b = harvard_grey(folder / "mri" / name), harvard_grey(folder / functional / name)
    return a, b, np.round((a + b) / 2)


@pytest.fixture(scope="session")
def dciodvfy():
    """Path of the dciodvfy validator (Debian package dicom3tools)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    return exe


class DciodvfyWarning(UserWarning):
    """dciodvfy's warnings on a file we wrote: listed in pytest's warnings summary, not failures."""


def report_dciodvfy_warnings(what: str, lines) -> None:
    import warnings

    if lines:
        warnings.warn(DciodvfyWarning(f"dciodvfy warnings on {what}:\n  " + "\n  ".join(sorted(set(lines)))), stacklevel=2)


def run_dciodvfy(exe: str, path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines that dciodvfy reports for one file."""
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    # dciodvfy quotes values; never let a person name reach the test log
    lines = [re.sub(r"(PN \[\d+\] = )<[^>]*>", r"\1<redacted>", line) for line in (out.stdout + out.stderr).splitlines()]
    return [l for l in lines if l.startswith("Error")], [l for l in lines if l.startswith("Warning")]


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"


def make_slice(
    pixels: np.ndarray,
    position,
    *,
    series_uid: str,
    study_uid: str,
    frame_uid: str,
    modality: str = "CT",
    orientation=(1, 0, 0, 0, 1, 0),
    spacing=(0.8, 0.6),
    slope: float = 1.0,
    intercept: float = -1024.0,
    instance: int = 1,
    series_number: int = 3,
    extra: dict | None = None,
) -> Dataset:
    """One classic single-frame image; ``pixels`` is (rows, columns) uint16/int16."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = PET_IMAGE if modality == "PT" else CT_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SYNTH001"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"synthetic {modality}"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


@pytest.fixture
def synthetic_series(tmp_path):
    """Factory writing a synthetic series; returns (folder, volume (I,J,K) of real values, affine LPS).

    Files get shuffled names so that any reader ordering by name instead of position fails.
    """

    def build(
        n_slices: int = 6,
        rows: int = 5,
        columns: int = 4,
        step: float = 2.0,
        drop: tuple[int, ...] = (),
        duplicate: tuple[int, ...] = (),
        folder: Path | None = None,
        modality: str = "CT",
        slopes=None,
        extra: dict | None = None,
        series_number: int = 3,
        origin=(-10.0, 20.0, 30.0),
    ):
        folder = folder or tmp_path / f"series_{modality}_{series_number}"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(n_slices * 31 + rows)
        series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
        stored = rng.integers(0, 3000, size=(n_slices, rows, columns), dtype=np.uint16)
        slopes = slopes if slopes is not None else [1.0] * n_slices
        intercept = -1024.0 if modality == "CT" else 0.0
        datasets = []
        for k in range(n_slices):
            if k in drop:
                continue
            position = np.asarray(origin) + np.array([0, 0, step * k])
            for _ in range(2 if k in duplicate else 1):
                datasets.append(make_slice(stored[k], position, series_uid=series_uid, study_uid=study_uid,
                                           frame_uid=frame_uid, modality=modality, slope=slopes[k],
                                           intercept=intercept, instance=k + 1, series_number=series_number,
                                           extra=extra))
        names = [f"s{series_number}_{n:04d}.dcm" for n in random.Random(7).sample(range(1000), len(datasets))]
        for ds, name in zip(datasets, names):
            ds.save_as(folder / name, enforce_file_format=True)
        values = stored.astype(np.float64) * np.asarray(slopes)[:, None, None] + intercept
        volume = np.transpose(values, (2, 1, 0))  # (K, rows, cols) -> (I=cols, J=rows, K)
        return folder, volume, series_uid

    return build
