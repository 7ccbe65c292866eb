"""NIfTI and NRRD writers (grey and RGB colour), atomic and geometry-exact.

* NIfTI: float32 (or the RGB24 datatype for colour), sform **and** qform set from the affine with
  code 1 (scanner), units mm. A sheared affine cannot be held by the qform; the sform keeps it.
* NRRD: written with pynrrd in ``left-posterior-superior`` space (what 3D Slicer writes), gzip
  encoded, ``space directions``/``space origin`` from the affine. Colour volumes are ``uchar``
  with a leading ``RGB-color`` axis, which Slicer loads as a vector (colour) volume.

Both refuse NaN/Inf voxels and write to a temporary name before renaming into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from monai_fusion.errors import OutputError
from monai_fusion.io.atomic import atomic_file
from monai_fusion.io.geometry import LPS_TO_RAS
from monai_fusion.io.volume import as_volume

__all__ = ["write_nifti", "write_nrrd", "write_rgb_nrrd", "write_rgb_nifti", "to_rgb_uint8"]


def _check_suffix(path: Path, allowed: tuple[str, ...]) -> None:
    name = path.name.lower()
    if not name.endswith(allowed):
        raise OutputError(f"{path}: the file name must end with {' or '.join(allowed)}")


def write_nifti(image, path: str | os.PathLike, affine=None, *, dtype=np.float32) -> Path:
    """Write a single-channel volume as NIfTI-1 (``.nii`` or ``.nii.gz``).

    Args:
        image: ``MetaTensor``/array ``(1, I, J, K)`` or ``(I, J, K)``.
        path: output file name.
        affine: RAS affine when ``image`` does not carry one.
        dtype: voxel type on disk (float32 by default).

    Example:
        >>> write_nifti(load_image("t1.nii.gz"), "out/t1_copy.nii.gz")  # doctest: +SKIP
    """
    path = Path(path)
    _check_suffix(path, (".nii", ".nii.gz"))
    volume = as_volume(image, affine, channels=1)
    nifti = nib.Nifti1Image(volume.array[0].astype(dtype, copy=False), volume.affine)
    _set_nifti_geometry(nifti, volume.affine)
    with atomic_file(path) as tmp:
        nib.save(nifti, str(tmp))
    return path


def _set_nifti_geometry(nifti: nib.Nifti1Image, affine: np.ndarray) -> None:
    nifti.set_sform(affine, code=1)
    nifti.set_qform(affine, code=1)
    nifti.header.set_xyzt_units("mm", "sec")


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Colour data as uint8: integer data must already be 0..255; floats in 0..1 are scaled."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if low < 0 or high > 255:
            raise OutputError(f"colour values must lie in 0..1 or 0..255, found {low:.3g}..{high:.3g}")
        scale = 255.0 if high <= 1.0 else 1.0
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    if np.min(array) < 0 or np.max(array) > 255:
        raise OutputError("integer colour values must lie in 0..255")
    return array.astype(np.uint8)


def write_rgb_nifti(image, path: str | os.PathLike, affine=None) -> Path:
    """Write a ``(3, I, J, K)`` colour volume with the NIfTI RGB24 datatype."""
    path = Path(path)
    _check_suffix(path, (".nii", ".nii.gz"))
    volume = as_volume(image, affine, channels=3)
    rgb = to_rgb_uint8(volume.array)
    packed = np.empty(volume.spatial_shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    for index, name in enumerate("RGB"):
        packed[name] = rgb[index]
    nifti = nib.Nifti1Image(packed, volume.affine)
    _set_nifti_geometry(nifti, volume.affine)
    with atomic_file(path) as tmp:
        nib.save(nifti, str(tmp))
    return path


def _nrrd_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lps = LPS_TO_RAS @ affine
    return lps[:3, :3].T.copy(), lps[:3, 3].copy()  # one row per axis direction, as NRRD lists them


def _write_nrrd(path: Path, data: np.ndarray, affine: np.ndarray, nrrd_type: str, colour: bool, compress: bool) -> Path:
    directions, origin = _nrrd_geometry(affine)
    header = {
        "type": nrrd_type,
        "dimension": data.ndim,
        "space": "left-posterior-superior",
        "space directions": np.vstack([np.full((1, 3), np.nan), directions]) if colour else directions,
        "space origin": origin,
        "kinds": (["RGB-color"] if colour else []) + ["domain"] * 3,
        "endian": "little",
        "encoding": "gzip" if compress else "raw",
    }
    with atomic_file(path) as tmp:
        nrrd.write(str(tmp), data, header, index_order="F")
    return path


def write_nrrd(image, path: str | os.PathLike, affine=None, *, compress: bool = True) -> Path:
    """Write a single-channel volume as NRRD (float32, LPS space, readable by 3D Slicer)."""
    path = Path(path)
    _check_suffix(path, (".nrrd",))
    volume = as_volume(image, affine, channels=1)
    return _write_nrrd(path, volume.array[0].astype("<f4", copy=False), volume.affine, "float", False, compress)


def write_rgb_nrrd(image, path: str | os.PathLike, affine=None, *, compress: bool = True) -> Path:
    """Write a ``(3, I, J, K)`` colour volume as NRRD with an ``RGB-color`` axis (uchar)."""
    path = Path(path)
    _check_suffix(path, (".nrrd",))
    volume = as_volume(image, affine, channels=3)
    return _write_nrrd(path, to_rgb_uint8(volume.array), volume.affine, "uchar", True, compress)
