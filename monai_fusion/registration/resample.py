"""Resample a moving image on a reference grid through a transform (fixed world -> moving world).

For each reference voxel ``i``: world point ``x = A_ref i``, moving point ``y = T(x)``, moving
voxel index ``A_mov^-1 y``, then ``grid_sample`` (``align_corners=True``: index 0 is -1, index
``n - 1`` is +1, see :meth:`~monai_fusion.registration.grid.ImageGrid.index_to_normalised`). A
linear transform collapses into one float64 matrix from reference indices to normalised
coordinates. Large grids are processed in slabs to bound memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.registration.grid import ImageGrid
from monai_fusion.registration.spatial import SpatialTransform, as_transform

__all__ = ["resample", "reference_grid", "RESAMPLE_MODES", "PADDING_MODES"]

RESAMPLE_MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
_POINTS_PER_SLAB = 1 << 22


def reference_grid(reference, dims: int | None = None) -> ImageGrid:
    """An :class:`ImageGrid` from a channel-first image, an ``ImageGrid`` or an ``(affine, spatial_shape)`` pair."""
    if isinstance(reference, ImageGrid):
        return reference
    if isinstance(reference, tuple) and len(reference) == 2:
        affine, shape = reference
        shape = tuple(int(s) for s in shape)
        affine = np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu().numpy())
        if affine.shape[0] != len(shape) + 1:
            from monai.data.utils import to_affine_nd

            affine = to_affine_nd(len(shape), affine)
        return ImageGrid(affine, shape)
    if isinstance(reference, (torch.Tensor, np.ndarray)):
        return ImageGrid.of(reference if isinstance(reference, torch.Tensor) else torch.as_tensor(reference))
    raise InputError(f"a reference grid must be an image, an ImageGrid or (affine, shape), not {type(reference).__name__}")


def _index_points(grid: ImageGrid, start: int, stop: int, device) -> torch.Tensor:
    axes = [torch.arange(start, stop, device=device, dtype=torch.float64)]
    axes += [torch.arange(s, device=device, dtype=torch.float64) for s in grid.shape[1:]]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, grid.dims)


def resample(moving, transform, reference, mode: str = "bilinear", padding_mode: str = "zeros") -> MetaTensor:
    """``moving`` resampled on ``reference``'s grid: output voxel ``x`` holds ``moving(T(x))``.

    Args:
        moving: channel-first image ``(C, *spatial)`` (MetaTensor for its geometry; plain tensors
            have 1 mm identity geometry). Every channel is resampled.
        transform: fixed (reference) world -> moving world: a transform, a
            :class:`~monai_fusion.registration.result.RegistrationResult` or a RAS matrix.
        reference: the output grid: a channel-first image, an ``ImageGrid`` or ``(affine, shape)``.
        mode: ``"bilinear"``, ``"nearest"`` (labels stay labels) or ``"bicubic"`` (2D only).
        padding_mode: value outside the moving image: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        float32 ``MetaTensor`` on the reference grid, with the moving image's metadata and the
        reference affine.

    Example:
        >>> import torch
        >>> from monai_fusion.registration.spatial import AffineTransform
        >>> image = torch.arange(16.0).view(1, 4, 4)
        >>> out = resample(image, AffineTransform.from_translation([1.0, 0.0]), image)
        >>> [round(v, 3) for v in out[0, :, 0].tolist()]
        [4.0, 8.0, 12.0, 0.0]
    """
    if mode not in RESAMPLE_MODES:
        raise InputError(f"unknown interpolation mode {mode!r}; choose from {RESAMPLE_MODES}")
    if padding_mode not in PADDING_MODES:
        raise InputError(f"unknown padding mode {padding_mode!r}; choose from {PADDING_MODES}")
    if not isinstance(moving, torch.Tensor):
        moving = torch.as_tensor(np.asarray(moving))
    moving_grid = ImageGrid.of(moving)
    dims = moving_grid.dims
    if dims == 3 and mode == "bicubic":
        raise InputError("bicubic interpolation is 2D only in torch; use 'bilinear' for 3D images")
    grid = reference_grid(reference, dims)
    if grid.dims != dims:
        raise InputError(f"the moving image is {dims}D but the reference grid {grid.dims}D")
    transform: SpatialTransform = as_transform(transform, dims)
    data = moving.as_tensor() if isinstance(moving, MetaTensor) else moving
    data = data.to(torch.float32)
    device = data.device
    to_normalised = moving_grid.world_to_normalised()
    out = torch.empty((data.shape[0], *grid.shape), dtype=torch.float32, device=device)
    slab_rows = max(1, _POINTS_PER_SLAB // max(1, int(np.prod(grid.shape[1:]))))
    direct = None
    if transform.is_linear:
        direct = torch.as_tensor(to_normalised @ transform.linear_part().matrix @ grid.affine, device=device)
    for start in range(0, grid.shape[0], slab_rows):
        stop = min(grid.shape[0], start + slab_rows)
        index = _index_points(grid, start, stop, device)
        if direct is not None:
            normalised = index @ direct[:dims, :dims].T + direct[:dims, dims]
        else:
            affine = torch.as_tensor(grid.affine, device=device)
            world = (index @ affine[:dims, :dims].T + affine[:dims, dims]).to(torch.float32)
            moved = transform.map_points(world).to(torch.float64)
            matrix = torch.as_tensor(to_normalised, device=device)
            normalised = moved @ matrix[:dims, :dims].T + matrix[:dims, dims]
        sample_grid = normalised.to(torch.float32).view(1, stop - start, *grid.shape[1:], dims)
        out[:, start:stop] = F.grid_sample(data[None], sample_grid, mode=mode, padding_mode=padding_mode,
                                           align_corners=True)[0]
    return _as_output(out, moving, grid, reference)


def _as_output(out: torch.Tensor, moving, grid: ImageGrid, reference) -> MetaTensor:
    affine = reference.affine if isinstance(reference, MetaTensor) else _full_affine(grid)
    meta = dict(moving.meta) if isinstance(moving, MetaTensor) else {}
    result = MetaTensor(out, meta=meta)
    result.affine = torch.as_tensor(affine, dtype=torch.float64).clone()
    result.meta["spatial_shape"] = np.asarray(grid.shape)
    return result


def _full_affine(grid: ImageGrid) -> np.ndarray:
    """A 4x4 affine for MetaTensor metadata (2D grids are embedded in 3D, as MONAI does)."""
    if grid.dims == 3:
        return grid.affine.copy()
    full = np.eye(4)
    full[:2, :2] = grid.affine[:2, :2]
    full[:2, 3] = grid.affine[:2, 2]
    return full
