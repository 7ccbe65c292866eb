"""Pixel-level rules: average, maximum, max-abs, activity-weighted and PCA-weighted fusion.

These work voxel by voxel (``weighted`` looks at a small window) and are all convex combinations
``w * a + (1 - w) * b`` with the reported ``weight`` being exactly ``w``, so their output always
lies between the two sources. They are the baselines every other rule is compared with.
"""

from __future__ import annotations

import torch

from monai_fusion.errors import InputError
from monai_fusion.rules.filters import box_mean
from monai_fusion.rules.inputs import check_window, prepare_pair
from monai_fusion.rules.result import FusionResult, make_result
from monai_fusion.rules.selection import blend, choose_max

__all__ = ["average", "maximum", "max_abs", "weighted", "pca", "local_activity", "pca_weights"]


def average(a, b) -> FusionResult:
    """The voxel-wise mean of the two sources; the weight is 0.5 everywhere.

    Example:
        >>> average(torch.zeros(1, 4, 4), torch.ones(1, 4, 4)).fused.unique().tolist()
        [0.5]
    """
    ta, tb, dtype = prepare_pair(a, b)
    return make_result(0.5 * ta + 0.5 * tb, torch.full_like(ta, 0.5), dtype)


def maximum(a, b) -> FusionResult:
    """The larger of the two values at each voxel; the weight is the decision map (0.5 where equal).

    Example:
        >>> maximum(torch.tensor([[[1., 5.]]]), torch.tensor([[[2., 3.]]])).fused.tolist()
        [[[2.0, 5.0]]]
    """
    ta, tb, dtype = prepare_pair(a, b)
    weight = choose_max(ta, tb)
    return make_result(torch.maximum(ta, tb), weight, dtype)


def max_abs(a, b) -> FusionResult:
    """The value with the larger magnitude at each voxel (the mean where magnitudes are equal).

    For non-negative images (most intensity images) this is the same as :func:`maximum`; it
    differs for signed data such as difference or detail images, where ``-5`` beats ``3``.

    Example:
        >>> max_abs(torch.tensor([[[-5., 1.]]]), torch.tensor([[[3., 2.]]])).fused.tolist()
        [[[-5.0, 2.0]]]
    """
    ta, tb, dtype = prepare_pair(a, b)
    weight = choose_max(ta.abs(), tb.abs())
    return make_result(blend(ta, tb, weight), weight, dtype)


def local_activity(image: torch.Tensor, activity: str, radius: int) -> torch.Tensor:
    """Local ``"energy"`` (mean of squares) or ``"contrast"`` (standard deviation) in a window."""
    energy = box_mean(image * image, radius)
    if activity == "energy":
        return energy
    if activity == "contrast":
        mean = box_mean(image, radius)
        return (energy - mean * mean).clamp_(min=0).sqrt_()
    raise InputError(f"activity must be 'energy' or 'contrast', got {activity!r}")


def weighted(a, b, activity: str = "energy", window: int = 7) -> FusionResult:
    """Soft weights proportional to each source's local activity: ``w = act_a / (act_a + act_b)``.

    Args:
        a, b: channel-first sources of identical shape, on comparable intensity scales.
        activity: ``"energy"`` (local mean of squares: favours the brighter source) or
            ``"contrast"`` (local standard deviation: favours the more textured source).
        window: odd window width in voxels along every spatial axis.

    Where neither source has any activity (both zero, or both flat for ``"contrast"``) the
    weight is 0.5, so constant images give their mean rather than NaN.

    Example:
        >>> flat, noisy = torch.full((1, 16, 16), 0.5), torch.rand(1, 16, 16)
        >>> bool((weighted(flat, noisy, activity="contrast").weight < 0.5).all())
        True
    """
    radius = check_window(window)
    ta, tb, dtype = prepare_pair(a, b)
    act_a, act_b = local_activity(ta, activity, radius), local_activity(tb, activity, radius)
    total = act_a + act_b
    tiny = torch.finfo(total.dtype).tiny
    weight = torch.where(total > tiny, act_a / total.clamp(min=tiny), torch.full_like(total, 0.5))
    return make_result(blend(ta, tb, weight), weight, dtype)


def pca_weights(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-channel weight of A from the principal eigenvector ``v`` of the 2x2 covariance of (a, b).

    ``w_a = |v_a| / (|v_a| + |v_b|)``. The magnitudes make the rule defined for negatively
    correlated sources too (the classic ``v / sum(v)`` divides by zero there). Where the
    principal direction is undefined (both sources constant, or uncorrelated with equal
    variances) the weight is 0.5. Returns a ``(C,)`` tensor.
    """
    x = a.flatten(1).double()
    y = b.flatten(1).double()
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    var_a, var_b, cov = (x * x).mean(dim=1), (y * y).mean(dim=1), (x * y).mean(dim=1)
    largest = 0.5 * (var_a + var_b) + torch.sqrt((0.5 * (var_a - var_b)) ** 2 + cov**2)
    # two expressions of the same eigenvector; take the better-conditioned one per channel
    first = torch.stack([largest - var_b, cov], dim=1)
    second = torch.stack([cov, largest - var_a], dim=1)
    use_first = first.norm(dim=1) >= second.norm(dim=1)
    vector = torch.where(use_first[:, None], first, second).abs()
    total = vector.sum(dim=1)
    scale = torch.maximum(var_a, var_b)
    defined = total > 1e-12 * scale.clamp(min=torch.finfo(torch.float64).tiny)
    weight = torch.where(defined & (scale > 0), vector[:, 0] / total.clamp(min=torch.finfo(torch.float64).tiny),
                         torch.full_like(total, 0.5))
    return weight.to(a.dtype)


def pca(a, b) -> FusionResult:
    """Global weights from principal component analysis of the two sources (one weight per channel).

    The source whose variance dominates the first principal component gets the larger weight:
    for ``b = k * a`` (k > 0) the weights are ``1 / (1 + k)`` and ``k / (1 + k)``. See
    :func:`pca_weights` for degenerate cases.

    Example:
        >>> a = torch.rand(1, 8, 8, dtype=torch.float64)
        >>> round(pca(a, 3 * a).weight[0, 0, 0].item(), 6)
        0.25
    """
    ta, tb, dtype = prepare_pair(a, b)
    weight = pca_weights(ta, tb).view(-1, *([1] * (ta.ndim - 1))).expand_as(ta)
    return make_result(blend(ta, tb, weight), weight, dtype)
