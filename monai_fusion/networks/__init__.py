"""Networks: feature-extractor backbones and their weight loading, our pretrained fusion encoder,
feature-level fusion, and fusion networks (2D and 3D via ``spatial_dims``): the flagship
:class:`DetailFusionNet` (weight map + detail residual, the bundles' network) and
:class:`EncoderFusionNet` (siamese pretrained encoder, feature-level fusion).

Example:
    >>> import torch
    >>> from monai_fusion.networks import build_backbone
    >>> extractor = build_backbone("resnet18", spatial_dims=2, in_channels=1).freeze()
    >>> [tuple(level.shape) for level in extractor.extract(torch.rand(1, 64, 64))][:2]
    [(64, 32, 32), (64, 16, 16)]
"""

from monai_fusion.networks.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG_CONFIGS,
    VGGFeatures,
    build_backbone,
    densenet_features,
    resnet_features,
    vgg_features,
)
from monai_fusion.networks.extractor import FeatureExtractor
from monai_fusion.networks.detail_fusion import DetailFusionNet
from monai_fusion.networks.feature_fusion import feature_l1_norm, feature_weight, fuse_with_features, l1_activity
from monai_fusion.networks.fusion_encoder import (
    FeatureDecoder,
    FusionEncoder,
    fusion_decoder_weights_path,
    fusion_encoder_features,
    fusion_encoder_weights_path,
    inflate_to_3d,
    load_fusion_decoder,
    load_fusion_encoder,
)
from monai_fusion.networks.fusion_net import EncoderFusionNet
from monai_fusion.networks.ifcnn import IFCNNStyleNet
from monai_fusion.networks.slicewise import axial_axis, fuse_with_network, projected_weight
from monai_fusion.networks.weights import LoadedWeights, describe_state_dict, load_backbone_weights

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONFIGS",
    "DetailFusionNet",
    "EncoderFusionNet",
    "FeatureDecoder",
    "FeatureExtractor",
    "FusionEncoder",
    "IFCNNStyleNet",
    "LoadedWeights",
    "VGGFeatures",
    "axial_axis",
    "build_backbone",
    "densenet_features",
    "describe_state_dict",
    "feature_l1_norm",
    "feature_weight",
    "fuse_with_features",
    "fuse_with_network",
    "fusion_decoder_weights_path",
    "fusion_encoder_features",
    "fusion_encoder_weights_path",
    "inflate_to_3d",
    "l1_activity",
    "load_backbone_weights",
    "load_fusion_decoder",
    "load_fusion_encoder",
    "projected_weight",
    "resnet_features",
    "vgg_features",
]
