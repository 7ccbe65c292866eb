"""``EncoderFusionNet``: a small learned fusion network built on :class:`FusionEncoder`.

Both sources go through one shared encoder (siamese); at each level the two feature maps are
concatenated and mixed by a 1x1 convolution; :class:`FeatureDecoder` turns the fused levels into
the fused image. Trained without a reference image (an unsupervised fusion loss against both
sources), it is the network of the transfer experiment in
:mod:`monai_fusion.workflows.pretrain_encoder`, started from our pretrained encoder or from scratch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from monai_fusion.networks.fusion_encoder import DEFAULT_CHANNELS, FeatureDecoder, FusionEncoder

__all__ = ["EncoderFusionNet"]


class EncoderFusionNet(nn.Module):
    """Siamese encoder, per-level 1x1 fusion, top-down decoder; ``forward(a, b)`` -> fused ``(N, 1, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        channels: encoder channels per level.
        encoder: an encoder to start from (e.g. :func:`~monai_fusion.networks.load_fusion_encoder`);
            a randomly initialised one when None.
        decoder: a decoder to start from (e.g. the pretraining's,
            :func:`~monai_fusion.networks.fusion_encoder.load_fusion_decoder`); random when None.
        average_start: start each level's 1x1 fusion as the mean of the two sources' features
            (DenseFuse's addition rule), so a pretrained encoder + decoder fuse from the first
            step; otherwise the default random initialisation.

    Example:
        >>> net = EncoderFusionNet()
        >>> tuple(net(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)).shape)
        (2, 1, 32, 32)
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = DEFAULT_CHANNELS,
                 encoder: FusionEncoder | None = None, decoder: FeatureDecoder | None = None,
                 average_start: bool = False) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else FusionEncoder(spatial_dims, 1, channels)
        channels = self.encoder.channels
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        self.mix = nn.ModuleList(nn.Sequential(conv(2 * width, width, 1), nn.ReLU()) for width in channels)
        if average_start:
            for block, width in zip(self.mix, channels):
                average = 0.5 * torch.cat([torch.eye(width), torch.eye(width)], dim=1)
                with torch.no_grad():
                    block[0].weight.copy_(average.view(width, 2 * width, *([1] * spatial_dims)))
                    block[0].bias.zero_()
        self.decoder = decoder if decoder is not None else FeatureDecoder(spatial_dims, channels, out_channels=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        features = self.encoder(torch.cat([a, b], dim=0))
        n = a.shape[0]
        fused = [mix(torch.cat([level[:n], level[n:]], dim=1)) for mix, level in zip(self.mix, features)]
        return self.decoder(fused)
