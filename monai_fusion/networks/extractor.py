"""``FeatureExtractor``: run a backbone stage by stage and return its feature maps at several scales.

A backbone (a MONAI ResNet or DenseNet, a VGG-style stack, our :class:`~monai_fusion.networks.FusionEncoder`)
is kept whole, with the module names of its usual state dict, so weight files written for it load
unchanged. The extractor walks an explicit ``path`` of its sub-modules in order (the stages of its
``forward``, without the classification head) and taps the output after each module named in
``taps``: those outputs are the feature levels, finest first.

Contract: input ``(N, C, *spatial)`` with ``spatial_dims`` spatial axes; output a list of
``(N, C_k, *spatial_k)`` tensors, one per level, where level ``k`` is downsampled by ``strides[k]``.
Inputs with one channel are replicated to the backbone's ``in_channels`` (grey -> 3 for ImageNet-style
weights); three channels given to a one-channel backbone are taken as RGB and reduced to their
BT.601 luma (the Harvard PET/SPECT pseudo-colour images). ``input_mean``/``input_std`` (per
channel, e.g. ImageNet's) are applied after that, on inputs expected on 0..1.

In-place activations are switched off so that a tapped tensor is never overwritten by a later
module.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from monai_fusion.errors import InputError

__all__ = ["FeatureExtractor", "LUMA_WEIGHTS"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as monai_fusion.rules.colour


class FeatureExtractor(nn.Module):
    """Multi-level feature maps of a backbone, finest level first.

    Args:
        backbone: the network whose sub-modules are run; its weights load with
            :func:`~monai_fusion.networks.load_backbone_weights` under their usual names.
        path: dotted names of the sub-modules to run, in order (``["conv1", "bn1", ..., "layer4"]``).
        taps: names in ``path`` whose outputs are returned as levels, in path order.
        spatial_dims: 2 or 3.
        in_channels: channels the backbone's first layer expects.
        strides: downsampling factor of each level (for checks and documentation).
        name: what the backbone is, for messages (``"resnet18 (2D)"``).
        input_mean, input_std: per-channel normalisation applied to the (replicated) input, or None.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1))
        >>> extractor = FeatureExtractor(net, path=["0", "1", "2", "3"], taps=["1", "3"], spatial_dims=2,
        ...                              in_channels=1, strides=[1, 2])
        >>> [tuple(level.shape) for level in extractor(torch.rand(1, 1, 16, 16))]
        [(1, 4, 16, 16), (1, 8, 8, 8)]
    """

    def __init__(
        self,
        backbone: nn.Module,
        path: Sequence[str],
        taps: Sequence[str],
        spatial_dims: int,
        in_channels: int,
        strides: Sequence[int],
        name: str = "backbone",
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        modules = dict(backbone.named_modules())
        unknown = [step for step in path if step not in modules]
        if unknown or not set(taps) <= set(path) or len(taps) != len(strides):
            raise ValueError(f"bad extractor layout for {name}: unknown modules {unknown}, taps {list(taps)}, strides {list(strides)}")
        self.backbone = backbone
        self.path = list(path)
        self.taps = [step for step in self.path if step in set(taps)]
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.strides = list(strides)
        self.name = name
        self._steps = [modules[step] for step in self.path[: self.path.index(self.taps[-1]) + 1]]
        self.register_buffer("input_mean", _channel_vector(input_mean, in_channels, spatial_dims), persistent=False)
        self.register_buffer("input_std", _channel_vector(input_std, in_channels, spatial_dims), persistent=False)
        for module in backbone.modules():
            if hasattr(module, "inplace"):
                module.inplace = False

    @property
    def num_levels(self) -> int:
        return len(self.taps)

    @property
    def min_size(self) -> int:
        """The smallest spatial size the deepest level accepts (one voxel at its stride)."""
        return self.strides[-1]

    def match_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate grey input to ``in_channels``, or reduce RGB to luma for a one-channel backbone."""
        channels = x.shape[1]
        if channels == self.in_channels:
            return x
        if channels == 1:
            return x.expand(-1, self.in_channels, *x.shape[2:])
        if channels == 3 and self.in_channels == 1:
            luma = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, *([1] * self.spatial_dims))
            return (x * luma).sum(dim=1, keepdim=True)
        raise InputError(f"{self.name} takes {self.in_channels} channel(s); the input has {channels} "
                         "(give 1 channel to replicate, or the backbone's own number)")

    def freeze(self) -> "FeatureExtractor":
        """Evaluation mode and no gradients for every parameter; returns ``self``."""
        self.requires_grad_(False)
        return self.eval()

    @torch.no_grad()
    def extract(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Feature levels of one channel-first image ``(C, *spatial)``: ``[(C_0, *spatial_0), ...]``.

        Runs in evaluation mode without gradients, in float32 on the extractor's device; the
        image is moved there.
        """
        if image.ndim != self.spatial_dims + 1:
            raise InputError(f"{self.name} needs a channel-first image with {self.spatial_dims} spatial axes, "
                             f"got shape {tuple(image.shape)}")
        if image.numel() == 0 or min(image.shape[1:]) < self.min_size:
            raise InputError(f"image of shape {tuple(image.shape)} is too small for {self.name}: "
                             f"every spatial size must be at least {self.min_size}")
        if image.is_floating_point() and not bool(torch.isfinite(image).all()):
            raise InputError("the image contains NaN or Inf values; replace them (e.g. torch.nan_to_num) first")
        self.eval()
        parameter = next(self.parameters(), None)
        device = parameter.device if parameter is not None else image.device
        return [level[0] for level in self(image.to(device=device, dtype=torch.float32)[None])]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != self.spatial_dims + 2:
            raise InputError(f"{self.name} is a {self.spatial_dims}D backbone; it needs (N, C, *{self.spatial_dims} spatial axes) "
                             f"input, got shape {tuple(x.shape)}")
        x = self.match_channels(x)
        if self.input_mean is not None:
            x = (x - self.input_mean) / self.input_std
        levels, taps = [], set(self.taps)
        for name, module in zip(self.path, self._steps):
            x = module(x)
            if name in taps:
                levels.append(x)
        return levels


def _channel_vector(values: Sequence[float] | None, channels: int, spatial_dims: int) -> torch.Tensor | None:
    if values is None:
        return None
    vector = torch.as_tensor(values, dtype=torch.float32)
    if vector.numel() not in (1, channels):
        raise InputError(f"normalisation needs 1 or {channels} values, got {vector.numel()}")
    return vector.reshape(1, -1, *([1] * spatial_dims))
