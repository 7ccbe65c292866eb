"""DICOM derived series: a volume written back beside the study it came from.

:func:`write_dicom_series` writes one classic single-frame instance per slice, of the IOD that
matches the output modality (CT Image or MR Image Storage), with

* the reference series' patient and study (so PACS files it with the originals) and its
  FrameOfReferenceUID (so viewers know it shares the reference's space), new Series and SOP
  Instance UIDs;
* ``ImageType = DERIVED\\SECONDARY`` and a ``DerivationDescription`` naming the sources;
* per-slice ImagePositionPatient / ImageOrientationPatient / PixelSpacing from the volume's
  affine (converted to LPS in :mod:`monai_fusion.io.geometry`), so any grid in the reference's
  world -- not only the reference grid itself -- is written exactly;
* 16-bit signed stored values: integer-valued data within int16 is stored as is (slope 1,
  intercept 0, so HU round-trip exactly); anything else is mapped linearly onto the full int16
  range with one RescaleSlope/Intercept for the whole series. The DS strings are formatted
  *first* and the stored values computed from the formatted numbers, so a reader reproduces
  every voxel to within half a slope step.

:func:`write_rgb_dicom` writes a colour volume as one Multi-frame True Color Secondary Capture
object whose functional groups carry the plane positions, orientation and pixel spacing.

Without a reference a new anonymous study is made (patient "ANONYMOUS"); the caller labels it.
Everything is written into a temporary folder/file and renamed into place when complete.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

import monai_fusion
from monai_fusion.errors import InputError, OutputError
from monai_fusion.io.atomic import atomic_directory, atomic_file
from monai_fusion.io.dicom_scan import scan_dicom, select_series
from monai_fusion.io.geometry import LPS_TO_RAS
from monai_fusion.io.volume import Volume, as_volume
from monai_fusion.io.writers import to_rgb_uint8

__all__ = ["write_dicom_series", "write_rgb_dicom", "ReferenceSeries", "PixelEncoding", "encode_pixels"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
_SOP_CLASS_BY_MODALITY = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}

_PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientWeight", "PatientSize", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription",
)
_TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass
class ReferenceSeries:
    """What a derived series borrows from its reference: one header and the instances' identity."""

    header: Dataset
    instances: list[tuple[str, str, np.ndarray]]  # (SOPClassUID, SOPInstanceUID, position LPS)

    @classmethod
    def from_path(cls, path: str | os.PathLike, series_uid: str | None = None) -> "ReferenceSeries":
        """Headers of a DICOM series on disk (a folder, or an explicit list of files)."""
        series = select_series(scan_dicom(path), series_uid=series_uid)
        return cls.from_headers(series.headers)

    @classmethod
    def from_files(cls, files: Sequence[str | os.PathLike]) -> "ReferenceSeries":
        headers = []
        for file in files:
            try:
                headers.append(pydicom.dcmread(file, stop_before_pixels=True))
            except Exception as err:
                raise InputError(f"reference DICOM file {file} cannot be read ({type(err).__name__})") from None
        return cls.from_headers(headers)

    @classmethod
    def from_headers(cls, headers: Sequence[Dataset]) -> "ReferenceSeries":
        if not headers:
            raise InputError("the reference series is empty")
        instances = []
        for h in headers:
            position = np.asarray([float(v) for v in h.get("ImagePositionPatient", [np.nan] * 3)])
            instances.append((str(h.SOPClassUID), str(h.SOPInstanceUID), position))
        return cls(header=headers[0], instances=instances)


@dataclass(frozen=True)
class PixelEncoding:
    """Stored int16 values and the DS-exact rescale that maps them back."""

    stored: np.ndarray
    slope: str
    intercept: str

    @property
    def max_error(self) -> float:
        """Largest difference a reader can see after rescaling (half a step, or 0 when exact)."""
        return 0.0 if float(self.slope) == 1.0 and float(self.intercept) == float(int(float(self.intercept))) else float(self.slope) / 2


def encode_pixels(values: np.ndarray) -> PixelEncoding:
    """Encode real values as int16 with a rescale slope/intercept (see the module docstring)."""
    values = np.asarray(values)
    low, high = float(np.min(values)), float(np.max(values))
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(np.equal(np.mod(values, 1), 0)))
    if integral and low >= -32768 and high <= 32767:
        return PixelEncoding(values.astype(np.int16), "1", "0")
    if high == low:
        slope_text = "1"
    else:
        slope_text = format_number_as_ds((high - low) / 65534.0)
        if float(slope_text) * 65534.0 < high - low:  # rounding made the step too small: widen it
            slope_text = format_number_as_ds(float(slope_text) * (1 + 1e-9) + 1e-15)
    slope = float(slope_text)
    intercept_text = format_number_as_ds((high + low) / 2.0)
    intercept = float(intercept_text)
    stored = np.clip(np.rint((values - intercept) / slope), -32768, 32767).astype(np.int16)
    return PixelEncoding(stored, slope_text, intercept_text)


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _patient_and_study(reference: ReferenceSeries | None, dataset: Dataset, meta: dict) -> None:
    if reference is not None:
        for keyword in _PATIENT_STUDY_KEYWORDS:
            if keyword in reference.header:
                setattr(dataset, keyword, reference.header.data_element(keyword).value)
    else:
        dataset.PatientName = "ANONYMOUS"
        dataset.PatientID = "ANONYMOUS"
        dataset.StudyInstanceUID = meta.get("study_instance_uid") or generate_uid()
        dataset.StudyDate, dataset.StudyTime = _now()
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in dataset:
            setattr(dataset, keyword, "")


