"""``DetailFusionNet``: our flagship fusion network (fast, weight map + detail residual).

Design, and why (measured on the Harvard pairs, ``docs/networks.md``):

* The per-pixel **maximum** of the two sources already keeps bright structures of both (bone in
  CT, uptake in PET/SPECT, soft tissue in MRI) and scores well on the intensity metrics (SD, MI,
  SCD, VIF, SSIM), but it drops the edges of the darker source wherever the brighter one covers
  them (MRI sulci under the CT skull window, MRI anatomy under PET uptake): Q^AB/F and SF suffer.
  Edge-driven rules (Laplacian pyramid, gradient selection) recover the edges but lose intensity.
* So the network predicts two maps from both sources: a **soft weight** ``w`` of source A and a
  **detail residual** ``r``; ``fused = w * a + (1 - w) * b + r``. The weight logit is offset by
  ``selection_gain * (a - b)``, so an untrained network already starts as the maximum rule (the
  learned part starts at zero), and the weight map is the per-voxel contribution of A that the
  pipeline reports. The residual adds back edges the weighting cannot keep (an MRI edge inside a
  bright CT or PET region) without halos, because it is learned against an edge-preservation loss
  and fed by both sources.
* A light three-level U-Net computes both maps: two 3x3 convolutions per level (8, 16, 32
  channels at strides 1, 2, 4), additive skips after a 1x1 projection instead of concatenation
  (a third of the decoder cost), ReLU, no normalisation layers (deterministic, fast on the CPU).
  About 30 k parameters and 0.28 GMAC per 256x256 slice: well inside the 20 ms budget on two
  CPU cores (``benchmarks/networks.py``).

``spatial_dims=3`` builds the same network with 3D convolutions; the shipped bundles use the 2D
network slice by slice on the reference grid (the training data are 2D atlas slices).

Input: ``(N, 2, *spatial)`` with channel 0 = source A (the anatomical MRI), channel 1 = source B
(CT, or the luma of a colour PET/SPECT), both on 0..1. Output: ``(N, 1, *spatial)`` on 0..1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_fusion.errors import InputError

__all__ = ["DETAIL_FUSION_TASKS", "DetailFusionNet", "detail_fusion_weights_path", "load_detail_fusion"]

#: Tasks with trained weights shipped in the package (``weights/detail_fusion_<task>.pt``; the
#: bundles' ``models/model.pt`` are the same files).
DETAIL_FUSION_TASKS = ("ct-mri", "mri-pet", "mri-spect")
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _conv(spatial_dims: int, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
    return conv(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)


class DetailFusionNet(nn.Module):
    """Weight map + detail residual fusion network: ``forward(image) -> fused``.

    Args:
        spatial_dims: 2 or 3.
        channels: widths of the three U-Net levels (strides 1, 2, 4).
        selection_gain: slope of the built-in ``a - b`` term of the weight logit: the untrained
            network is a soft maximum rule (hard for large values). 10, the default, trains; 50 and
            more saturate the sigmoid and the weight map stops learning (``docs/networks.md``).

    Example:
        >>> net = DetailFusionNet()
        >>> image = torch.rand(2, 2, 64, 64)
        >>> tuple(net(image).shape)
        (2, 1, 64, 64)
        >>> hard = DetailFusionNet(selection_gain=1000.0)  # untrained, a hard start: the maximum rule
        >>> bool(torch.allclose(hard(image), torch.maximum(image[:, :1], image[:, 1:]), atol=0.02))
        True
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (8, 16, 32), selection_gain: float = 10.0) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) != 3:
            raise ValueError(f"channels must give three widths, got {tuple(channels)}")
        c0, c1, c2 = (int(c) for c in channels)
        self.spatial_dims = spatial_dims
        self.channels = (c0, c1, c2)
        self.selection_gain = float(selection_gain)
        self.upsample_mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.enc0 = nn.Sequential(_conv(spatial_dims, 2, c0), nn.ReLU(), _conv(spatial_dims, c0, c0), nn.ReLU())
        self.enc1 = nn.Sequential(_conv(spatial_dims, c0, c1, stride=2), nn.ReLU(), _conv(spatial_dims, c1, c1), nn.ReLU())
        self.enc2 = nn.Sequential(_conv(spatial_dims, c1, c2, stride=2), nn.ReLU(), _conv(spatial_dims, c2, c2), nn.ReLU())
        self.project2 = _conv(spatial_dims, c2, c1, kernel=1)
        self.dec1 = nn.Sequential(_conv(spatial_dims, c1, c1), nn.ReLU())
        self.project1 = _conv(spatial_dims, c1, c0, kernel=1)
        self.dec0 = nn.Sequential(_conv(spatial_dims, c0, c0), nn.ReLU())
        self.head = _conv(spatial_dims, c0, 2, kernel=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[2:], mode=self.upsample_mode, align_corners=False)

    def components(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(fused, weight_of_a, residual)``, each ``(N, 1, *spatial)``; ``fused`` clamped to 0..1."""
        a, b = image[:, 0:1], image[:, 1:2]
        e0 = self.enc0(image)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        d1 = self.dec1(e1 + self._up(self.project2(e2), e1))
        d0 = self.dec0(e0 + self._up(self.project1(d1), e0))
        maps = self.head(d0)
        weight = torch.sigmoid(maps[:, 0:1] + self.selection_gain * (a - b))
        residual = maps[:, 1:2]
        fused = (weight * a + (1.0 - weight) * b + residual).clamp(0.0, 1.0)
        return fused, weight, residual

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.components(image)[0]


def detail_fusion_weights_path(task: str) -> Path:
    """Path of the shipped state dict of :class:`DetailFusionNet` for ``task``."""
    if task not in DETAIL_FUSION_TASKS:
        raise InputError(f"no trained fusion network for task {task!r}; tasks with weights: {', '.join(DETAIL_FUSION_TASKS)}")
    return _WEIGHTS_DIR / f"detail_fusion_{task.replace('-', '_')}.pt"


def load_detail_fusion(task: str, device: str | torch.device = "cpu") -> DetailFusionNet:
    """Our trained :class:`DetailFusionNet` for ``task`` (evaluation mode, on ``device``).

    The ``.pt`` file is a plain state dict (what MONAI bundles' ``models/model.pt`` hold); the
    architecture options and the training record sit beside it in ``detail_fusion_<task>.json``
    (key ``"network"``), so a network trained with other widths loads without guessing.
    """
    path = detail_fusion_weights_path(task)
    if not path.is_file():
        raise InputError(f"the trained weights for {task} are missing ({path.name}); reinstall monai-fusion")
    record = path.with_suffix(".json")
    config = json.loads(record.read_text()).get("network", {}) if record.is_file() else {}
    net = DetailFusionNet(**config)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval()
