"""Our small encoder for fusion features, its light decoder, and the weights we ship for it.

:class:`FusionEncoder` is a plain four-stage CNN (two 3x3 convolutions with ReLU per stage, a
stride-2 convolution opening stages 2-4; DenseFuse-style, no normalisation layers, so feature
magnitudes still compare between two images, which the l1-norm fusion rule relies on). It takes
one grey channel on 0..1 and returns four levels at strides 1, 2, 4, 8 with 16, 32, 64, 96
channels by default (about 0.2 M parameters, 0.8 MB in float32).

The shipped 2D weights (``weights/fusion_encoder_2d.pt``, with their training log
``fusion_encoder_2d.json``) were pretrained self-supervised (masked and noisy image
reconstruction) on every modality of the shared data by
:mod:`monai_fusion.workflows.pretrain_encoder`; ``docs/encoder.md`` gives the recipe and the data.
The 3D twin has no weights trained in 3D: :func:`inflate_to_3d` turns the 2D kernels into 3D ones
(each 2D kernel spread evenly over three slices), a common start for 3D fine-tuning.

:class:`FeatureDecoder` (top-down, a concatenation of the upsampled coarser level with each finer
level, then a 3x3 convolution) maps the levels back to an image: the reconstruction head of the
pretraining and the decoder of :class:`~monai_fusion.networks.fusion_net.EncoderFusionNet`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_fusion.errors import InputError
from monai_fusion.networks.extractor import FeatureExtractor

__all__ = [
    "DEFAULT_CHANNELS",
    "WEIGHTS_DIR",
    "FusionEncoder",
    "FeatureDecoder",
    "fusion_decoder_weights_path",
    "fusion_encoder_features",
    "fusion_encoder_weights_path",
    "load_fusion_decoder",
    "inflate_to_3d",
    "load_fusion_encoder",
]

DEFAULT_CHANNELS = (16, 32, 64, 96)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FORMAT = "monai-fusion fusion encoder v1"
DECODER_FORMAT = "monai-fusion fusion decoder v1"


def _conv(spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims](in_channels, out_channels, 3, stride=stride, padding=1)


class FusionEncoder(nn.Module):
    """Four stages of ``conv(stride) - ReLU - conv - ReLU``; ``forward`` returns every stage's output.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1: grey on 0..1).
        channels: output channels of each stage; stage ``k`` is downsampled by ``2**k``.

    Example:
        >>> [tuple(level.shape) for level in FusionEncoder()(torch.rand(1, 1, 32, 32))]
        [(1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8), (1, 96, 4, 4)]
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = DEFAULT_CHANNELS) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.spatial_dims, self.in_channels, self.channels = spatial_dims, in_channels, tuple(int(c) for c in channels)
        stages, previous = [], in_channels
        for index, width in enumerate(self.channels):
            stages.append(nn.Sequential(
                _conv(spatial_dims, previous, width, stride=1 if index == 0 else 2), nn.ReLU(),
                _conv(spatial_dims, width, width), nn.ReLU(),
            ))
            previous = width
        self.stages = nn.ModuleList(stages)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def config(self) -> dict:
        return {"spatial_dims": self.spatial_dims, "in_channels": self.in_channels, "channels": list(self.channels)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels


class FeatureDecoder(nn.Module):
    """Top-down decoder from multi-level features to an image of the finest level's size.

    Args:
        spatial_dims: 2 or 3.
        channels: channels of the levels it receives, finest first (an encoder's ``channels``).
        out_channels: channels of the output image.
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = DEFAULT_CHANNELS, out_channels: int = 1) -> None:
        super().__init__()
        channels = list(channels)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.merges = nn.ModuleList(
            nn.Sequential(_conv(spatial_dims, channels[k] + channels[k + 1], channels[k]), nn.ReLU())
            for k in range(len(channels) - 1)
        )
        self.head = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims](channels[0], out_channels, 1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        x = levels[-1]
        for k in range(len(levels) - 2, -1, -1):
            up = F.interpolate(x, size=levels[k].shape[2:], mode=self.mode, align_corners=False)
            x = self.merges[k](torch.cat([levels[k], up], dim=1))
        return self.head(x)


def fusion_encoder_weights_path(spatial_dims: int = 2) -> Path:
    """Where the shipped weights of the encoder live (only the 2D file exists)."""
    return WEIGHTS_DIR / f"fusion_encoder_{spatial_dims}d.pt"


def fusion_decoder_weights_path(spatial_dims: int = 2) -> Path:
    """Where the shipped weights of the pretraining's reconstruction decoder live (2D only)."""
    return WEIGHTS_DIR / f"fusion_decoder_{spatial_dims}d.pt"


def decoder_checkpoint(decoder: FeatureDecoder, channels: Sequence[int]) -> dict:
    """What the pretraining writes for its decoder: the state dict and the encoder channels it reads."""
    return {"format": DECODER_FORMAT, "config": {"channels": [int(c) for c in channels]},
            "state_dict": {key: value.detach().cpu().clone() for key, value in decoder.state_dict().items()}}


def load_fusion_decoder(path: str | Path | None = None) -> FeatureDecoder:
    """The pretrained 2D :class:`FeatureDecoder` (the shipped file unless ``path`` is given).

    It turns the shipped encoder's levels back into an image, so encoder + decoder start a
    DenseFuse-style fusion network that already reconstructs (``EncoderFusionNet(encoder=...,
    decoder=...)``).
    """
    from monai_fusion.networks.weights import read_checkpoint

    path = Path(path) if path is not None else fusion_decoder_weights_path(2)
    if not path.is_file():
        raise InputError(f"fusion decoder weights not found at {path}; "
                         "run examples/pretrain_encoder.py to make them, or reinstall monai-fusion")
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != DECODER_FORMAT:
        raise InputError(f"{path} is not a monai-fusion fusion decoder file (format {checkpoint.get('format')!r})")
    decoder = FeatureDecoder(2, checkpoint["config"]["channels"], 1)
    decoder.load_state_dict(checkpoint["state_dict"])
    return decoder


def encoder_checkpoint(encoder: FusionEncoder) -> dict:
    """What the pretraining writes: the state dict plus the configuration that rebuilds the encoder."""
    return {"format": WEIGHTS_FORMAT, "config": encoder.config(),
            "state_dict": {key: value.detach().cpu().clone() for key, value in encoder.state_dict().items()}}


def load_fusion_encoder(path: str | Path | None = None, spatial_dims: int = 2) -> FusionEncoder:
    """A :class:`FusionEncoder` with pretrained weights (the shipped 2D file unless ``path`` is given).

    For ``spatial_dims=3`` the 2D weights are inflated with :func:`inflate_to_3d`.
    """
    from monai_fusion.networks.weights import load_backbone_weights, read_checkpoint

    path = Path(path) if path is not None else fusion_encoder_weights_path(2)
    if not path.is_file():
        raise InputError(f"fusion encoder weights not found at {path}; "
                         "run examples/pretrain_encoder.py to make them, or reinstall monai-fusion")
    config = read_checkpoint(path).get("config", {})
    encoder_2d = FusionEncoder(spatial_dims=2, in_channels=int(config.get("in_channels", 1)),
                               channels=config.get("channels", DEFAULT_CHANNELS))
    load_backbone_weights(encoder_2d, path)
    if spatial_dims == 2:
        return encoder_2d
    encoder_3d = FusionEncoder(3, encoder_2d.in_channels, encoder_2d.channels)
    encoder_3d.load_state_dict(inflate_to_3d(encoder_2d.state_dict()))
    return encoder_3d


def inflate_to_3d(state_dict: dict[str, torch.Tensor], depth: int = 3) -> dict[str, torch.Tensor]:
    """2D convolution kernels ``(O, I, k, k)`` repeated over ``depth`` slices and divided by ``depth``.

    A 3D image that is constant along its first spatial axis then gives the 2D network's features
    in every slice (away from the borders of that axis). Other tensors are copied as they are.
    """
    return {key: value.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth if value.ndim == 4 else value.clone()
            for key, value in state_dict.items()}


def fusion_encoder_features(spatial_dims: int = 2, in_channels: int = 1, pretrained: bool = True,
                            path: str | Path | None = None) -> FeatureExtractor:
    """Our encoder as a :class:`FeatureExtractor` (4 levels, strides 1, 2, 4, 8), pretrained by default."""
    if pretrained:
        encoder = load_fusion_encoder(path, spatial_dims)
        if in_channels != encoder.in_channels:
            raise InputError(f"the pretrained fusion encoder takes {encoder.in_channels} channel(s), not {in_channels}; "
                             "grey input is expected (RGB is reduced to luma automatically)")
    else:
        encoder = FusionEncoder(spatial_dims, in_channels)
    names = [f"stages.{k}" for k in range(len(encoder.stages))]
    kind = "pretrained" if pretrained else "random init"
    return FeatureExtractor(encoder, names, taps=names, spatial_dims=spatial_dims, in_channels=encoder.in_channels,
                            strides=[2**k for k in range(len(names))], name=f"fusion_encoder ({spatial_dims}D, {kind})")
