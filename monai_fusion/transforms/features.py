"""Deep-feature transforms: ``ExtractFeatures(d)`` runs a frozen backbone, ``FuseFeatures(d)`` fuses with its features.

``ExtractFeatures`` turns one channel-first image into its multi-level feature maps (a list of
plain float32 tensors ``(C_k, *spatial_k)``, finest first) with a frozen backbone from
:mod:`monai_fusion.networks`: our pretrained fusion encoder by default, or a ResNet, DenseNet or
VGG with weights from a local file. The dictionary twin stores them as ``d[f"{key}_features"]``.
``FuseFeatures`` applies the l1-norm feature rule
(:func:`~monai_fusion.networks.feature_fusion.fuse_with_features`) to two sources, with the
features ``ExtractFeaturesd`` stored or, when there are none, features it extracts itself.

Example:
    >>> import torch
    >>> data = {"mr": torch.rand(1, 64, 64), "pet": torch.rand(1, 64, 64)}
    >>> data = ExtractFeaturesd(keys=("mr", "pet"))(data)
    >>> [tuple(level.shape) for level in data["mr_features"]]
    [(16, 64, 64), (32, 32, 32), (64, 16, 16), (96, 8, 8)]
    >>> sorted(FuseFeaturesd(keys=("mr", "pet"), weight_key="w")(data))
    ['fused', 'mr', 'mr_features', 'pet', 'pet_features', 'w']
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_fusion.errors import InputError
from monai_fusion.networks.backbones import build_backbone
from monai_fusion.networks.extractor import FeatureExtractor
from monai_fusion.networks.feature_fusion import FEATURE_WEIGHT_MODES, fuse_with_features
from monai_fusion.networks.weights import load_backbone_weights
from monai_fusion.rules.inputs import check_window, numpy_to_tensor
from monai_fusion.transforms.fusion import check_same_grid, like_source, record_sources

__all__ = [
    "ExtractFeatures", "ExtractFeaturesd", "ExtractFeaturesD", "ExtractFeaturesDict",
    "FuseFeatures", "FuseFeaturesd", "FuseFeaturesD", "FuseFeaturesDict",
    "scale_to_unit",
]


def _plain_tensor(image: NdarrayOrTensor, name: str = "image") -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image.as_tensor() if hasattr(image, "as_tensor") else image
    if isinstance(image, np.ndarray):
        return numpy_to_tensor(image)
    raise InputError(f"{name} is a {type(image).__name__}; pass a numpy array or a torch tensor")


def scale_to_unit(image: torch.Tensor) -> torch.Tensor:
    """Min-max scaling of the whole image to 0..1 (zeros for a constant image)."""
    image = image.float()
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if bool(high > low) else torch.zeros_like(image)


class ExtractFeatures(Transform):
    """Multi-level feature maps of a channel-first image from a frozen backbone.

    Args:
        backbone: a name of :data:`monai_fusion.networks.BACKBONES` (``"fusion_encoder"``, our
            pretrained 2D encoder, by default; ``"resnet18"``, ``"densenet121"``, ``"vgg16"``...)
            or a built :class:`~monai_fusion.networks.FeatureExtractor`.
        spatial_dims: 2 or 3, for a backbone given by name.
        weights: a local ``.pt``/``.pth`` file to load into the backbone (never downloaded).
        levels: indices of the levels to return (all by default).
        device: where the backbone runs (and the features stay); by default the image's device.
        scale_intensity: min-max scale each image to 0..1 first. Off by default: give images on
            0..1 (what our encoder was trained on, and what keeps two sources' activities comparable).
        backbone_options: options of the backbone builder (``in_channels=3``, ``layout="medicalnet"``,
            ``normalise="imagenet"``...).

    The backbone is frozen (evaluation mode, no gradients) and runs under ``torch.no_grad``.
    Grey input is replicated to the backbone's channels; RGB given to a one-channel backbone is
    reduced to its luma. Images with NaN/Inf values, or smaller than the deepest level's stride,
    raise :class:`~monai_fusion.errors.InputError`. ``__call__`` returns a list of plain float32
    tensors ``(C_k, *spatial_k)``, whatever the input type.

    Example:
        >>> import numpy as np
        >>> levels = ExtractFeatures("resnet18", in_channels=1)(np.zeros((1, 64, 64), np.float32))
        >>> [tuple(level.shape) for level in levels][-1]
        (512, 2, 2)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        backbone: str | FeatureExtractor = "fusion_encoder",
        spatial_dims: int = 2,
        weights=None,
        levels: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        scale_intensity: bool = False,
        **backbone_options,
    ) -> None:
        if isinstance(backbone, FeatureExtractor):
            extractor = backbone
            if weights is not None:
                load_backbone_weights(extractor, weights)
        else:
            extractor = build_backbone(backbone, spatial_dims, weights, **backbone_options)
        self.extractor = extractor.freeze()
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.extractor.to(self.device)
        if levels is not None and any(not -extractor.num_levels <= int(k) < extractor.num_levels for k in levels):
            raise InputError(f"levels must index the {extractor.num_levels} levels of {extractor.name}, got {list(levels)}")
        self.levels = None if levels is None else [int(k) for k in levels]
        self.scale_intensity = scale_intensity

    def __call__(self, img: NdarrayOrTensor) -> list[torch.Tensor]:
        image = _plain_tensor(img)
        device = self.device or image.device
        parameter = next(self.extractor.parameters(), None)
        if parameter is not None and parameter.device != device:
            self.extractor.to(device)
        image = image.to(device)
        if self.scale_intensity:
            image = scale_to_unit(image)
        levels = self.extractor.freeze().extract(image)
        return levels if self.levels is None else [levels[k] for k in self.levels]


