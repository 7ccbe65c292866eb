"""What every fusion rule returns: the fused image and the weight of source A.

A rule's ``weight`` answers "where did this voxel come from?": it is the per-voxel weight of
source A in ``[0, 1]`` (1: all from A, 0: all from B). For pixel rules it is exact
(``fused = weight * a + (1 - weight) * b``); for selection rules it is the decision map, 0.5 where
neither source is preferred; transform-domain rules report the decision at their finest scale,
as each rule's docstring explains. It has the shape of ``fused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

__all__ = ["FusionResult", "make_result"]


@dataclass(frozen=True)
class FusionResult:
    """The fused image and the weight of source A, both ``(C, *spatial)`` tensors.

    Unpacks like a pair: ``fused, weight = average(a, b)``.
    """

    fused: torch.Tensor
    weight: torch.Tensor

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield self.fused
        yield self.weight


def make_result(fused: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> FusionResult:
    """Package a rule's output in the dtype it promised (see :mod:`monai_fusion.rules.inputs`)."""
    return FusionResult(fused.to(dtype), weight.expand_as(fused).to(dtype))
