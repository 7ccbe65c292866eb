"""Checks of a fixed/moving pair (and masks) shared by every backend, and their initial alignment."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from monai_fusion.errors import InputError
from monai_fusion.registration.grid import SpatialImage, as_spatial_image
from monai_fusion.registration.spatial import AffineTransform

__all__ = ["prepare_pair", "prepare_mask", "padding_mask", "centre_of_mass", "initial_alignment"]


def prepare_mask(mask, image: SpatialImage, name: str) -> torch.Tensor | None:
    """A mask as a float tensor ``(*spatial)`` on the image's device; channel-first or not."""
    if mask is None:
        return None
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if hasattr(mask, "as_tensor"):
        mask = mask.as_tensor()
    if mask.ndim == image.dims + 1 and mask.shape[0] == 1:
        mask = mask[0]
    if tuple(mask.shape) != image.grid.shape:
        raise InputError(f"the {name} mask has shape {tuple(mask.shape)} but its image {image.grid.shape}; give a mask on the image's grid")
    mask = (mask.to(image.data.device) > 0).to(torch.float32)
    if not bool(mask.any()):
        raise InputError(f"the {name} mask is empty (no voxel > 0); give a mask that covers the anatomy, or none")
    return mask


def _check_structure(image: SpatialImage, mask: torch.Tensor | None, name: str) -> None:
    values = image.data if mask is None else image.data[mask > 0]
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        where = " inside its mask" if mask is not None else ""
        raise InputError(f"the {name} image is constant ({lo:g}){where}; registration needs image structure — check that the right image was loaded")


#: Centres of mass are computed on images average-pooled down to about this many voxels.
_MOMENTS_VOXELS = 2_000_000
#: A minimum value is "padding" when at least this fraction of voxels hold it ...
_PADDING_MIN_FRACTION = 0.01
#: ... and the next intensity above it is at least this fraction of the intensity range away.
_PADDING_MIN_GAP = 0.1


def padding_mask(image: SpatialImage) -> torch.Tensor | None:
    """Voxels that are not padding, or ``None`` when the image has no padding value.

    Scanners and converters fill what lies outside the reconstructed field of view with one value
    far below anything real (CT: -2048 or -3024 HU outside the reconstruction circle). Left in,
    that value draws a sharp artificial edge that mutual information happily aligns. It is
    recognised as the image minimum when it fills at least 1 % of the voxels and the next
    intensity is more than 10 % of the intensity range above it; an MR background of zeros next
    to values of 1, 2, 3... is not padding.
    """
    data = image.data
    lowest, highest = float(data.min()), float(data.max())
    subsample = data.reshape(-1)[::7]  # quick exits on a subsample: most images have no padding
    at_min = subsample == lowest
    if float(at_min.float().mean()) < _PADDING_MIN_FRACTION / 2 or bool(at_min.all()):
        return None
    if float(subsample[~at_min].min()) - lowest < _PADDING_MIN_GAP * (highest - lowest):
        return None
    is_min = data == lowest
    if float(is_min.float().mean()) < _PADDING_MIN_FRACTION or not highest > lowest:
        return None
    above = data[~is_min]
    if float(above.min()) - lowest < _PADDING_MIN_GAP * (highest - lowest):
        return None
    return (~is_min).to(torch.float32)


def _with_padding_excluded(mask: torch.Tensor | None, image: SpatialImage) -> torch.Tensor | None:
    padding = padding_mask(image)
    if padding is None:
        return mask
    return padding if mask is None else mask * padding


def prepare_pair(fixed, moving, fixed_mask=None, moving_mask=None, device=None, exclude_padding: bool = True):
    """Validated ``(fixed, moving, fixed_mask, moving_mask)`` for the engine (the moving image on the fixed's device).

    With ``exclude_padding`` the masks also leave out each image's padding value (see
    :func:`padding_mask`).

    Raises:
        InputError: 2D against 3D, several channels, NaN/Inf, constant or empty images, bad masks.
    """
    fixed_image = as_spatial_image(fixed, "fixed", device)
    moving_image = as_spatial_image(moving, "moving", fixed_image.data.device)
    if fixed_image.dims != moving_image.dims:
        raise InputError(
            f"the fixed image is {fixed_image.dims}D {fixed_image.grid.shape} and the moving image "
            f"{moving_image.dims}D {moving_image.grid.shape}; register images of the same dimension"
        )
    fixed_mask_t = prepare_mask(fixed_mask, fixed_image, "fixed")
    moving_mask_t = prepare_mask(moving_mask, moving_image, "moving")
    _check_structure(fixed_image, fixed_mask_t, "fixed")
    _check_structure(moving_image, moving_mask_t, "moving")
    if exclude_padding:
        fixed_mask_t = _with_padding_excluded(fixed_mask_t, fixed_image)
        moving_mask_t = _with_padding_excluded(moving_mask_t, moving_image)
    return fixed_image, moving_image, fixed_mask_t, moving_mask_t


def centre_of_mass(image: SpatialImage, mask: torch.Tensor | None = None) -> np.ndarray:
    """World position of the intensity centre of mass (intensities above the minimum inside ``mask``)."""
    data, grid = image.data, image.grid
    factor = int(np.ceil((data.numel() / _MOMENTS_VOXELS) ** (1.0 / data.ndim)))
    if factor > 1:  # average pooling keeps the centre of mass; a few million voxels are plenty
        pool = F.avg_pool3d if data.ndim == 3 else F.avg_pool2d
        factors = [min(factor, s) for s in data.shape]
        data = pool(data[None, None], factors, factors)[0, 0]
        mask = None if mask is None else pool(mask[None, None], factors, factors)[0, 0]
        grid = grid.shrunk(factors)
    lowest = data.min() if mask is None else data[mask > 0].min()
    weight = (data - lowest).clamp_min(0)
    if mask is not None:
        weight = weight * mask
    total = float(weight.sum())
    if total <= 0:
        return grid.centre()
    index = []
    for axis in range(image.dims):
        others = tuple(a for a in range(image.dims) if a != axis)
        profile = weight.sum(dim=others).to(torch.float64)
        index.append(float((profile * torch.arange(profile.numel(), device=profile.device, dtype=torch.float64)).sum()) / total)
    return grid.index_to_world(np.asarray(index))


def initial_alignment(fixed: SpatialImage, moving: SpatialImage, fixed_mask, moving_mask, init: str) -> AffineTransform:
    """The starting transform: identity, or a translation aligning grid centres or centres of mass."""
    if init == "identity":
        return AffineTransform.identity(fixed.dims)
    if init == "geometry":
        return AffineTransform.from_translation(moving.grid.centre() - fixed.grid.centre())
    return AffineTransform.from_translation(centre_of_mass(moving, moving_mask) - centre_of_mass(fixed, fixed_mask))
