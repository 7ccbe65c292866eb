""":func:`~monai_fusion.io.load_image` as a MONAI ``ImageReader``, for ``LoadImage(d)`` pipelines.

``LoadImaged(keys=["ct", "mr"], reader=FusionImageReader())`` gives the same channel-first
float32 ``MetaTensor`` s, geometry, HU/SUV values and series checks as ``load_image``, inside an
ordinary MONAI transform chain. Options of ``load_image`` (``modality``, ``irregular_slices``...)
are given to the reader's constructor. The data it returns is already channel first
(``original_channel_dim = 0``), so ``ensure_channel_first=True`` leaves it unchanged.

Caveat: when a reader given to ``LoadImage`` raises, MONAI falls back to its other registered
readers, which accept inputs we refuse (a series with a missing slice, say). For strict loading
use :class:`monai_fusion.transforms.LoadVolume` / ``LoadVolumed``, which never fall back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from monai.data import ImageReader

from monai_fusion.errors import InputError
from monai_fusion.io.dicom_scan import is_dicom_file
from monai_fusion.io.reader import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, load_image

__all__ = ["FusionImageReader"]


class FusionImageReader(ImageReader):
    """MONAI reader for NIfTI, NRRD/MHA, DICOM files and DICOM folders.

    Args:
        load_kwargs: keyword arguments of :func:`~monai_fusion.io.load_image`.

    Example:
        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged(keys="ct", reader=FusionImageReader())  # doctest: +SKIP
        >>> load({"ct": "mridir/ct"})["ct"].meta["units"]  # doctest: +SKIP
        'HU'
    """

    def __init__(self, **load_kwargs):
        super().__init__()
        self.load_kwargs = load_kwargs

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(self._supported(Path(name)) for name in names)

    @staticmethod
    def _supported(path: Path) -> bool:
        name = path.name.lower()
        return path.is_dir() or name.endswith(NIFTI_SUFFIXES + ITK_SUFFIXES + RASTER_SUFFIXES + (".dcm",)) or is_dicom_file(path)

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs):
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if len(names) != 1:
            raise InputError(f"{len(names)} paths given for one image; give the DICOM folder or one file")
        return load_image(names[0], **{**self.load_kwargs, **kwargs})

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        meta = dict(img.meta)
        meta["affine"] = img.affine.numpy()
        meta["original_affine"] = np.asarray(meta.get("original_affine", meta["affine"]))
        meta["original_channel_dim"] = 0
        return img.numpy(), meta
