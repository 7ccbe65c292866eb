"""``IFCNNStyleNet``: the fast end-to-end CNN family of IFCNN (Zhang et al., Information Fusion 54,
2020): one feature extractor shared by both sources, an element-wise fusion rule on the feature
maps (maximum, mean or sum), and a small reconstruction head.

Ours is trained from scratch with :class:`~monai_fusion.losses.FusionLoss` (IFCNN was trained on
multi-focus pairs with a reference and uses ResNet-101's first layer); widths are reduced so it runs
in tens of milliseconds per 256x256 slice. It is a baseline in ``benchmarks/networks.py`` and
takes the bundle's input layout: ``(N, 2, *spatial)`` (A, B as channels) -> ``(N, 1, *spatial)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IFCNNStyleNet"]

_FUSIONS = ("max", "mean", "sum")


class IFCNNStyleNet(nn.Module):
    """Shared features -> element-wise fusion -> reconstruction.

    Args:
        spatial_dims: 2 or 3.
        features: feature channels.
        fusion: ``"max"`` (IFCNN's choice for medical images), ``"mean"`` or ``"sum"``.

    Example:
        >>> tuple(IFCNNStyleNet()(torch.rand(1, 2, 32, 32)).shape)
        (1, 1, 32, 32)
    """

    def __init__(self, spatial_dims: int = 2, features: int = 32, fusion: str = "max") -> None:
        super().__init__()
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion must be one of {_FUSIONS}, got {fusion!r}")
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        self.fusion = fusion
        self.extract = nn.Sequential(conv(1, features, 7, padding=3), nn.ReLU(), conv(features, features, 3, padding=1), nn.ReLU())
        self.reconstruct = nn.Sequential(conv(features, features, 3, padding=1), nn.ReLU(), conv(features, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        features = self.extract(torch.cat([image[:, 0:1], image[:, 1:2]], dim=0))
        fa, fb = features[:n], features[n:]
        if self.fusion == "max":
            fused = torch.maximum(fa, fb)
        elif self.fusion == "mean":
            fused = 0.5 * (fa + fb)
        else:
            fused = fa + fb
        return self.reconstruct(fused).clamp(0.0, 1.0)
