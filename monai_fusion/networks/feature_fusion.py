"""Feature-level fusion: weights from the l1-norm activity of deep features (DenseFuse's strategy).

Li & Wu, "DenseFuse: a fusion approach to infrared and visible images", IEEE TIP 28(5), 2019, and
Li, Wu & Kittler, "Infrared and visible image fusion using a deep learning framework", ICPR 2018:
for each feature level ``k`` of the two sources,

1. activity ``C_k(x) = || phi_k(x) ||_1`` over the channels, averaged over a small window
   (``window``; DenseFuse's block-based average, 3 by default; 1 switches it off);
2. soft weight of A: the normalised ratio ``C_k^A / (C_k^A + C_k^B)`` (``mode="ratio"``, DenseFuse)
   or a two-way softmax ``sigmoid((C_k^A - C_k^B) / (temperature * mean activity))``
   (``mode="softmax"``: sharper, its temperature relative to the level's mean activity);
3. upsampled to the image size (bilinear/trilinear, ``align_corners=False``);
4. averaged over the levels used (``levels``, all by default): ``w``;

and the fused image is ``w * A + (1 - w) * B`` with ``weight = w``: a convex combination, like the
pixel rules of :mod:`monai_fusion.rules.pixel`, so it lies between the two sources and identical
sources come back unchanged. (Li et al. 2018 keep, per pixel, the largest of the per-level fused
images instead of averaging the weights; averaging keeps the weight exact.) Where neither source
has any activity the weight is 0.5.

The features come from any :class:`~monai_fusion.networks.extractor.FeatureExtractor`; by default
our pretrained :class:`~monai_fusion.networks.fusion_encoder.FusionEncoder`. Sources follow the
rules' contract (:mod:`monai_fusion.rules.inputs`): channel-first, same shape, comparable scales
(0..1: the encoder was trained on 0..1 images).
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F

from monai_fusion.errors import InputError
from monai_fusion.networks.extractor import FeatureExtractor
from monai_fusion.rules.filters import box_mean
from monai_fusion.rules.inputs import check_window, prepare_pair
from monai_fusion.rules.result import FusionResult, make_result
from monai_fusion.rules.selection import blend

__all__ = ["FEATURE_WEIGHT_MODES", "default_extractor", "l1_activity", "feature_weight", "fuse_with_features", "feature_l1_norm"]

FEATURE_WEIGHT_MODES = ("ratio", "softmax")
_TINY = 1e-12


def l1_activity(features: torch.Tensor, window: int = 3) -> torch.Tensor:
    """``(1, *spatial)`` l1-norm over the channels of ``(C, *spatial)`` features, box-averaged over ``window``.

    Example:
        >>> l1_activity(torch.tensor([[[1.0, -2.0]], [[3.0, 0.0]]]), window=1).tolist()
        [[[4.0, 2.0]]]
    """
    activity = features.abs().sum(dim=0, keepdim=True)
    radius = check_window(window)
    return box_mean(activity, radius) if radius else activity


def _level_weight(activity_a: torch.Tensor, activity_b: torch.Tensor, mode: str, temperature: float) -> torch.Tensor:
    if mode == "ratio":
        total = activity_a + activity_b
        return torch.where(total > _TINY, activity_a / total.clamp_min(_TINY), torch.full_like(total, 0.5))
    scale = temperature * (0.5 * (activity_a + activity_b)).mean().clamp_min(_TINY)
    return torch.sigmoid((activity_a - activity_b) / scale)


def _check_levels(features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor], levels, spatial_dims: int) -> list[int]:
    if len(features_a) != len(features_b) or not features_a:
        raise InputError(f"the two sources need the same non-zero number of feature levels, got {len(features_a)} and {len(features_b)}")
    chosen = list(range(len(features_a))) if levels is None else [int(k) for k in levels]
    if not chosen or any(not -len(features_a) <= k < len(features_a) for k in chosen):
        raise InputError(f"levels must index the {len(features_a)} feature levels, got {levels!r}")
    for k in chosen:
        fa, fb = features_a[k], features_b[k]
        if fa.shape != fb.shape or fa.ndim != spatial_dims + 1:
            raise InputError(f"feature level {k}: shapes {tuple(fa.shape)} and {tuple(fb.shape)} must match and be "
                             f"(C, *{spatial_dims} spatial axes) like the images")
    return chosen


def feature_weight(
    features_a: Sequence[torch.Tensor],
    features_b: Sequence[torch.Tensor],
    spatial_shape: Sequence[int],
    window: int = 3,
    mode: str = "ratio",
    temperature: float = 0.1,
    levels: Sequence[int] | None = None,
) -> torch.Tensor:
    """The ``(1, *spatial_shape)`` weight of source A from two lists of feature levels (steps 1-4 above)."""
    if mode not in FEATURE_WEIGHT_MODES:
        raise InputError(f"mode must be one of {', '.join(FEATURE_WEIGHT_MODES)}, got {mode!r}")
    if not temperature > 0:
        raise InputError(f"temperature must be positive, got {temperature!r}")
    spatial_shape = tuple(int(n) for n in spatial_shape)
    chosen = _check_levels(features_a, features_b, levels, len(spatial_shape))
    interpolation = "bilinear" if len(spatial_shape) == 2 else "trilinear"
    total = None
    for k in chosen:
        fa, fb = features_a[k].float(), features_b[k].float().to(features_a[k].device)
        weight = _level_weight(l1_activity(fa, window), l1_activity(fb, window), mode, temperature)
        if tuple(weight.shape[1:]) != spatial_shape:
            weight = F.interpolate(weight[None], size=spatial_shape, mode=interpolation, align_corners=False)[0]
        total = weight if total is None else total + weight
    return (total / len(chosen)).clamp_(0.0, 1.0)


def fuse_with_features(a, b, features_a, features_b, window: int = 3, mode: str = "ratio", temperature: float = 0.1,
                       levels: Sequence[int] | None = None) -> FusionResult:
    """Fuse ``a`` and ``b`` with weights from their (already computed) feature levels.

    Args:
        a, b: channel-first sources of one shape, ``(C, H, W)`` or ``(C, D, H, W)``.
        features_a, features_b: lists of ``(C_k, *spatial_k)`` feature maps of each source.
        window: odd size of the activity averaging window (1: none).
        mode: ``"ratio"`` or ``"softmax"``; ``temperature`` for the latter.
        levels: indices of the levels to use (all by default).

    Example:
        >>> image = torch.rand(1, 16, 16)
        >>> features = [torch.rand(4, 16, 16), torch.rand(8, 8, 8)]
        >>> result = fuse_with_features(image, image, features, features)
        >>> bool(torch.allclose(result.fused, image)), float(result.weight.mean())
        (True, 0.5)
    """
    ta, tb, out_dtype = prepare_pair(a, b)
    weight = feature_weight(features_a, features_b, ta.shape[1:], window, mode, temperature, levels).to(ta.device, ta.dtype)
    return make_result(blend(ta, tb, weight), weight, out_dtype)


@functools.lru_cache(maxsize=2)
def default_extractor(spatial_dims: int) -> FeatureExtractor:
    """The pretrained fusion encoder as a frozen extractor, built once per process."""
    from monai_fusion.networks.fusion_encoder import fusion_encoder_features

    return fusion_encoder_features(spatial_dims=spatial_dims).freeze()


def feature_l1_norm(a, b, extractor: FeatureExtractor | None = None, window: int = 3, mode: str = "ratio",
                    temperature: float = 0.1, levels: Sequence[int] | None = None) -> FusionResult:
    """The l1-norm feature fusion rule: extract features of ``a`` and ``b`` with ``extractor`` and fuse.

    ``extractor`` defaults to the pretrained fusion encoder (2D or 3D, as the sources). Sources with
    several channels are fused channel by channel with one weight map, computed from the features of
    the whole (multi-channel) image as the extractor takes it (RGB -> luma for our encoder).

    Example:
        >>> a, b = torch.rand(1, 32, 32), torch.rand(1, 32, 32)
        >>> result = feature_l1_norm(a, b)
        >>> bool(((result.weight >= 0) & (result.weight <= 1)).all()), tuple(result.fused.shape)
        (True, (1, 32, 32))
    """
    ta, tb, _ = prepare_pair(a, b)
    if extractor is None:
        extractor = default_extractor(ta.ndim - 1).to(ta.device)
    return fuse_with_features(a, b, extractor.extract(ta), extractor.extract(tb), window, mode, temperature, levels)