def _series_skeleton(
    reference: ReferenceSeries | None, meta: dict, modality: str, series_number: int | None,
    series_description: str, derivation_description: str,
) -> Dataset:
    dataset = Dataset()
    header = reference.header if reference is not None else Dataset()
    dataset.SpecificCharacterSet = header.get("SpecificCharacterSet", "ISO_IR 192")
    _patient_and_study(reference, dataset, meta)
    dataset.Modality = modality
    dataset.SeriesInstanceUID = generate_uid()
    reference_number = header.get("SeriesNumber")
    dataset.SeriesNumber = series_number if series_number is not None else (int(reference_number) + 1000 if reference_number not in (None, "") else 1000)
    dataset.SeriesDescription = series_description[:64]
    dataset.SeriesDate, dataset.SeriesTime = _now()
    dataset.ContentDate, dataset.ContentTime = dataset.SeriesDate, dataset.SeriesTime
    dataset.FrameOfReferenceUID = header.get("FrameOfReferenceUID") or meta.get("frame_of_reference_uid") or generate_uid()
    dataset.PositionReferenceIndicator = header.get("PositionReferenceIndicator", "")
    dataset.PatientPosition = header.get("PatientPosition", "")
    dataset.Laterality = header.get("Laterality", "")
    dataset.Manufacturer = "monai-fusion"
    dataset.SoftwareVersions = monai_fusion.__version__
    dataset.DerivationDescription = derivation_description[:1024]
    dataset.BurnedInAnnotation = "NO"
    return dataset


def _add_modality_module(dataset: Dataset, modality: str, reference: ReferenceSeries | None, image_type: list[str]) -> None:
    header = reference.header if reference is not None else Dataset()
    same_modality = str(header.get("Modality", "")) == modality
    if modality == "CT":
        dataset.ImageType = image_type + ["AXIAL"]
        dataset.KVP = header.get("KVP", "") if same_modality else ""
        dataset.AcquisitionNumber = ""
    else:  # MR: type 1 sequence attributes copied from an MR reference, else "research mode"
        dataset.ImageType = image_type if len(image_type) > 2 else image_type + ["OTHER"]
        dataset.ScanningSequence = header.get("ScanningSequence", "RM") if same_modality else "RM"
        dataset.SequenceVariant = header.get("SequenceVariant", "NONE") if same_modality else "NONE"
        dataset.ScanOptions = header.get("ScanOptions", "") if same_modality else ""
        dataset.MRAcquisitionType = header.get("MRAcquisitionType", "") if same_modality else ""
        dataset.EchoTime = header.get("EchoTime", "") if same_modality else ""
        dataset.EchoTrainLength = header.get("EchoTrainLength", "") if same_modality else ""
        dataset.RepetitionTime = header.get("RepetitionTime", "") if same_modality else ""
        if "IR" in list(np.atleast_1d(dataset.ScanningSequence)):
            dataset.InversionTime = header.get("InversionTime", "")


def _plane_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """LPS origin, slice step, IOP strings and (row, column) spacing of a RAS affine."""
    lps = LPS_TO_RAS @ affine
    column_spacing = np.linalg.norm(lps[:3, 0])
    row_spacing = np.linalg.norm(lps[:3, 1])
    row_cosine, column_cosine = lps[:3, 0] / column_spacing, lps[:3, 1] / row_spacing
    if abs(float(row_cosine @ column_cosine)) > 1e-4:
        raise OutputError("the volume's in-plane axes are not orthogonal; DICOM cannot hold this geometry")
    orientation = [format_number_as_ds(float(v)) for v in np.concatenate([row_cosine, column_cosine])]
    return lps[:3, 3], lps[:3, 2], orientation, np.array([row_spacing, column_spacing])


