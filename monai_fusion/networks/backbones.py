"""Feature-extractor backbones for 2D and 3D: MONAI ResNet and DenseNet, torchvision-style VGG.

Every builder returns a :class:`~monai_fusion.networks.extractor.FeatureExtractor` whose
``backbone`` keeps the module names of the usual state dict of that architecture, without its
classification head, so local weight files load with
:func:`~monai_fusion.networks.weights.load_backbone_weights`:

============== ============================================== ============================== =================
family         key layout                                     levels (tapped after)          strides
============== ============================================== ============================== =================
resnetN        MONAI ``ResNet`` = torchvision / MedicalNet    act, layer1..layer4            2, 4, 8, 16, 32
densenetN      MONAI ``DenseNet`` (torchvision files remapped) relu0, denseblock1..3, norm5   2, 4, 8, 16, 32
vggN[_bn]      torchvision ``features.N`` (conv, [bn], relu)  the ReLU before each max-pool  1, 2, 4, 8, 16
fusion_encoder ours (:mod:`~monai_fusion.networks.fusion_encoder`) each of its 4 stages       1, 2, 4, 8
============== ============================================== ============================== =================

ResNet ``layout``: ``"torchvision"`` (7x7 stride-2 stem, projection shortcuts without bias; what
torchvision's and most 2D ImageNet files use), ``"medicalnet"`` (the same stem; ResNet-18/34 with
parameter-free type-A shortcuts, as the MedicalNet 3D weights need) or ``"monai"`` (MONAI's own
defaults: stride-1 stem, so the strides are 1, 2, 4, 8, 16). Nothing here downloads anything:
weights always come from a file you give.
"""

from __future__ import annotations

from typing import Sequence

from monai.networks.nets import DenseNet121, DenseNet169, DenseNet201, DenseNet264, ResNet
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck, get_medicalnet_pretrained_resnet_args
from torch import nn

from monai_fusion.errors import InputError
from monai_fusion.networks.extractor import FeatureExtractor

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONFIGS",
    "VGGFeatures",
    "build_backbone",
    "densenet_features",
    "resnet_features",
    "vgg_features",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNET_BLOCKS = {
    10: (ResNetBlock, [1, 1, 1, 1]),
    18: (ResNetBlock, [2, 2, 2, 2]),
    34: (ResNetBlock, [3, 4, 6, 3]),
    50: (ResNetBottleneck, [3, 4, 6, 3]),
    101: (ResNetBottleneck, [3, 4, 23, 3]),
    152: (ResNetBottleneck, [3, 8, 36, 3]),
    200: (ResNetBottleneck, [3, 24, 36, 3]),
}
_DENSENETS = {121: DenseNet121, 169: DenseNet169, 201: DenseNet201, 264: DenseNet264}
_RESNET_LAYOUTS = ("torchvision", "medicalnet", "monai")

# torchvision's VGG configurations: output channels of each 3x3 conv, "M" for a 2x2 max-pool
VGG_CONFIGS: dict[int, list] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _normalisation(normalise: str | None, in_channels: int) -> tuple:
    if normalise is None:
        return None, None
    if normalise == "imagenet":
        if in_channels != 3:
            raise InputError(f"ImageNet normalisation needs in_channels=3, got {in_channels}")
        return IMAGENET_MEAN, IMAGENET_STD
    raise InputError(f"normalise must be None or 'imagenet', got {normalise!r}")


