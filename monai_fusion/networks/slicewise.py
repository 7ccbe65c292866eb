"""Run a 2D fusion network on 2D images and, slice by slice, on 3D volumes.

The networks we ship are trained on 2D axial atlas slices, so volumes are fused one plane at a
time along the axis closest to the patient's superior-inferior direction (:func:`axial_axis`,
from the affine), in batches of slices; the output keeps the input's grid exactly (GUIDE §3:
slices and volumes must give identical geometry). Networks that expose ``components(image) ->
(fused, weight, residual)`` (:class:`~monai_fusion.networks.DetailFusionNet`) also give the
per-voxel weight of source A; for others the weight is estimated as the projection of the fused
value on the segment between the sources (0.5 where they agree).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["axial_axis", "fuse_with_network", "projected_weight"]


def axial_axis(affine) -> int:
    """Spatial axis (0, 1 or 2) of a 3D grid whose direction is closest to world superior-inferior."""
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    directions = matrix / np.linalg.norm(matrix, axis=0, keepdims=True)
    return int(np.argmax(np.abs(directions[2])))


def projected_weight(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, tolerance: float = 1e-3) -> torch.Tensor:
    """Weight ``w`` in 0..1 with ``fused ~ w a + (1 - w) b``; 0.5 where ``|a - b| <= tolerance``."""
    difference = a - b
    weight = ((fused - b) / torch.where(difference.abs() > tolerance, difference, torch.ones_like(difference))).clamp(0, 1)
    return torch.where(difference.abs() > tolerance, weight, torch.full_like(weight, 0.5))


def _run(net: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(net, "components"):
        fused, weight, _ = net.components(image)
        return fused, weight
    fused = net(image)
    return fused, projected_weight(fused, image[:, 0:1], image[:, 1:2])


@torch.inference_mode()
def fuse_with_network(net: nn.Module, a, b, axis: int | None = None, batch_size: int = 16,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse ``a`` (anatomical) and ``b`` with a 2D network: ``(fused, weight_of_a)`` on the CPU.

    Args:
        net: a 2D network ``(N, 2, H, W) -> (N, 1, H, W)`` on 0..1.
        a, b: ``(1, H, W)`` images or ``(1, X, Y, Z)`` volumes on 0..1, same shape.
        axis: spatial axis (0..2) along which volumes are sliced; default the last one.
        batch_size: slices per forward pass.
        device: where the network runs.

    Example:
        >>> from monai_fusion.networks import DetailFusionNet
        >>> fused, weight = fuse_with_network(DetailFusionNet().eval(), torch.rand(1, 8, 20, 24), torch.rand(1, 8, 20, 24))
        >>> tuple(fused.shape), tuple(weight.shape)
        ((1, 8, 20, 24), (1, 8, 20, 24))
    """
    a = torch.as_tensor(a, dtype=torch.float32)
    b = torch.as_tensor(b, dtype=torch.float32)
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[0] != 1:
        raise ValueError(f"expected two (1, H, W) or (1, X, Y, Z) images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    net = net.to(device).eval()
    if a.ndim == 3:
        fused, weight = _run(net, torch.stack([a, b], dim=1).to(device))
        return fused[0].cpu(), weight[0].cpu()
    axis = 2 if axis is None else int(axis)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    planes = torch.stack([a[0], b[0]], dim=0).movedim(axis + 1, 0)  # (S, 2, P, Q)
    fused_planes, weight_planes = [], []
    for start in range(0, planes.shape[0], batch_size):
        fused, weight = _run(net, planes[start:start + batch_size].to(device))
        fused_planes.append(fused.cpu())
        weight_planes.append(weight.cpu())
    fused = torch.cat(fused_planes)[:, 0].movedim(0, axis)[None]
    weight = torch.cat(weight_planes)[:, 0].movedim(0, axis)[None]
    return fused, weight
