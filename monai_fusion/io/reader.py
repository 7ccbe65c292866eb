"""One entry point to read medical images as MONAI ``MetaTensor`` s with exact geometry.

:func:`load_image` takes a NIfTI file, an ITK-readable file (NRRD, MHA/MHD...), a DICOM file or
a DICOM folder and returns a channel-first float32 ``MetaTensor`` ``(C, I, J, K)`` whose
``affine`` maps voxel indices to RAS millimetres (MONAI's convention).

Why these libraries: NIfTI is read with nibabel (what MONAI's ``NibabelReader`` wraps) so that
the sform/qform choice, scaling and big-endian storage are nibabel's tested logic; NRRD/MHA with
SimpleITK, which converts any NRRD ``space`` to LPS; DICOM with pydicom directly, because MONAI's
``PydicomReader`` and ``ITKReader`` neither choose among several series, nor detect missing
slices, nor convert PET to SUV. Values: CT in Hounsfield units (rescale slope/intercept), PET in
SUVbw when the headers allow (else stored units plus a warning), everything else with its
modality rescale applied.

Metadata keys on the result (all free of patient identifiers): ``affine``, ``original_affine``,
``spatial_shape``, ``space`` ("RAS"), ``spacing``, ``filename_or_obj``, ``source_format``,
``modality``, ``units``, ``series_instance_uid``, ``study_instance_uid``,
``frame_of_reference_uid``, ``series_number``, ``series_description``, ``dicom_files`` (sorted by
slice position; the writer uses them as the reference series), ``warnings``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.io.dicom_scan import DicomSeries, is_dicom_file, scan_dicom, select_series
from monai_fusion.io.dicom_volume import assemble_volume, frame_planes, read_pixels
from monai_fusion.io.geometry import affine_from_sitk, spacing_from_affine
from monai_fusion.io.pet_suv import suv_bw_conversion

__all__ = ["load_image", "list_series", "NIFTI_SUFFIXES", "ITK_SUFFIXES"]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".vtk")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_NONFINITE_POLICIES = ("error", "keep", "zero")
_DEFAULT_UNITS = {"CT": "HU", "NM": "counts", "MR": "arbitrary"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def list_series(path: str | os.PathLike) -> list[DicomSeries]:
    """The DICOM image series found in a file or folder (headers only; see :func:`scan_dicom`)."""
    return scan_dicom(path)


def load_image(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    modality: str | None = None,
    series_number: int | None = None,
    require_3d: bool = True,
    irregular_slices: str = "error",
    nonfinite: str = "error",
    suv: bool = True,
) -> MetaTensor:
    """Read an image volume with its geometry and metadata.

    Args:
        path: NIfTI/NRRD/MHA file, DICOM file, folder holding DICOM series, or a 2D PNG/JPEG/TIFF
            (returned as ``(C, I, J)`` with an identity affine: such files have no geometry).
        series_uid, modality, series_number: choose a DICOM series when a folder holds several.
            ``modality`` also labels non-DICOM images (they carry no modality of their own).
        require_3d: refuse 4D images (time series, several volumes) instead of returning them as
            channels.
        irregular_slices: ``"error"`` or ``"resample"`` for DICOM series with missing slices or
            uneven spacing.
        nonfinite: ``"error"`` (refuse NaN/Inf voxels), ``"zero"`` (replace them, with a warning)
            or ``"keep"``.
        suv: convert PET in Bq/ml to SUVbw when the headers allow.

    Returns:
        ``MetaTensor`` of shape ``(C, I, J, K)``, float32 (uint8 for RGB colour images).

    Raises:
        InputError: for anything wrong with the input, with a one-line explanation.

    Example:
        >>> ct = load_image("mridir/ct")  # doctest: +SKIP
        >>> ct.shape, ct.meta["units"], ct.meta["spacing"]  # doctest: +SKIP
        (torch.Size([1, 512, 512, 103]), 'HU', (0.390625, 0.390625, 2.5))
    """
    if nonfinite not in _NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {_NONFINITE_POLICIES}, not {nonfinite!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    suffix = _suffix(path)
    if path.is_dir() or suffix == ".dcm" or (path.is_file() and suffix not in NIFTI_SUFFIXES + ITK_SUFFIXES and is_dicom_file(path)):
        array, meta = _read_dicom(path, series_uid, modality, series_number, irregular_slices, suv)
    elif suffix in NIFTI_SUFFIXES:
        array, meta = _read_nifti(path)
    elif suffix in ITK_SUFFIXES:
        array, meta = _read_itk(path)
    elif suffix in RASTER_SUFFIXES:
        array, meta = _read_raster(path)
    else:
        raise InputError(f"{path}: unknown image format '{suffix}'; give a NIfTI, NRRD, MHA, PNG file or a DICOM file/folder")
    if modality and meta.get("modality") in (None, ""):
        meta["modality"] = modality.upper()
    return _to_metatensor(array, meta, path, require_3d, nonfinite)


def _to_metatensor(array: np.ndarray, meta: dict, path: Path, require_3d: bool, nonfinite: str) -> MetaTensor:
    """Channel-first MetaTensor from an (I, J, K[, C]) array, after the shape and value checks."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 4 and require_3d and not meta.get("is_rgb"):
        raise InputError(f"{path} holds {array.shape[3]} volumes (4D) where one 3D volume is required; extract one volume first")
    if array.ndim > 4:
        raise InputError(f"{path} has {array.ndim} dimensions; only 3D volumes (optionally with channels) are supported")
    channels = array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    if not meta.get("is_rgb"):
        channels = channels.astype(np.float32, copy=False)
        bad = ~np.isfinite(channels)
        n_bad = int(bad.sum())
        if n_bad and nonfinite == "error":
            raise InputError(f"{path} has {n_bad} NaN/Inf voxel(s); clean the image or load it with nonfinite='zero'")
        if n_bad and nonfinite == "zero":
            channels = np.where(bad, np.float32(0), channels)
            meta.setdefault("warnings", []).append(f"{n_bad} NaN/Inf voxel(s) replaced by 0")
        meta["nonfinite_voxels"] = n_bad
    if meta.get("is_2d"):
        channels = channels[..., 0]
    affine = torch.as_tensor(meta.pop("affine_np"), dtype=torch.float64)
    meta.update(
        {
            "affine": affine,
            "original_affine": affine.clone(),
            "spatial_shape": np.asarray(channels.shape[1:]),
            "space": "RAS",
            "spacing": tuple(float(v) for v in spacing_from_affine(affine.numpy())[: channels.ndim - 1]),
            "filename_or_obj": str(path),
            "original_channel_dim": 0,
        }
    )
    meta.setdefault("warnings", [])
    for note in meta["warnings"]:
        warnings.warn(f"{path.name}: {note}", stacklevel=3)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(channels)), meta=meta)