def _direction_letters(cosine: np.ndarray) -> str:
    """Patient-orientation letters of an LPS direction, strongest first (e.g. ``"LP"``)."""
    letters = []
    for axis in np.argsort(-np.abs(cosine)):
        if abs(cosine[axis]) > 1e-4:
            letters.append(("L", "P", "H")[axis] if cosine[axis] > 0 else ("R", "A", "F")[axis])
    return "".join(letters)


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _reference_for(volume: Volume, reference) -> ReferenceSeries | None:
    """Resolve the ``reference`` argument; default to the DICOM files the image was read from."""
    if reference is None:
        files = volume.meta.get("dicom_files")
        return ReferenceSeries.from_files(files) if files else None
    if isinstance(reference, ReferenceSeries):
        return reference
    if isinstance(reference, (list, tuple)):
        if reference and isinstance(reference[0], Dataset):
            return ReferenceSeries.from_headers(reference)
        return ReferenceSeries.from_files(reference)
    return ReferenceSeries.from_path(reference)


def _nearest_reference(reference: ReferenceSeries | None, position: np.ndarray, normal: np.ndarray, tolerance: float):
    if reference is None:
        return None
    best = min(reference.instances, key=lambda inst: abs(float((inst[2] - position) @ normal)) if np.all(np.isfinite(inst[2])) else np.inf)
    return best if abs(float((best[2] - position) @ normal)) <= tolerance else None


def write_dicom_series(
    image,
    folder: str | os.PathLike,
    *,
    reference=None,
    affine=None,
    modality: str | None = None,
    series_description: str = "monai-fusion derived",
    derivation_description: str | None = None,
    series_number: int | None = None,
    image_type_extra: Sequence[str] = (),
    overwrite: bool = False,
) -> list[Path]:
    """Write a single-channel volume as a DICOM derived series (one file per slice).

    Args:
        image: ``MetaTensor``/array ``(1, I, J, K)``; slices are written along K.
        folder: output folder (created; must be empty or absent unless ``overwrite``).
        reference: the series whose patient, study and frame of reference the output joins: a
            DICOM folder, a list of files or headers, or a :class:`ReferenceSeries`. Defaults to
            ``image.meta["dicom_files"]`` when the image was read from DICOM; without any, a new
            anonymous study is made.
        affine: RAS affine when ``image`` does not carry one.
        modality: ``"CT"`` or ``"MR"``; defaults to the reference's (MR when that is neither).
        series_description, derivation_description: free text; the latter should name sources.
        series_number: defaults to the reference's plus 1000.
        image_type_extra: values appended after ``DERIVED\\SECONDARY`` (e.g. ``["FUSION"]``).
        overwrite: replace an existing non-empty folder (only once the new series is complete).

    Returns:
        The written files, in slice order.

    Example:
        >>> ct = load_image("mridir/ct")  # doctest: +SKIP
        >>> write_dicom_series(ct, "out/ct_copy")  # reference: ct.meta["dicom_files"]  # doctest: +SKIP
    """
    volume = as_volume(image, affine, channels=1)
    ref = _reference_for(volume, reference)
    reference_modality = str(ref.header.get("Modality", "")) if ref is not None else ""
    modality = (modality or (reference_modality if reference_modality in _SOP_CLASS_BY_MODALITY else "MR")).upper()
    if modality not in _SOP_CLASS_BY_MODALITY:
        raise OutputError(f"DICOM derived series can be written as {' or '.join(_SOP_CLASS_BY_MODALITY)} images, not {modality}")
    sop_class = _SOP_CLASS_BY_MODALITY[modality]
    origin, step, orientation, spacing = _plane_geometry(volume.affine)
    normal = np.cross(*(np.asarray(orientation[i:i + 3], dtype=float) for i in (0, 3)))
    encoding = encode_pixels(volume.array[0])
    if derivation_description is None:
        source = ref.header.get("SeriesInstanceUID", "") if ref is not None else volume.meta.get("filename_or_obj", "")
        derivation_description = f"Derived by monai-fusion {monai_fusion.__version__} from {source}"
    skeleton = _series_skeleton(ref, volume.meta, modality, series_number, series_description, derivation_description)
    _add_modality_module(skeleton, modality, ref, ["DERIVED", "SECONDARY", *image_type_extra])
    thickness = float(np.linalg.norm(step))
    window_low, window_high = np.percentile(volume.array[0], [0.5, 99.5])
    n_slices = volume.spatial_shape[2]
    written = []
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        for k in range(n_slices):
            position = origin + k * step
            dataset = Dataset()
            dataset.update(skeleton)
            dataset.SOPClassUID = sop_class
            dataset.SOPInstanceUID = generate_uid()
            dataset.InstanceNumber = k + 1
            dataset.ImagePositionPatient = [format_number_as_ds(float(v)) for v in position]
            dataset.ImageOrientationPatient = orientation
            dataset.PixelSpacing = [format_number_as_ds(float(v)) for v in spacing]
            dataset.SliceThickness = format_number_as_ds(thickness)
            dataset.SliceLocation = format_number_as_ds(float(position @ normal))
            _add_source_image(dataset, _nearest_reference(ref, position, normal, thickness / 2))
            _add_grey_pixels(dataset, encoding.stored[:, :, k].T, encoding, modality, window_low, window_high)
            dataset.file_meta = _file_meta(sop_class, dataset.SOPInstanceUID)
            name = f"IM{k + 1:05d}.dcm"
            dataset.save_as(tmp / name, enforce_file_format=True)
            written.append(Path(folder) / name)
    return written


