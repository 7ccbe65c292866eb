"""Classical fusion rules as torch functions on channel-first 2D/3D images.

Every rule takes two sources ``a`` and ``b`` of identical shape ``(C, H, W)`` or ``(C, D, H, W)``
(numpy arrays, tensors or MetaTensors; channels are fused independently) and returns a
:class:`FusionResult` ``(fused, weight)`` of plain tensors on the inputs' device, where
``weight`` is the per-voxel weight of source A. Rules never rescale intensities: put both
sources on comparable scales first (0..1 recommended). See :mod:`monai_fusion.rules.inputs`
for the dtype contract.

==================== ============================================================ ==============
name                 what it does                                                  weight
==================== ============================================================ ==============
average              voxel-wise mean                                               0.5
maximum              larger value                                                  decision map
max_abs              larger magnitude (= maximum for non-negative images)          decision map
weighted             soft weights from local energy or contrast                    exact
pca                  global weights from the principal component                   exact
laplacian_pyramid    Burt-Adelson pyramid, choose-max by local energy + CV         finest level
dwt                  orthogonal DWT (haar, db2...), max-abs details + CV           finest-level proxy
guided_filter        Li, Kang & Hu 2013 two-scale guided-filter weights            base layer
==================== ============================================================ ==============

Example:
    >>> import torch
    >>> result = fuse(torch.rand(1, 64, 64), torch.rand(1, 64, 64), method="laplacian_pyramid", levels=3)
    >>> tuple(result.fused.shape), tuple(result.weight.shape)
    ((1, 64, 64), (1, 64, 64))
"""

from __future__ import annotations

import inspect
from typing import Callable

from monai_fusion.errors import InputError
from monai_fusion.rules.colour import rgb_to_ycbcr, ycbcr_to_rgb
from monai_fusion.rules.guided import guided_filter, guided_image_filter
from monai_fusion.rules.pixel import average, max_abs, maximum, pca, weighted
from monai_fusion.rules.pyramid import laplacian_decompose, laplacian_pyramid, laplacian_reconstruct
from monai_fusion.rules.result import FusionResult
from monai_fusion.rules.wavelet import dwt, dwt_decompose, dwt_reconstruct

__all__ = [
    "RULES",
    "FusionResult",
    "average",
    "check_rule",
    "dwt",
    "dwt_decompose",
    "dwt_reconstruct",
    "fuse",
    "guided_filter",
    "guided_image_filter",
    "laplacian_decompose",
    "laplacian_pyramid",
    "laplacian_reconstruct",
    "max_abs",
    "maximum",
    "pca",
    "rgb_to_ycbcr",
    "weighted",
    "ycbcr_to_rgb",
]

RULES: dict[str, Callable[..., FusionResult]] = {
    "average": average,
    "maximum": maximum,
    "max_abs": max_abs,
    "weighted": weighted,
    "pca": pca,
    "laplacian_pyramid": laplacian_pyramid,
    "dwt": dwt,
    "guided_filter": guided_filter,
}


def check_rule(method: str, rule_kwargs: dict) -> Callable[..., FusionResult]:
    """The rule called ``method``, after checking that it accepts ``rule_kwargs`` (an InputError if not).

    Example:
        >>> check_rule("dwt", {"levels": 2}).__name__
        'dwt'
    """
    if method not in RULES:
        raise InputError(f"unknown fusion method {method!r}; choose one of: {', '.join(RULES)}")
    rule = RULES[method]
    accepted = [name for name in inspect.signature(rule).parameters if name not in ("a", "b")]
    unknown = sorted(set(rule_kwargs) - set(accepted))
    if unknown:
        options = ", ".join(accepted) if accepted else "no options"
        raise InputError(f"fusion method {method!r} does not take {', '.join(unknown)}; it takes {options}")
    return rule


def fuse(a, b, method: str = "laplacian_pyramid", **kwargs) -> FusionResult:
    """Fuse two channel-first sources with the rule called ``method`` (a key of :data:`RULES`).

    Args:
        a, b: ``(C, H, W)`` or ``(C, D, H, W)`` sources of identical shape on one grid, on
            comparable intensity scales.
        method: rule name; see the table in :mod:`monai_fusion.rules`.
        kwargs: options of that rule (e.g. ``levels=3`` for ``laplacian_pyramid``).

    Raises:
        InputError: unknown method or option, or unusable inputs.
    """
    return check_rule(method, kwargs)(a, b, **kwargs)
