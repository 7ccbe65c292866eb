"""Assembling a 3D volume from the frames of one DICOM series, with exact geometry.

Every frame -- a classic single-frame instance, one frame of an enhanced multi-frame object
(per-frame/shared functional groups), or one slice of an NM tomographic reconstruction -- is
described by a :class:`FramePlane`. :func:`assemble_volume` then

1. checks that all frames share orientation, size and pixel spacing;
2. orders them by their position along the slice normal (never by file name or instance number);
3. refuses duplicate positions (several echoes, phases or acquisitions in one series), and
   missing slices or non-uniform spacing unless ``irregular_slices="resample"``, in which case
   the stack is linearly interpolated onto a uniform grid at the median spacing (with a warning);
4. applies each frame's own rescale slope/intercept (PET slices often differ) and returns a
   float32 array indexed ``(i=column, j=row, k=slice)`` plus its RAS affine.

The slice step of the affine is the mean step between the first and last frame positions, so a
tilted-gantry (sheared) stack keeps its true geometry in the affine; a warning says so, since
formats and tools that assume orthogonal axes (ITK, NIfTI qform) cannot hold it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from monai_fusion.errors import InputError
from monai_fusion.io.geometry import LPS_TO_RAS

__all__ = ["FramePlane", "frame_planes", "assemble_volume", "AssembledVolume"]

_ORIENTATION_TOL = 1e-4


@dataclass
class FramePlane:
    """Geometry and value mapping of one 2D frame.

    Attributes:
        position: ImagePositionPatient of the first transmitted pixel (LPS, mm).
        row_cosine: unit vector along a row (increasing column index), LPS.
        column_cosine: unit vector down a column (increasing row index), LPS.
        pixel_spacing: (spacing between rows, spacing between columns) in mm, DICOM order.
        shape: (rows, columns).
        slope, intercept: the frame's modality rescale.
        file_index, frame_index: where the pixels are (frame_index None for single-frame files).
    """

    position: np.ndarray
    row_cosine: np.ndarray
    column_cosine: np.ndarray
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float
    intercept: float
    file_index: int
    frame_index: int | None
    thickness: float | None = None


def _floats(values) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=float)


def _functional_group(header: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of a functional-group macro for a frame: per-frame first, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = header.get(groups)
        macro = seq[index].get(sequence) if seq and len(seq) > index else None
        if macro:
            return macro[0]
    return None


def _rescale(item: Dataset | None) -> tuple[float, float]:
    if item is None:
        return 1.0, 0.0
    slope = item.get("RescaleSlope")
    intercept = item.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0, float(intercept) if intercept not in (None, "") else 0.0)


def _optional_float(value) -> float | None:
    return float(value) if value not in (None, "") else None


def _plane(header: Dataset, position, orientation, spacing, rescale: Dataset | None, file_index: int,
           frame_index: int | None, thickness: float | None) -> FramePlane:
    iop = _floats(orientation)
    slope, intercept = _rescale(rescale)
    return FramePlane(
        position=_floats(position), row_cosine=iop[:3], column_cosine=iop[3:], pixel_spacing=tuple(_floats(spacing)),
        shape=(int(header.Rows), int(header.Columns)), slope=slope, intercept=intercept, file_index=file_index,
        frame_index=frame_index, thickness=thickness,
    )


def _enhanced_planes(header: Dataset, file_index: int, name: str) -> list[FramePlane]:
    planes = []
    for frame in range(int(header.get("NumberOfFrames", 1) or 1)):
        position = _functional_group(header, frame, "PlanePositionSequence")
        orientation = _functional_group(header, frame, "PlaneOrientationSequence")
        measures = _functional_group(header, frame, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None or "PixelSpacing" not in measures:
            raise InputError(f"{name}: multi-frame object without plane position/orientation/pixel spacing; it has no usable geometry")
        planes.append(_plane(
            header, position.ImagePositionPatient, orientation.ImageOrientationPatient, measures.PixelSpacing,
            _functional_group(header, frame, "PixelValueTransformationSequence"), file_index, frame,
            _optional_float(measures.get("SliceThickness")),
        ))
    return planes


def _nm_tomo_planes(header: Dataset, file_index: int, name: str) -> list[FramePlane]:
    """NM reconstructed tomography: one position/orientation plus a slice step for all frames."""
    detector = header.get("DetectorInformationSequence")
    item = detector[0] if detector else header
    if "ImagePositionPatient" not in item or "ImageOrientationPatient" not in item:
        raise InputError(f"{name}: NM multi-frame object without image position/orientation; it has no usable geometry")
    iop = _floats(item.ImageOrientationPatient)
    normal = np.cross(iop[:3], iop[3:])
    step = float(header.get("SpacingBetweenSlices") or header.get("SliceThickness") or 0)
    if step == 0:
        raise InputError(f"{name}: NM multi-frame object without SpacingBetweenSlices or SliceThickness")
    origin = _floats(item.ImagePositionPatient)
    thickness = float(header.get("SliceThickness") or step)
    return [
        _plane(header, origin + frame * step * normal, iop, header.PixelSpacing, header, file_index, frame, thickness)
        for frame in range(int(header.NumberOfFrames))
    ]


def _classic_plane(header: Dataset, file_index: int, name: str) -> FramePlane:
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if k not in header]
    if missing:
        raise InputError(f"{name}: no {', '.join(missing)}; the image has no patient geometry (a secondary capture?)")
    return _plane(header, header.ImagePositionPatient, header.ImageOrientationPatient, header.PixelSpacing, header,
                  file_index, None, _optional_float(header.get("SliceThickness")))


def frame_planes(headers: Sequence[Dataset], names: Sequence[str]) -> list[FramePlane]:
    """The :class:`FramePlane` of every frame of every instance."""
    planes: list[FramePlane] = []
    for index, (header, name) in enumerate(zip(headers, names)):
        n_frames = int(header.get("NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" in header or "SharedFunctionalGroupsSequence" in header:
            planes.extend(_enhanced_planes(header, index, name))
        elif n_frames > 1 and str(header.get("Modality", "")) == "NM":
            planes.extend(_nm_tomo_planes(header, index, name))
        elif n_frames > 1:
            raise InputError(f"{name}: multi-frame object without functional groups; cannot place its frames in space")
        else:
            planes.append(_classic_plane(header, index, name))
    return planes


@dataclass
class AssembledVolume:
    """A float32 array ``(I, J, K[, C])`` on a regular grid, its RAS affine, and notes."""

    array: np.ndarray
    affine: np.ndarray
    warnings: list[str]
    ordered_files: list[Path]


def _check_consistent(planes: Sequence[FramePlane]) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if plane.shape != first.shape:
            raise InputError(f"frames of different sizes in one series ({first.shape} and {plane.shape}); select a single acquisition")
        if not (np.allclose(plane.row_cosine, first.row_cosine, atol=_ORIENTATION_TOL)
                and np.allclose(plane.column_cosine, first.column_cosine, atol=_ORIENTATION_TOL)):
            raise InputError("frames with different orientations in one series (a localizer mixed in?); select a single stack")
        if not np.allclose(plane.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-6):
            raise InputError(f"frames with different pixel spacing in one series ({first.pixel_spacing} and {plane.pixel_spacing})")


def _slice_irregularities(distances: np.ndarray) -> tuple[float, list[str]]:
    """Median step and a description of each gap or uneven step ([] when regular)."""
    steps = np.diff(distances)
    median = float(np.median(steps))
    tolerance = max(1e-3, 0.01 * median)
    problems = []
    for index, step in enumerate(steps):
        if abs(step - median) <= tolerance:
            continue
        ratio = step / median
        if round(ratio) >= 2 and abs(ratio - round(ratio)) * median <= tolerance:
            problems.append(f"{round(ratio) - 1} slice(s) missing after slice {index + 1} (gap {step:.3f} mm, expected {median:.3f} mm)")
        else:
            problems.append(f"uneven step of {step:.3f} mm after slice {index + 1} (median {median:.3f} mm)")
    return median, problems


def _resample_stack(stack: np.ndarray, distances: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of a (K, ...) stack at positions ``distances`` onto a uniform grid."""
    targets = distances[0] + step * np.arange(int(np.floor((distances[-1] - distances[0]) / step + 1e-6)) + 1)
    upper = np.clip(np.searchsorted(distances, targets, side="right"), 1, len(distances) - 1)
    lower = upper - 1
    weight = (targets - distances[lower]) / (distances[upper] - distances[lower])
    weight = weight.reshape((-1,) + (1,) * (stack.ndim - 1)).astype(np.float32)
    return (1 - weight) * stack[lower] + weight * stack[upper], targets