def _add_source_image(dataset: Dataset, source) -> None:
    if source is None:
        return
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source[0], source[1]
    dataset.SourceImageSequence = DicomSequence([item])


def _add_grey_pixels(dataset: Dataset, plane: np.ndarray, encoding: PixelEncoding, modality: str, low: float, high: float) -> None:
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = plane.shape
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.RescaleIntercept = encoding.intercept
    dataset.RescaleSlope = encoding.slope
    if modality == "CT":
        dataset.RescaleType = "HU"
    dataset.WindowCenter = format_number_as_ds((float(high) + float(low)) / 2)
    dataset.WindowWidth = format_number_as_ds(max(float(high) - float(low), 1.0))
    dataset.PixelData = np.ascontiguousarray(plane, dtype="<i2").tobytes()


def write_rgb_dicom(
    image,
    path: str | os.PathLike,
    *,
    reference=None,
    affine=None,
    series_description: str = "monai-fusion colour",
    derivation_description: str | None = None,
    series_number: int | None = None,
) -> Path:
    """Write a ``(3, I, J, K)`` colour volume as one Multi-frame True Color Secondary Capture file.

    Geometry goes in the multi-frame functional groups (plane position per frame, shared
    orientation and pixel measures) with the reference's FrameOfReferenceUID. Arguments as in
    :func:`write_dicom_series`.
    """
    volume = as_volume(image, affine, channels=3)
    ref = _reference_for(volume, reference)
    rgb = to_rgb_uint8(volume.array)
    origin, step, orientation, spacing = _plane_geometry(volume.affine)
    normal = np.cross(*(np.asarray(orientation[i:i + 3], dtype=float) for i in (0, 3)))
    if derivation_description is None:
        source = ref.header.get("SeriesInstanceUID", "") if ref is not None else volume.meta.get("filename_or_obj", "")
        derivation_description = f"Colour rendering by monai-fusion {monai_fusion.__version__} from {source}"
    dataset = _series_skeleton(ref, volume.meta, "OT", series_number, series_description, derivation_description)
    dataset.SOPClassUID = MULTIFRAME_TRUE_COLOR_SC
    dataset.SOPInstanceUID = generate_uid()
    dataset.ImageType = ["DERIVED", "SECONDARY"]
    dataset.ConversionType = "WSD"
    dataset.PatientOrientation = [_direction_letters(np.asarray(orientation[i:i + 3], dtype=float)) for i in (0, 3)]
    dataset.InstanceNumber = 1
    n_frames = volume.spatial_shape[2]
    dataset.NumberOfFrames = n_frames
    dataset.FrameIncrementPointer = pydicom.tag.Tag("SliceLocationVector")
    dataset.SliceLocationVector = [format_number_as_ds(float((origin + k * step) @ normal)) for k in range(n_frames)]
    _add_functional_groups(dataset, origin, step, orientation, spacing, n_frames)
    dataset.SamplesPerPixel = 3
    dataset.PhotometricInterpretation = "RGB"
    dataset.PlanarConfiguration = 0
    dataset.Rows, dataset.Columns = volume.spatial_shape[1], volume.spatial_shape[0]
    dataset.BitsAllocated = 8
    dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    # (3, I, J, K) -> (K, rows=J, columns=I, 3)
    dataset.PixelData = np.ascontiguousarray(np.transpose(rgb, (3, 2, 1, 0))).tobytes()
    dataset.file_meta = _file_meta(MULTIFRAME_TRUE_COLOR_SC, dataset.SOPInstanceUID)
    with atomic_file(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _add_functional_groups(dataset: Dataset, origin, step, orientation, spacing, n_frames: int) -> None:
    measures = Dataset()
    measures.PixelSpacing = [format_number_as_ds(float(v)) for v in spacing]
    measures.SliceThickness = format_number_as_ds(float(np.linalg.norm(step)))
    plane_orientation = Dataset()
    plane_orientation.ImageOrientationPatient = orientation
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([plane_orientation])
    dataset.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in range(n_frames):
        position = Dataset()
        position.ImagePositionPatient = [format_number_as_ds(float(v)) for v in origin + k * step]
        frame = Dataset()
        frame.PlanePositionSequence = DicomSequence([position])
        per_frame.append(frame)
    dataset.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