class ExtractFeaturesd(MapTransform):
    """Dictionary twin of :class:`ExtractFeatures`: ``d[f"{key}_{feature_key_postfix}"]`` = the feature levels of ``d[key]``.

    Args:
        keys: the images to run the backbone on (one shared backbone).
        feature_key_postfix: the features of ``key`` go to ``f"{key}_{feature_key_postfix}"``.
        allow_missing_keys: skip missing keys instead of raising.
        other arguments: as :class:`ExtractFeatures`.
    """

    backend = ExtractFeatures.backend

    def __init__(self, keys: KeysCollection, backbone: str | FeatureExtractor = "fusion_encoder", spatial_dims: int = 2,
                 weights=None, levels: Sequence[int] | None = None, device: torch.device | str | None = None,
                 scale_intensity: bool = False, feature_key_postfix: str = "features", allow_missing_keys: bool = False,
                 **backbone_options) -> None:
        super().__init__(keys, allow_missing_keys)
        self.extract = ExtractFeatures(backbone, spatial_dims, weights, levels, device, scale_intensity, **backbone_options)
        self.feature_key_postfix = feature_key_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.feature_key_postfix}"] = self.extract(d[key])
        return d


class FuseFeatures(Transform):
    """Fuse two co-registered images with weights from the l1-norm of their deep features.

    Args:
        extractor: an :class:`ExtractFeatures` for sources whose features are not given; by
            default the pretrained fusion encoder (2D or 3D, as the sources), built when first needed.
        window: odd size of the activity averaging window (1: none).
        mode: ``"ratio"`` (DenseFuse) or ``"softmax"``; ``temperature`` for the latter.
        levels: indices of the feature levels to use (all by default).
        return_weight: also return the per-voxel weight of source A.

    ``__call__(a, b, features_a=None, features_b=None)`` returns the fused image, or
    ``(fused, weight)``, in A's type and geometry, like :class:`~monai_fusion.transforms.FuseImages`;
    a MetaTensor output records ``meta["fusion"] = {"method": "feature_l1_norm", "options": {...}}``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, extractor: ExtractFeatures | None = None, window: int = 3, mode: str = "ratio",
                 temperature: float = 0.1, levels: Sequence[int] | None = None, return_weight: bool = False) -> None:
        check_window(window)
        if mode not in FEATURE_WEIGHT_MODES:
            raise InputError(f"mode must be one of {', '.join(FEATURE_WEIGHT_MODES)}, got {mode!r}")
        self.extractor = extractor
        self.options = {"window": window, "mode": mode, "temperature": temperature,
                        "levels": None if levels is None else list(levels)}
        self.return_weight = return_weight

    def features(self, image: NdarrayOrTensor) -> list[torch.Tensor]:
        if self.extractor is None:
            self.extractor = ExtractFeatures("fusion_encoder", spatial_dims=_plain_tensor(image).ndim - 1)
        return self.extractor(image)

    def __call__(self, a: NdarrayOrTensor, b: NdarrayOrTensor, features_a: Sequence[torch.Tensor] | None = None,
                 features_b: Sequence[torch.Tensor] | None = None):
        check_same_grid(a, b)
        features_a = self.features(a) if features_a is None else features_a
        features_b = self.features(b) if features_b is None else features_b
        device = features_a[0].device
        fused, weight = fuse_with_features(_plain_tensor(a, "A").to(device), _plain_tensor(b, "B").to(device),
                                           features_a, features_b, **self.options)
        meta = {"method": "feature_l1_norm", "options": dict(self.options)}
        fused = like_source(fused, a, meta)
        if not self.return_weight:
            return fused
        return fused, like_source(weight, a, {**meta, "content": "weight of source A"})


class FuseFeaturesd(MapTransform):
    """Dictionary twin of :class:`FuseFeatures`: fuse ``data[key_a]`` and ``data[key_b]`` into ``data[output_key]``.

    The features of each source are taken from ``data[f"{key}_{feature_key_postfix}"]`` (what
    :class:`ExtractFeaturesd` writes) when present, else extracted.

    Args:
        keys: exactly two keys, ``(key_a, key_b)``; A gives the output its type and geometry.
        output_key: where the fused image goes.
        weight_key: if given, where the weight of source A goes.
        feature_key_postfix: as in :class:`ExtractFeaturesd`.
        allow_missing_keys: if a source is missing, return the data unchanged instead of raising.
        other arguments: as :class:`FuseFeatures`.
    """

    backend = FuseFeatures.backend

    def __init__(self, keys: KeysCollection, output_key: Hashable = "fused", weight_key: Hashable | None = None,
                 extractor: ExtractFeatures | None = None, window: int = 3, mode: str = "ratio", temperature: float = 0.1,
                 levels: Sequence[int] | None = None, feature_key_postfix: str = "features",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise InputError(f"FuseFeaturesd needs exactly two keys (key_a, key_b), got {list(self.keys)}")
        self.fuser = FuseFeatures(extractor, window, mode, temperature, levels, return_weight=True)
        self.output_key, self.weight_key, self.feature_key_postfix = output_key, weight_key, feature_key_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict:
        d = dict(data)
        if len(list(self.key_iterator(d))) < 2:
            return d
        key_a, key_b = self.keys
        fused, weight = self.fuser(d[key_a], d[key_b], d.get(f"{key_a}_{self.feature_key_postfix}"),
                                   d.get(f"{key_b}_{self.feature_key_postfix}"))
        sources = {"sources": [str(key_a), str(key_b)]}
        d[self.output_key] = record_sources(fused, sources)
        if self.weight_key is not None:
            d[self.weight_key] = record_sources(weight, sources)
        return d


ExtractFeaturesD = ExtractFeaturesDict = ExtractFeaturesd
FuseFeaturesD = FuseFeaturesDict = FuseFeaturesd
