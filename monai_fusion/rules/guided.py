"""Guided-filtering fusion (GFF): S. Li, X. Kang and J. Hu, "Image fusion with guided filtering",
IEEE Trans. Image Processing 22(7), 2013.

Steps, with the paper's names and defaults:

1. two-scale decomposition: base ``B = I * Z`` (mean filter 31x31, ``base_radius=15``), detail
   ``D = I - B``;
2. saliency ``S = |I * L| * g``: absolute Laplacian (4-/6-neighbour), smoothed by a Gaussian of
   radius ``r_g = 5`` and sigma ``sigma_g = 5``;
3. weight maps ``P``: 1 for the more salient source at each voxel (0.5 each on a tie);
4. refinement by guided filtering with each source as its own guide:
   ``W^B = G_{r1, eps1}(P, I)`` with r1 = 45, eps1 = 0.3 and ``W^D = G_{r2, eps2}(P, I)`` with
   r2 = 7, eps2 = 1e-6, then normalised to sum to one over the sources;
5. ``F = W^B_A B_A + W^B_B B_B + W^D_A D_A + W^D_B D_B``.

The guided filter is He, Sun and Tang's (ECCV 2010 / TPAMI 2013) with box means computed from
cumulative sums, so its cost does not depend on the radius (r1 = 45 costs what r2 = 7 costs).
Windows are clipped at the image border, as in He's reference code.

Choices the paper leaves open, written down here:

- The paper works on images in 0..1; ``eps`` is a variance, so here ``eps1``, ``eps2`` are
  multiplied by ``data_range**2`` (``data_range`` defaults to the joint max - min of the two
  sources; 1 when both are constant). A 0..255 image therefore behaves like its 0..1 version.
- Guided-filter outputs can leave [0, 1] slightly; they are clipped to [0, 1] before
  normalisation so the weights stay convex at each scale (0.5 each where both clip to zero).
- The rule computes in float64 (cast back to the input dtype at the end) and centres each guide
  on its mean: with ``eps2 = 1e-6`` the local variances it is compared with are close to the
  rounding error of float32 cumulative sums, which put errors of ~1e-4 into the detail weights
  of a 256x256 slice. On CPU the cost is small (about 15 ms per 256x256 pair on 2 cores).
- Radii are in voxels along every axis; for volumes the windows are cubes.
"""

from __future__ import annotations

import numpy as np
import torch

from monai_fusion.errors import InputError
from monai_fusion.rules.filters import box_mean, gaussian_filter, laplacian
from monai_fusion.rules.inputs import prepare_pair
from monai_fusion.rules.result import FusionResult, make_result
from monai_fusion.rules.selection import choose_max, noise_level

__all__ = ["guided_image_filter", "guided_filter", "saliency"]


