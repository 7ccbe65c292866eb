"""Choosing a source per voxel: choose-max decisions, consistency verification, blending.

A decision map holds the weight of source A: 1 (A wins), 0 (B wins) or 0.5 (a tie: neither is
preferred and the two are averaged, so equal inputs give back the input exactly). Ties are
judged with a tolerance at the level of floating-point noise, so two flat regions whose
activities differ only by rounding are a tie rather than a coin toss.

Consistency verification (Li, Manjunath & Mitra, "Multisensor image fusion using the wavelet
transform", Graphical Models and Image Processing 57(3), 1995) is a majority filter: a voxel
follows the majority of the decisions in the window around it (itself included), so isolated
decisions that disagree with their neighbourhood are switched.
"""

from __future__ import annotations

import torch

from monai_fusion.rules.filters import box_sum

__all__ = ["choose_max", "consistency_verification", "blend", "noise_level"]


def noise_level(*images: torch.Tensor) -> float:
    """A few units in the last place of the largest magnitude among ``images`` (0 for all-zero images)."""
    scale = max(float(image.abs().max()) for image in images)
    return 8.0 * torch.finfo(images[0].dtype).eps * scale


def choose_max(activity_a: torch.Tensor, activity_b: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Decision map: 1 where A is more active by more than ``tolerance``, 0 where B is, else 0.5.

    Example:
        >>> choose_max(torch.tensor([3., 1., 2.]), torch.tensor([1., 3., 2.])).tolist()
        [1.0, 0.0, 0.5]
    """
    difference = activity_a - activity_b
    a_wins = (difference > tolerance).to(difference.dtype)
    b_wins = (difference < -tolerance).to(difference.dtype)
    return (a_wins - b_wins).mul_(0.5).add_(0.5)


def consistency_verification(decision: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Majority filter of a decision map over a ``window``-wide neighbourhood (border windows clipped).

    A voxel becomes 1 where more than half of its window's weight is on A, 0 where less,
    0.5 at an exact tie. ``window=1`` returns the map unchanged.

    Example:
        >>> consistency_verification(torch.tensor([[1., 0., 1., 1., 0.]])).tolist()
        [[0.5, 1.0, 1.0, 1.0, 0.5]]
    """
    radius = window // 2
    if radius == 0:
        return decision
    # votes centred on 0 (-0.5, 0, +0.5): the zero border of a clipped window is then neutral,
    # and the sign of the sum is the majority, exactly (sums of halves are exact in floating point)
    margin = box_sum(decision - 0.5, radius)
    return margin.sign_().mul_(0.5).add_(0.5)


def blend(a: torch.Tensor, b: torch.Tensor, weight_a: torch.Tensor) -> torch.Tensor:
    """``weight_a * a + (1 - weight_a) * b``; exact for weights 0 and 1."""
    return weight_a * a + (1.0 - weight_a) * b
