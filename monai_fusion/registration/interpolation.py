"""Sampling images at arbitrary positions.

* :func:`grid_sample_points`: ``grid_sample`` at ``(N, D)`` normalised points (the metric's hot
  path: on CPU its forward+backward beat a gather-based interpolation written in torch ops).
* :func:`sample_linear`: (bi/tri)linear interpolation at continuous voxel *indices*, written with
  gathers, differentiable in the positions and in the volume (the deformable fields use the
  latter). Positions are clamped to the volume; callers decide which samples count.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["sample_linear", "grid_sample_points"]


def _corner_offsets(shape, device) -> tuple[torch.Tensor, torch.Tensor]:
    strides = torch.tensor([int(torch.tensor(shape[a + 1:]).prod()) if a + 1 < len(shape) else 1 for a in range(len(shape))],
                           device=device)
    corners = torch.tensor(list(itertools.product((0, 1), repeat=len(shape))), device=device)
    return strides, (corners * strides).sum(dim=1)


def sample_linear(volume: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``volume`` ``(*spatial)`` at continuous indices ``index`` ``(N, D)``.

    Differentiable with respect to ``index`` (and to ``volume``, if it requires a gradient).
    Positions outside the volume are clamped to its border.

    Example:
        >>> v = torch.arange(16.0).view(4, 4)
        >>> sample_linear(v, torch.tensor([[1.5, 2.0]])).tolist()
        [8.0]
    """
    dims = volume.ndim
    shape = volume.shape
    upper = torch.tensor([s - 1 for s in shape], device=index.device, dtype=index.dtype)
    index = torch.minimum(index.clamp_min(0), upper)
    base = torch.minimum(torch.floor(index.detach()), (upper - 1).clamp_min(0))
    frac = index - base
    strides, offsets = _corner_offsets(shape, volume.device)
    flat_base = (base.long() * strides).sum(dim=1)
    corners = volume.reshape(-1)[flat_base[:, None] + offsets].view(-1, *([2] * dims))
    for axis in range(dims - 1, -1, -1):  # collapse the last corner axis first
        t = frac[:, axis].view(-1, *([1] * axis))
        corners = corners[..., 0] * (1 - t) + corners[..., 1] * t
    return corners


def grid_sample_points(volume: torch.Tensor, normalised: torch.Tensor, mode: str = "bilinear",
                       padding_mode: str = "zeros") -> torch.Tensor:
    """``grid_sample`` of a ``(C, *spatial)`` volume at ``(N, D)`` normalised points; returns ``(C, N)``."""
    dims = volume.ndim - 1
    grid = normalised.view(1, *([1] * (dims - 1)), -1, dims)
    out = F.grid_sample(volume[None], grid.to(volume.dtype), mode=mode, padding_mode=padding_mode, align_corners=True)
    return out.reshape(volume.shape[0], -1)
