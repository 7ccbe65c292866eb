"""``FuseImages`` / ``FuseImagesd``: fuse two co-registered images with a rule from :mod:`monai_fusion.rules`.

The transforms are thin: they check that the two sources share one grid, call the rule, and
give the result the type of source A (numpy in, numpy out; MetaTensor in, MetaTensor out) with
A's metadata, affine and applied operations, so the fused image can be written or inverted like
A. Fusion itself is not invertible and pushes no trace.

Sources must already be on one grid: when both are MetaTensors whose affines differ (by more than
1e-4 in any element) the transforms refuse, rather than fuse misaligned anatomy; register and
resample B onto A first (e.g. with MONAI's ``ResampleToMatch``).

Example:
    >>> import torch
    >>> fuse = FuseImagesd(keys=("mr", "pet"), method="laplacian_pyramid", levels=3, weight_key="w")
    >>> out = fuse({"mr": torch.rand(1, 64, 64), "pet": torch.rand(1, 64, 64)})
    >>> sorted(out)
    ['fused', 'mr', 'pet', 'w']
"""

from __future__ import annotations

from typing import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from monai_fusion.errors import InputError
from monai_fusion.rules import check_rule

__all__ = [
    "FuseImages", "FuseImagesd", "FuseImagesD", "FuseImagesDict", "check_same_grid", "like_source", "record_sources",
]

AFFINE_TOLERANCE = 1e-4


def check_same_grid(a, b) -> None:
    """Refuse two MetaTensors whose affines differ by more than :data:`AFFINE_TOLERANCE`.

    Plain arrays carry no geometry and are taken to be on one grid.
    """
    if not (isinstance(a, MetaTensor) and isinstance(b, MetaTensor)):
        return
    affine_a, affine_b = torch.as_tensor(a.affine, dtype=torch.float64), torch.as_tensor(b.affine, dtype=torch.float64)
    if affine_a.shape != affine_b.shape or float((affine_a - affine_b.to(affine_a.device)).abs().max()) > AFFINE_TOLERANCE:
        raise InputError("the two images are on different grids (affines differ); "
                         "register and resample one onto the other's grid before fusing")


def like_source(result: torch.Tensor, source: NdarrayOrTensor, fusion_meta: dict | None = None) -> NdarrayOrTensor:
    """``result`` as the type of ``source`` (with its metadata for a MetaTensor), keeping ``result``'s dtype."""
    output = convert_to_dst_type(result, source, dtype=result.dtype)[0]
    if isinstance(output, MetaTensor) and fusion_meta is not None:
        output.meta["fusion"] = dict(fusion_meta)
    return output


class FuseImages(Transform):
    """Fuse two co-registered channel-first images with a named rule.

    Args:
        method: a rule of :data:`monai_fusion.rules.RULES` (``"average"``, ``"maximum"``,
            ``"max_abs"``, ``"weighted"``, ``"pca"``, ``"laplacian_pyramid"``, ``"dwt"``,
            ``"guided_filter"``).
        return_weight: also return the per-voxel weight of source A.
        rule_kwargs: options of the rule, checked when the transform is built (``levels=3``...).

    ``__call__(a, b)`` returns the fused image, or ``(fused, weight)``, in A's type and geometry;
    a MetaTensor output records ``meta["fusion"] = {"method": ..., "options": {...}}``. Rules
    do not rescale: give both sources comparable intensity scales (0..1 recommended). Integer
    inputs give float32 output.

    Example:
        >>> import numpy as np
        >>> fused = FuseImages("average")(np.zeros((1, 8, 8)), np.ones((1, 8, 8)))
        >>> float(fused.max()), type(fused).__name__
        (0.5, 'ndarray')
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, method: str = "laplacian_pyramid", return_weight: bool = False, **rule_kwargs) -> None:
        self.rule = check_rule(method, rule_kwargs)
        self.method = method
        self.return_weight = return_weight
        self.rule_kwargs = rule_kwargs

    def fusion_meta(self) -> dict:
        return {"method": self.method, "options": dict(self.rule_kwargs)}

    def __call__(self, a: NdarrayOrTensor, b: NdarrayOrTensor):
        check_same_grid(a, b)
        fused, weight = self.rule(a, b, **self.rule_kwargs)
        meta = self.fusion_meta()
        fused = like_source(fused, a, meta)
        if not self.return_weight:
            return fused
        return fused, like_source(weight, a, {**meta, "content": "weight of source A"})


class FuseImagesd(MapTransform):
    """Dictionary twin of :class:`FuseImages`: fuse ``data[key_a]`` and ``data[key_b]`` into ``data[output_key]``.

    Args:
        keys: exactly two keys, ``(key_a, key_b)``; A gives the output its type and geometry.
        method: rule name (see :class:`FuseImages`).
        output_key: where the fused image goes.
        weight_key: if given, where the weight of source A goes.
        allow_missing_keys: if a source is missing, return the data unchanged instead of raising.
        rule_kwargs: options of the rule.

    A MetaTensor output records ``meta["fusion"] = {"method": ..., "sources": [key_a, key_b],
    "options": {...}}``.
    """

    backend = FuseImages.backend

    def __init__(self, keys: KeysCollection, method: str = "laplacian_pyramid", output_key: Hashable = "fused",
                 weight_key: Hashable | None = None, allow_missing_keys: bool = False, **rule_kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise InputError(f"FuseImagesd needs exactly two keys (key_a, key_b), got {list(self.keys)}")
        self.fuser = FuseImages(method, return_weight=True, **rule_kwargs)
        self.output_key = output_key
        self.weight_key = weight_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if len(present) < 2:
            return d
        key_a, key_b = self.keys
        fused, weight = self.fuser(d[key_a], d[key_b])
        sources = {"sources": [str(key_a), str(key_b)]}
        d[self.output_key] = record_sources(fused, sources)
        if self.weight_key is not None:
            d[self.weight_key] = record_sources(weight, sources)
        return d


def record_sources(image: NdarrayOrTensor, extra: dict) -> NdarrayOrTensor:
    """Add ``extra`` (e.g. the source keys) to a MetaTensor's ``meta["fusion"]``; other types pass through."""
    if isinstance(image, MetaTensor):
        image.meta["fusion"] = {**image.meta.get("fusion", {}), **extra}
    return image


FuseImagesD = FuseImagesDict = FuseImagesd