def assemble_volume(
    planes: Sequence[FramePlane],
    read_frame: Callable[[FramePlane], np.ndarray],
    files: Sequence[Path],
    irregular_slices: str = "error",
) -> AssembledVolume:
    """Stack frames into a regular 3D grid; see the module docstring for the rules.

    Args:
        planes: geometry of every frame (any order).
        read_frame: returns a frame's stored pixel values, shape (rows, columns[, samples]).
        files: instance files, indexed by ``FramePlane.file_index``.
        irregular_slices: ``"error"`` (default) or ``"resample"`` for missing slices / uneven steps.
    """
    if irregular_slices not in ("error", "resample"):
        raise ValueError(f"irregular_slices must be 'error' or 'resample', not {irregular_slices!r}")
    _check_consistent(planes)
    first = planes[0]
    normal = np.cross(first.row_cosine, first.column_cosine)
    order = sorted(range(len(planes)), key=lambda n: float(planes[n].position @ normal))
    planes = [planes[n] for n in order]
    distances = np.array([p.position @ normal for p in planes])
    notes: list[str] = []
    if len(planes) > 1:
        steps = np.diff(distances)
        duplicates = int(np.sum(steps < 1e-3 * max(1.0, float(np.median(np.abs(steps))))))
        if duplicates:
            raise InputError(
                f"{duplicates} duplicate slice position(s): the series holds several echoes, phases or "
                "acquisitions at the same places; export or select a single one"
            )
    stack = np.stack([p.slope * read_frame(p).astype(np.float32) + p.intercept for p in planes]).astype(np.float32)
    if len(planes) > 1:
        median_step, problems = _slice_irregularities(distances)
        if problems:
            summary = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            if irregular_slices == "error":
                raise InputError(f"irregular slice spacing: {summary}; fix the series or allow resampling of irregular slices")
            stack, distances = _resample_stack(stack, distances, median_step)
            notes.append(f"irregular slice spacing resampled to {median_step:.3f} mm: {summary}")
        step_vector = (planes[-1].position - planes[0].position) / (distances[-1] - distances[0]) * median_step
        in_plane = step_vector - (step_vector @ normal) * normal
        if np.linalg.norm(in_plane) > 1e-3 * median_step:
            angle = np.degrees(np.arctan2(np.linalg.norm(in_plane), step_vector @ normal))
            notes.append(f"slices are sheared by {angle:.2f} degrees (gantry tilt); the affine keeps the shear")
    else:
        step_vector = normal * (first.thickness or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = first.row_cosine * first.pixel_spacing[1]
    lps[:3, 1] = first.column_cosine * first.pixel_spacing[0]
    lps[:3, 2] = step_vector
    lps[:3, 3] = planes[0].position
    # (K, rows, cols[, samples]) -> (cols=i, rows=j, K[, samples])
    array = np.moveaxis(stack, (0, 1, 2), (2, 1, 0))
    ordered = []
    for plane in planes:
        if not ordered or ordered[-1] != files[plane.file_index]:
            ordered.append(files[plane.file_index])
    return AssembledVolume(np.ascontiguousarray(array), LPS_TO_RAS @ lps, notes, ordered)


def read_pixels(path: Path) -> np.ndarray:
    """Stored pixel values of an instance (all frames), decoding compressed transfer syntaxes."""
    try:
        dataset = pydicom.dcmread(path)
        return dataset.pixel_array
    except Exception as err:  # decoders raise many types; all mean the same to the user
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise InputError(f"{path}: pixel data cannot be decoded ({reason}); the file may be truncated or use an unsupported compression") from None
