"""Voxel grids in physical space, and the conversion of user images into what the engine uses.

An :class:`ImageGrid` is a shape plus an affine mapping voxel indices ``(i, j[, k])`` to RAS
millimetres (MONAI's convention, the ``.affine`` of a ``MetaTensor``). Everything the engine
computes happens in that world space; indices appear only when an image is sampled.

``torch.nn.functional.grid_sample`` wants normalised coordinates in ``[-1, 1]`` with the *last*
array axis first; :meth:`ImageGrid.index_to_normalised` builds that matrix once (with
``align_corners=True``: index 0 is -1 and index ``n - 1`` is +1), so no other module has to
think about the axis reversal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd

from monai_fusion.errors import InputError

__all__ = ["ImageGrid", "SpatialImage", "as_spatial_image", "MIN_AXIS_SIZE"]

#: Smallest size along any axis the engine accepts (a pyramid and a cubic Parzen window need room).
MIN_AXIS_SIZE = 4


@dataclass(frozen=True)
class ImageGrid:
    """A voxel grid: ``shape`` and the ``affine`` (``(D+1, D+1)``, float64) from indices to RAS mm."""

    affine: np.ndarray
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if affine.shape != (self.dims + 1, self.dims + 1):
            raise ValueError(f"a {self.dims}D grid needs a {(self.dims + 1,) * 2} affine, got {affine.shape}")

    @classmethod
    def of(cls, image) -> "ImageGrid":
        """The grid of a channel-first image; plain tensors and arrays get 1 mm identity geometry."""
        dims = image.ndim - 1
        affine = image.affine if isinstance(image, MetaTensor) else np.eye(dims + 1)
        affine = np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu().numpy())
        return cls(to_affine_nd(dims, affine), tuple(image.shape[1:]))

    @property
    def dims(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis in mm."""
        return np.linalg.norm(self.affine[: self.dims, : self.dims], axis=0)

    @property
    def inverse_affine(self) -> np.ndarray:
        return np.linalg.inv(self.affine)

    def centre(self) -> np.ndarray:
        """World position of the grid's geometric centre (the middle of its first and last voxels)."""
        return self.index_to_world(np.array([(s - 1) / 2.0 for s in self.shape]))

    def index_to_world(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.float64)
        return indices @ self.affine[: self.dims, : self.dims].T + self.affine[: self.dims, self.dims]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        inverse = self.inverse_affine
        points = np.asarray(points, dtype=np.float64)
        return points @ inverse[: self.dims, : self.dims].T + inverse[: self.dims, self.dims]

    def index_to_normalised(self) -> np.ndarray:
        """Homogeneous matrix from voxel indices to ``grid_sample`` coordinates (reversed axis order)."""
        dims = self.dims
        scale = np.eye(dims + 1)
        for axis, size in enumerate(self.shape):
            scale[axis, axis] = 2.0 / max(size - 1, 1)
            scale[axis, dims] = -1.0
        reverse = np.eye(dims + 1)
        reverse[:dims, :dims] = np.eye(dims)[::-1]
        return reverse @ scale

    def world_to_normalised(self) -> np.ndarray:
        return self.index_to_normalised() @ self.inverse_affine

    def shrunk(self, factors) -> "ImageGrid":
        """The grid of an average-pooled image (``kernel = stride = factors``, remainders dropped).

        New voxel ``n`` averages old voxels ``f*n .. f*n + f - 1``, so its centre is old index
        ``f*n + (f - 1) / 2``.
        """
        factors = np.asarray(factors, dtype=np.float64)
        step = np.eye(self.dims + 1)
        step[: self.dims, : self.dims] = np.diag(factors)
        step[: self.dims, self.dims] = (factors - 1) / 2.0
        shape = tuple(int(s // f) for s, f in zip(self.shape, factors.astype(int)))
        return ImageGrid(self.affine @ step, shape)

    def corners_world(self) -> np.ndarray:
        """World positions of the ``2**D`` corner voxels."""
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.shape], indexing="ij")).reshape(self.dims, -1).T
        return self.index_to_world(corners)

    def same_as(self, other: "ImageGrid", atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


@dataclass
class SpatialImage:
    """One single-channel image as the engine uses it: ``data`` ``(*spatial)`` float32 and its grid."""

    data: torch.Tensor
    grid: ImageGrid

    @property
    def dims(self) -> int:
        return self.grid.dims


def as_spatial_image(image, name: str, device: torch.device | str | None = None, allow_nonfinite: bool = False) -> SpatialImage:
    """Check a channel-first single-channel 2D/3D image and return it as a :class:`SpatialImage`.

    Raises:
        InputError: for anything that cannot be registered (wrong rank, several channels, tiny or
            empty, NaN/Inf voxels, a singular affine).
    """
    if isinstance(image, SpatialImage):
        return image
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise InputError(f"the {name} image must be a MetaTensor, torch tensor or numpy array, not {type(image).__name__}")
    if image.ndim not in (3, 4):
        raise InputError(
            f"the {name} image has shape {tuple(image.shape)}; give a channel-first 2D (C, I, J) or 3D (C, I, J, K) image"
        )
    if image.shape[0] != 1:
        raise InputError(
            f"the {name} image has {image.shape[0]} channels; register one channel (e.g. image[:1], or the luma of a colour image)"
        )
    if image.numel() == 0:
        raise InputError(f"the {name} image is empty (shape {tuple(image.shape)}); load a non-empty image")
    grid = ImageGrid.of(image)
    if min(grid.shape) < MIN_AXIS_SIZE:
        raise InputError(
            f"the {name} image has only {min(grid.shape)} voxel(s) along one axis (shape {grid.shape}); "
            f"registration needs at least {MIN_AXIS_SIZE} (squeeze a single-slice 3D image to 2D)"
        )
    if abs(np.linalg.det(grid.affine[: grid.dims, : grid.dims])) < 1e-12:
        raise InputError(f"the {name} image's affine is singular; fix its geometry (spacing/direction) first")
    data = torch.as_tensor(image.as_tensor() if isinstance(image, MetaTensor) else image)[0]
    if device is not None:
        data = data.to(device)
    data = data.to(torch.float32)
    if not allow_nonfinite and not bool(torch.isfinite(data.sum())):  # one reduction; count only when needed
        bad = int((~torch.isfinite(data)).sum())
        if bad:
            raise InputError(f"the {name} image has {bad} NaN/Inf voxel(s); clean it (e.g. torch.nan_to_num) before registering")
    return SpatialImage(data.contiguous(), grid)
