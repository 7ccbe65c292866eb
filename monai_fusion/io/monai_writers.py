"""Our writers as MONAI ``ImageWriter`` s, so ``SaveImage``/``SaveImaged`` can use them.

Pass one explicitly, e.g. ``SaveImaged(keys="pred", output_ext=".nrrd", writer=NrrdImageWriter)``.
Importing :mod:`monai_fusion.io` registers :class:`DicomSeriesImageWriter` for the ``.dcm``
extension (MONAI has no DICOM writer, so nothing is shadowed); NIfTI and NRRD keep MONAI's own
defaults unless a writer is named.

With ``.dcm`` the file name ``out/case_fused.dcm`` that ``SaveImage`` builds becomes the
*folder* ``out/case_fused/`` holding one file per slice. The reference series is taken from the
image's ``dicom_files`` metadata (images read by :func:`monai_fusion.io.load_image` from DICOM
carry it) unless ``reference=`` is given in ``write_kwargs``.

Geometry: data are written where their current ``affine`` puts them. With ``resample=True`` (an
option of ``SaveImage``) they are first resampled onto ``original_affine``/``spatial_shape``,
like MONAI's writers do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from monai.data import ImageWriter, MetaTensor, register_writer
from monai.transforms import SpatialResample

from monai_fusion.io.dicom_writer import write_dicom_series, write_rgb_dicom
from monai_fusion.io.writers import write_nifti, write_nrrd, write_rgb_nifti, write_rgb_nrrd

__all__ = [
    "NiftiImageWriter",
    "NrrdImageWriter",
    "RgbNrrdImageWriter",
    "RgbNiftiImageWriter",
    "DicomSeriesImageWriter",
    "RgbDicomImageWriter",
    "register_dicom_writer",
]


class _FusionImageWriter(ImageWriter):
    """Shared ``ImageWriter`` plumbing: channel-first data, affine from metadata, one write function."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.affine: np.ndarray | None = None
        self.meta: dict = {}

    def set_data_array(self, data_array, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs):
        data = data_array.detach().cpu() if isinstance(data_array, torch.Tensor) else torch.as_tensor(np.asarray(data_array))
        data = data.as_tensor() if isinstance(data, MetaTensor) else data
        if channel_dim is None:
            data = data[None]
        elif channel_dim != 0:
            data = torch.movedim(data, channel_dim, 0)
        self.data_obj = data

    def set_metadata(self, meta_dict=None, resample: bool = False, mode: str = "bilinear",
                     padding_mode: str = "border", **options):
        meta = dict(meta_dict or {})
        affine = meta.get("affine")
        if affine is None:
            raise ValueError("metadata has no 'affine': the writer cannot know where the voxels are")
        original = meta.get("original_affine")
        if resample and original is not None and not np.allclose(np.asarray(affine), np.asarray(original), atol=1e-6):
            image = MetaTensor(self.data_obj.float(), affine=torch.as_tensor(np.asarray(affine), dtype=torch.float64))
            resampled = SpatialResample(mode=mode, padding_mode=padding_mode)(
                image, dst_affine=torch.as_tensor(np.asarray(original), dtype=torch.float64),
                spatial_size=tuple(int(v) for v in meta.get("spatial_shape", image.shape[1:])),
            )
            self.data_obj, affine = resampled.as_tensor(), resampled.affine
        self.affine = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=float)
        self.meta = meta

    def _image(self) -> MetaTensor:
        return MetaTensor(self.data_obj, meta={**self.meta, "affine": torch.as_tensor(self.affine)})

    def write(self, filename: str | os.PathLike, verbose: bool = True, **kwargs):
        super().write(filename, verbose=verbose)
        return self._write(self._image(), Path(filename), **kwargs)

    def _write(self, image: MetaTensor, path: Path, **kwargs):
        raise NotImplementedError


class NiftiImageWriter(_FusionImageWriter):
    """Single-channel float32 NIfTI via :func:`~monai_fusion.io.writers.write_nifti`."""

    def _write(self, image, path, **kwargs):
        return write_nifti(image, path, **kwargs)


class NrrdImageWriter(_FusionImageWriter):
    """Single-channel float32 NRRD via :func:`~monai_fusion.io.writers.write_nrrd`."""

    def _write(self, image, path, **kwargs):
        return write_nrrd(image, path, **kwargs)


class RgbNrrdImageWriter(_FusionImageWriter):
    """Three-channel colour NRRD (``RGB-color`` kind) via :func:`~monai_fusion.io.writers.write_rgb_nrrd`."""

    def _write(self, image, path, **kwargs):
        return write_rgb_nrrd(image, path, **kwargs)


class RgbNiftiImageWriter(_FusionImageWriter):
    """Three-channel colour NIfTI (RGB24) via :func:`~monai_fusion.io.writers.write_rgb_nifti`."""

    def _write(self, image, path, **kwargs):
        return write_rgb_nifti(image, path, **kwargs)


def _strip_dicom_suffix(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() == ".dcm" else path


class DicomSeriesImageWriter(_FusionImageWriter):
    """DICOM derived series (a folder of slices) via :func:`~monai_fusion.io.dicom_writer.write_dicom_series`."""

    def _write(self, image, path, **kwargs):
        return write_dicom_series(image, _strip_dicom_suffix(path), **kwargs)


class RgbDicomImageWriter(_FusionImageWriter):
    """Colour volume as one Multi-frame True Color SC file via :func:`~monai_fusion.io.dicom_writer.write_rgb_dicom`."""

    def _write(self, image, path, **kwargs):
        return write_rgb_dicom(image, path, **kwargs)


def register_dicom_writer() -> None:
    """Make ``SaveImage(output_ext=".dcm")`` write DICOM derived series (idempotent)."""
    from monai.data.image_writer import SUPPORTED_WRITERS

    if DicomSeriesImageWriter not in SUPPORTED_WRITERS.get("dcm", ()):
        register_writer("dcm", DicomSeriesImageWriter)
