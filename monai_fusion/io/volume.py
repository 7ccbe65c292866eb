"""Turning whatever the caller holds into one checked ``(C, I, J, K)`` array plus a RAS affine.

Writers accept a ``MetaTensor`` (geometry from its ``affine``), or a numpy array / tensor with
an explicit ``affine``. Arrays without a channel axis are given one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from monai_fusion.errors import OutputError

__all__ = ["Volume", "as_volume"]


@dataclass
class Volume:
    """Channel-first voxel data ``(C, I, J, K)`` with its RAS affine and metadata."""

    array: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.array.shape[0]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[1:])


def as_volume(image, affine=None, *, channels: int | None = None, allow_nonfinite: bool = False) -> Volume:
    """Validate and unpack an image for writing.

    Args:
        image: ``MetaTensor``, tensor or array shaped ``(C, I, J, K)``, ``(I, J, K)`` or ``(C, I, J)``
            / ``(I, J)`` for a single slice.
        affine: RAS affine; required unless ``image`` carries one (``MetaTensor``).
        channels: the number of channels the caller needs (1 for grey, 3 for RGB), if fixed.
        allow_nonfinite: accept NaN/Inf voxels (writers refuse them by default).

    Raises:
        OutputError: wrong shape, missing geometry, NaN/Inf voxels.
    """
    meta = dict(getattr(image, "meta", {}) or {})
    if affine is None:
        affine = meta.get("affine")
    if affine is None:
        raise OutputError("the image carries no affine; pass affine= (4x4, RAS) to say where the voxels are")
    affine = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise OutputError(f"invalid affine {affine.tolist()}: it must be a finite, invertible 4x4 matrix")
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    else:
        array = np.asarray(image)
    if len(np.atleast_1d(meta.get("spatial_shape", ()))) == 2 and array.ndim == 3:
        array = array[..., None]  # a 2D MetaTensor (C, I, J): one slice
    if array.ndim == 2:
        array = array[None, :, :, None]
    elif array.ndim == 3:
        array = array[None] if channels in (None, 1) or array.shape[0] != channels else array[..., None]
    if array.ndim != 4:
        raise OutputError(f"cannot write an array of shape {tuple(array.shape)}: expected (C, I, J, K) or (I, J, K)")
    if channels is not None and array.shape[0] != channels:
        raise OutputError(f"expected {channels} channel(s), got an array of shape {tuple(array.shape)} (channel first)")
    if np.issubdtype(array.dtype, np.floating) and not allow_nonfinite:
        n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise OutputError(f"the image has {n_bad} NaN/Inf voxel(s); replace them before writing (nothing was written)")
    return Volume(array=array, affine=affine, meta=meta)