def resnet_features(
    depth: int = 18,
    spatial_dims: int = 2,
    in_channels: int = 3,
    layout: str = "torchvision",
    normalise: str | None = None,
) -> FeatureExtractor:
    """A MONAI ResNet (10, 18, 34, 50, 101, 152, 200) as a 5-level feature extractor.

    Args:
        depth: number of layers.
        spatial_dims: 2 or 3.
        in_channels: input channels of the stem (3 for ImageNet files, 1 for MedicalNet).
        layout: ``"torchvision"``, ``"medicalnet"`` or ``"monai"`` (see the module docstring).
        normalise: ``"imagenet"`` to apply ImageNet mean/std to 0..1 inputs, or None.

    Example:
        >>> import torch
        >>> extractor = resnet_features(18, spatial_dims=3, in_channels=1, layout="medicalnet").freeze()
        >>> [level.shape[0] for level in extractor.extract(torch.rand(1, 32, 32, 32))]
        [64, 64, 128, 256, 512]
    """
    if depth not in _RESNET_BLOCKS:
        raise InputError(f"ResNet depth must be one of {sorted(_RESNET_BLOCKS)}, got {depth!r}")
    if layout not in _RESNET_LAYOUTS:
        raise InputError(f"ResNet layout must be one of {', '.join(_RESNET_LAYOUTS)}, got {layout!r}")
    block, layers = _RESNET_BLOCKS[depth]
    options = {"conv1_t_size": 7, "conv1_t_stride": 2, "shortcut_type": "B", "bias_downsample": False}
    if layout == "medicalnet":
        bias, shortcut = get_medicalnet_pretrained_resnet_args(depth)
        options.update(shortcut_type=shortcut, bias_downsample=bias)
    elif layout == "monai":
        options = {}
    model = ResNet(block, layers, [64, 128, 256, 512], spatial_dims=spatial_dims, n_input_channels=in_channels,
                   feed_forward=False, **options)
    stem_stride = 1 if layout == "monai" else 2
    path = ["conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    mean, std = _normalisation(normalise, in_channels)
    return FeatureExtractor(model, path, taps=["act", "layer1", "layer2", "layer3", "layer4"], spatial_dims=spatial_dims,
                            in_channels=in_channels, strides=[stem_stride * 2**k for k in (0, 1, 2, 3, 4)],
                            name=f"resnet{depth} ({spatial_dims}D, {layout} layout)", input_mean=mean, input_std=std)


def densenet_features(depth: int = 121, spatial_dims: int = 2, in_channels: int = 3,
                      normalise: str | None = None) -> FeatureExtractor:
    """A MONAI DenseNet (121, 169, 201, 264) as a 5-level feature extractor.

    torchvision DenseNet files load too: :func:`~monai_fusion.networks.load_backbone_weights`
    renames their ``denselayerN.norm1`` keys to MONAI's ``denselayerN.layers.norm1``.
    """
    if depth not in _DENSENETS:
        raise InputError(f"DenseNet depth must be one of {sorted(_DENSENETS)}, got {depth!r}")
    model = _DENSENETS[depth](spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
    del model.class_layers  # the head: not part of a feature extractor
    blocks = [name for name, _ in model.features.named_children()]
    mean, std = _normalisation(normalise, in_channels)
    taps = ["features.relu0", "features.denseblock1", "features.denseblock2", "features.denseblock3", "features.norm5"]
    return FeatureExtractor(model, [f"features.{name}" for name in blocks], taps=taps, spatial_dims=spatial_dims,
                            in_channels=in_channels, strides=[2, 4, 8, 16, 32], name=f"densenet{depth} ({spatial_dims}D)",
                            input_mean=mean, input_std=std)


class VGGFeatures(nn.Module):
    """The convolutional part of a VGG network, with torchvision's module names (``features.N``).

    A torchvision ``vgg16`` (or ``vgg16_bn`` with ``batch_norm=True``) state dict loads into it;
    its ``classifier.*`` keys are the head and are left out. In 3D the same layout holds 3D
    convolutions (a file with 3D kernels, or none).

    Args:
        config: output channels per conv and ``"M"`` for max-pools (see :data:`VGG_CONFIGS`).
        spatial_dims: 2 or 3.
        in_channels: input channels.
        batch_norm: conv, batch norm, ReLU per layer (torchvision's ``_bn`` variants).
    """

    def __init__(self, config: Sequence, spatial_dims: int = 2, in_channels: int = 3, batch_norm: bool = False) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims]
        pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims]
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(pool(kernel_size=2, stride=2))
                continue
            layers.append(conv(channels, int(item), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(norm(int(item)))
            layers.append(nn.ReLU())
            channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


def vgg_features(depth: int = 16, spatial_dims: int = 2, in_channels: int = 3, batch_norm: bool = False,
                 normalise: str | None = None) -> FeatureExtractor:
    """A VGG-11/13/16/19 feature extractor tapping the ReLU before each max-pool (relu1_2 ... relu5_3 for VGG-16).

    Example:
        >>> import torch
        >>> extractor = vgg_features(16)
        >>> [tuple(level.shape[1:]) for level in extractor(torch.rand(1, 3, 32, 32))][::2]
        [(64, 32, 32), (256, 8, 8), (512, 2, 2)]
    """
    if depth not in VGG_CONFIGS:
        raise InputError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
    model = VGGFeatures(VGG_CONFIGS[depth], spatial_dims, in_channels, batch_norm)
    names = [f"features.{index}" for index in range(len(model.features))]
    pools = [index for index, module in enumerate(model.features) if isinstance(module, (nn.MaxPool2d, nn.MaxPool3d))]
    taps = [names[index - 1] for index in pools]
    mean, std = _normalisation(normalise, in_channels)
    suffix = "_bn" if batch_norm else ""
    return FeatureExtractor(model, names[: pools[-1]], taps=taps, spatial_dims=spatial_dims, in_channels=in_channels,
                            strides=[2**k for k in range(len(taps))], name=f"vgg{depth}{suffix} ({spatial_dims}D)",
                            input_mean=mean, input_std=std)


def _fusion_encoder(spatial_dims: int = 2, in_channels: int = 1, pretrained: bool = True) -> FeatureExtractor:
    from monai_fusion.networks.fusion_encoder import fusion_encoder_features

    return fusion_encoder_features(spatial_dims=spatial_dims, in_channels=in_channels, pretrained=pretrained)


BACKBONES = {
    **{f"resnet{depth}": (resnet_features, {"depth": depth}) for depth in _RESNET_BLOCKS},
    **{f"densenet{depth}": (densenet_features, {"depth": depth}) for depth in _DENSENETS},
    **{f"vgg{depth}": (vgg_features, {"depth": depth}) for depth in VGG_CONFIGS},
    **{f"vgg{depth}_bn": (vgg_features, {"depth": depth, "batch_norm": True}) for depth in VGG_CONFIGS},
    "fusion_encoder": (_fusion_encoder, {}),
}
"""Backbone names for :func:`build_backbone`: builder and fixed options."""


def build_backbone(name: str, spatial_dims: int = 2, weights=None, **options) -> FeatureExtractor:
    """A feature extractor by name, with weights from a local file if given.

    Args:
        name: a key of :data:`BACKBONES` (``"resnet18"``, ``"densenet121"``, ``"vgg16"``, ``"fusion_encoder"``...).
        spatial_dims: 2 or 3.
        weights: a local ``.pt``/``.pth`` file for :func:`~monai_fusion.networks.load_backbone_weights`, or None.
        options: options of the builder (``in_channels``, ``layout``, ``normalise``, ``pretrained``...).

    Example:
        >>> build_backbone("resnet18", spatial_dims=2, in_channels=1).num_levels
        5
    """
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    builder, fixed = BACKBONES[name]
    try:
        extractor = builder(spatial_dims=spatial_dims, **fixed, **options)
    except TypeError as error:
        raise InputError(f"backbone {name!r}: {error}") from None
    if weights is not None:
        from monai_fusion.networks.weights import load_backbone_weights

        load_backbone_weights(extractor, weights)
    return extractor