def guided_image_filter(source: torch.Tensor, guide: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Edge-preserving smoothing of ``source`` guided by ``guide`` (He et al.), per channel.

    Args:
        source: the ``(C, *spatial)`` image to filter (``p`` in the paper).
        guide: the guidance image (``I``), same shape.
        radius: window radius in voxels (window ``2r+1`` per axis).
        eps: regularisation, in squared intensity units of ``guide``.

    Example:
        >>> guide = torch.rand(1, 32, 32, dtype=torch.float64)
        >>> bool(torch.allclose(guided_image_filter(guide, guide, 2, 0.0), guide))
        True
    """
    guide = guide - guide.mean()
    mean_guide, mean_source = box_mean(guide, radius), box_mean(source, radius)
    variance = box_mean(guide * guide, radius).sub_(mean_guide * mean_guide).clamp_(min=0)
    covariance = box_mean(guide * source, radius).sub_(mean_guide * mean_source)
    slope = covariance / (variance + eps)
    offset = mean_source - slope * mean_guide
    return box_mean(slope, radius).mul_(guide).add_(box_mean(offset, radius))


def saliency(image: torch.Tensor, radius: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """``|Laplacian(image)|`` smoothed by a Gaussian (radius ``radius``, standard deviation ``sigma``)."""
    return gaussian_filter(laplacian(image).abs_(), sigma, radius)


def _normalised_weight(weight_a: torch.Tensor, weight_b: torch.Tensor) -> torch.Tensor:
    weight_a, weight_b = weight_a.clamp(0, 1), weight_b.clamp(0, 1)
    total = weight_a + weight_b
    return torch.where(total > 0, weight_a / total.clamp(min=torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))


def _check_radius(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"guided_filter: {name} must be a non-negative integer (voxels), got {value!r}")
    return int(value)


def _check_positive(name: str, value, allow_zero: bool = True) -> float:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not is_number or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise InputError(f"guided_filter: {name} must be a {kind} number, got {value!r}")
    return float(value)


def guided_filter(a, b, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6,
                  base_radius: int = 15, saliency_radius: int = 5, saliency_sigma: float = 5.0,
                  data_range: float | None = None) -> FusionResult:
    """Fuse two sources with guided-filter weight maps on a base and a detail layer (Li et al. 2013).

    Args:
        a, b: channel-first ``(C, H, W)`` or ``(C, D, H, W)`` sources of identical shape, on
            comparable intensity scales (0..1 recommended). Not rescaled.
        r1, eps1: guided filter of the base-layer weights (paper: 45, 0.3).
        r2, eps2: guided filter of the detail-layer weights (paper: 7, 1e-6).
        base_radius: radius of the mean filter of the two-scale decomposition (paper: 31x31 -> 15).
        saliency_radius, saliency_sigma: Gaussian smoothing of the Laplacian saliency (paper: 5, 5).
        data_range: intensity range the ``eps`` values are scaled to (``eps * data_range**2``);
            default: max - min over both sources.

    Returns:
        :class:`FusionResult`. ``weight`` is the base-layer weight of A (``W^B_A``, which decides
        most of the intensity); the detail layer has its own, sharper weight ``W^D_A`` that is not
        returned. Constant inputs give their mean (no NaN).

    Example:
        >>> x = torch.rand(1, 64, 64, dtype=torch.float64)
        >>> bool(torch.allclose(guided_filter(x, x).fused, x))
        True
    """
    r1, r2, base_radius, saliency_radius = (_check_radius(name, value) for name, value in (
        ("r1", r1), ("r2", r2), ("base_radius", base_radius), ("saliency_radius", saliency_radius)))
    eps1, eps2 = _check_positive("eps1", eps1), _check_positive("eps2", eps2)
    saliency_sigma = _check_positive("saliency_sigma", saliency_sigma, allow_zero=False)
    ta, tb, dtype = prepare_pair(a, b)
    tolerance = noise_level(ta, tb)  # rounding level of the input precision
    ta, tb = ta.double(), tb.double()
    if data_range is None:
        data_range = float(torch.maximum(ta.max(), tb.max()) - torch.minimum(ta.min(), tb.min()))
    scale = data_range**2 if data_range > 0 else 1.0
    base_a, base_b = box_mean(ta, base_radius), box_mean(tb, base_radius)
    saliency_a = saliency(ta, saliency_radius, saliency_sigma)
    saliency_b = saliency(tb, saliency_radius, saliency_sigma)
    choice_a = choose_max(saliency_a, saliency_b, tolerance)
    choice_b = 1.0 - choice_a
    base_weight = _normalised_weight(guided_image_filter(choice_a, ta, r1, eps1 * scale),
                                     guided_image_filter(choice_b, tb, r1, eps1 * scale))
    detail_weight = _normalised_weight(guided_image_filter(choice_a, ta, r2, eps2 * scale),
                                       guided_image_filter(choice_b, tb, r2, eps2 * scale))
    fused = (base_weight * base_a + (1 - base_weight) * base_b
             + detail_weight * (ta - base_a) + (1 - detail_weight) * (tb - base_b))
    return make_result(fused, base_weight, dtype)