def _read_nifti(path: Path) -> tuple[np.ndarray, dict]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as err:
        raise InputError(f"{path} cannot be read as NIfTI ({_first_line(err)}); the file may be truncated") from None
    is_rgb = data.dtype.names is not None
    if is_rgb:  # RGB24 / RGBA32 structured voxels -> trailing channel axis
        data = np.stack([data[name] for name in data.dtype.names[:3]], axis=-1).astype(np.uint8)
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI keeps time at dim 4 and vector components at dim 5
        data = data[:, :, :, 0, :]
    meta = {"affine_np": np.asarray(image.affine, dtype=float), "source_format": "nifti", "is_rgb": is_rgb, "units": "unknown"}
    return data, meta


def _read_itk(path: Path) -> tuple[np.ndarray, dict]:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(f"{path} cannot be read ({_first_line(err)}); the file may be truncated or not an image") from None
    if image.GetDimension() not in (2, 3):
        raise InputError(f"{path} is a {image.GetDimension()}D image; only 2D and 3D images are supported")
    components = image.GetNumberOfComponentsPerPixel()
    data = sitk.GetArrayFromImage(image)  # (K, J, I[, C])
    spatial = data.ndim - (1 if components > 1 else 0)
    data = np.moveaxis(data, range(spatial), range(spatial)[::-1])
    is_rgb = components == 3 and data.dtype == np.uint8
    meta = {"affine_np": affine_from_sitk(image), "source_format": _suffix(path).lstrip("."), "is_rgb": is_rgb, "units": "unknown"}
    return data, meta


def _read_raster(path: Path) -> tuple[np.ndarray, dict]:
    """2D PNG/JPEG/BMP/TIFF via Pillow, indexed like MONAI's PILReader: i along a row, j down.

    Such files carry no geometry: the affine is the identity (1 mm pixels). Palette and
    grey+alpha images are expanded to RGB / grey; alpha is dropped.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("P", "RGBA", "CMYK", "YCbCr", "LA", "PA"):
                image = image.convert("L" if image.mode in ("LA",) else "RGB")
            data = np.asarray(image)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} cannot be read as an image ({_first_line(err)}); the file may be truncated") from None
    is_rgb = data.ndim == 3
    if data.dtype == bool:
        data = data.astype(np.uint8)
    data = np.swapaxes(data, 0, 1)[:, :, None]  # (rows, cols[, 3]) -> (I=cols, J=rows, K=1[, 3])
    if is_rgb:
        data = data.astype(np.uint8)
    return data, {"affine_np": np.eye(4), "source_format": path.suffix.lower().lstrip("."), "is_rgb": is_rgb,
                  "is_2d": True, "units": "unknown"}


def _read_dicom(path, series_uid, modality, series_number, irregular_slices, suv) -> tuple[np.ndarray, dict]:
    series = select_series(scan_dicom(path), series_uid, modality, series_number)
    names = [str(f) for f in series.files]
    planes = frame_planes(series.headers, names)
    decoded: dict[int, np.ndarray] = {}

    def read_frame(plane) -> np.ndarray:
        if plane.frame_index is None:
            return read_pixels(series.files[plane.file_index])
        if plane.file_index not in decoded:
            decoded[plane.file_index] = read_pixels(series.files[plane.file_index])
        pixels = decoded[plane.file_index]
        expected_ndim = 3 + (int(series.headers[plane.file_index].get("SamplesPerPixel", 1)) > 1)
        return pixels[plane.frame_index] if pixels.ndim == expected_ndim else pixels

    volume = assemble_volume(planes, read_frame, series.files, irregular_slices)
    first = series.headers[0]
    meta = {
        "affine_np": volume.affine,
        "source_format": "dicom",
        "modality": series.modality,
        "units": _DEFAULT_UNITS.get(series.modality, "unknown"),
        "series_instance_uid": series.series_instance_uid,
        "study_instance_uid": str(first.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
        "series_number": series.series_number,
        "series_description": series.description,
        "sop_class_uid": str(first.get("SOPClassUID", "")),
        "dicom_files": [str(f) for f in volume.ordered_files],
        "is_rgb": int(first.get("SamplesPerPixel", 1)) == 3,
        "warnings": list(volume.warnings),
    }
    array = volume.array
    if series.modality == "PT":
        conversion = suv_bw_conversion(series.headers)
        meta["units"] = conversion.units
        if not suv:
            meta["units"] = str(first.get("Units", "unknown"))
        elif conversion.factor is not None:
            array = array * np.float32(conversion.factor)
            meta["suv_factor"] = conversion.factor
        else:
            meta["warnings"].append(f"PET left in stored units ({conversion.units}): {conversion.reason}")
    if meta["is_rgb"]:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array, meta


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
