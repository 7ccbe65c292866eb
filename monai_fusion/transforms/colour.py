"""Colour transforms: RGB <-> YCbCr and the standard colour fusion of a grey and a pseudo-colour image.

Functional images (PET, SPECT) are usually shown, and published, in pseudo-colour. The standard
way to fuse one with a grey anatomical image (MRI) keeps the colour and fuses the brightness:

1. convert the colour image ``(3, ...)`` to YCbCr (BT.601 full range, see
   :mod:`monai_fusion.rules.colour`);
2. fuse its luma Y with the grey image ``(1, ...)`` using any rule of :mod:`monai_fusion.rules`
   (the grey image is source A);
3. put the fused Y back with the colour image's Cb and Cr, convert to RGB and clip to the valid
   range.

Intensity contract: both images on one scale, either uint8 0..255 (the output is uint8,
rounded) or floating point on 0..1 or 0..255 (the output is floating point, of the promoted
dtype). ``max_value`` says which; by default it is 255 for uint8 and, for floats, 1 when both
images lie within 0..1, else 255. Because the chroma offset cancels between the forward and the
inverse conversion, the scale only decides the clipping range.

The conversions are the pure functions :func:`~monai_fusion.rules.colour.rgb_to_ycbcr` and
:func:`~monai_fusion.rules.colour.ycbcr_to_rgb`; these transforms add MONAI's types and keys.

Example:
    >>> import numpy as np
    >>> grey = np.full((1, 64, 64), 100, np.uint8)
    >>> colour = np.zeros((3, 64, 64), np.uint8); colour[0] = 200
    >>> FuseColour("average")(grey, colour).dtype
    dtype('uint8')
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_fusion.errors import InputError
from monai_fusion.rules import check_rule
from monai_fusion.rules.colour import chroma_offset, default_max_value, rgb_to_ycbcr, ycbcr_to_rgb
from monai_fusion.rules.inputs import numpy_to_tensor
from monai_fusion.transforms.fusion import check_same_grid, like_source, record_sources

__all__ = [
    "RGBToYCbCr", "RGBToYCbCrd", "RGBToYCbCrD", "RGBToYCbCrDict",
    "YCbCrToRGB", "YCbCrToRGBd", "YCbCrToRGBD", "YCbCrToRGBDict",
    "FuseColour", "FuseColourd", "FuseColourD", "FuseColourDict",
]

COLOUR_SPACE = "YCbCr, ITU-R BT.601 full range"


def _plain(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        return numpy_to_tensor(image)
    if isinstance(image, torch.Tensor):
        return image.as_tensor() if hasattr(image, "as_tensor") else image
    raise InputError(f"expected a numpy array or a torch tensor, got {type(image).__name__}")


class RGBToYCbCr(Transform):
    """Convert a channel-first RGB image ``(3, ...)`` to full-range BT.601 YCbCr (floating point, same scale).

    Args:
        max_value: 1 (data on 0..1) or 255 (0..255); default 255 for integer input, 1 for float.
            Pass 255 for float images on 0..255, e.g. from ``LoadImage``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, max_value: float | None = None) -> None:
        if max_value is not None:
            chroma_offset(max_value)
        self.max_value = max_value

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return like_source(rgb_to_ycbcr(_plain(img), self.max_value), img)


class YCbCrToRGB(Transform):
    """Convert channel-first full-range BT.601 YCbCr ``(3, ...)`` back to RGB (floating point, same scale).

    Args:
        max_value: 1 or 255, the scale of the data (as given to :class:`RGBToYCbCr`).
        clip: clip the result to ``[0, max_value]``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, max_value: float | None = None, clip: bool = False) -> None:
        if max_value is not None:
            chroma_offset(max_value)
        self.max_value = max_value
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return like_source(ycbcr_to_rgb(_plain(img), self.max_value, self.clip), img)


class RGBToYCbCrd(MapTransform):
    """Dictionary twin of :class:`RGBToYCbCr`."""

    backend = RGBToYCbCr.backend

    def __init__(self, keys: KeysCollection, max_value: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RGBToYCbCr(max_value)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class YCbCrToRGBd(MapTransform):
    """Dictionary twin of :class:`YCbCrToRGB`."""

    backend = YCbCrToRGB.backend

    def __init__(self, keys: KeysCollection, max_value: float | None = None, clip: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = YCbCrToRGB(max_value, clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


def _colour_scale(grey: torch.Tensor, colour: torch.Tensor, max_value: float | None) -> float:
    """The common scale of the two images (see the module docstring), or an InputError."""
    if grey.is_floating_point() != colour.is_floating_point():
        raise InputError("the grey and colour images must both be uint8 (0..255) or both floating point; convert one")
    if max_value is not None:
        chroma_offset(max_value)
        return float(max_value)
    if not grey.is_floating_point():
        if grey.dtype != torch.uint8 or colour.dtype != torch.uint8:
            raise InputError("integer colour fusion inputs must be uint8 (0..255); convert to uint8 or to float")
        return default_max_value(grey)
    largest = max(float(grey.max()), float(colour.max()))
    smallest = min(float(grey.min()), float(colour.min()))
    if smallest < 0 or largest > 255:
        raise InputError(f"colour fusion needs intensities in 0..1 or 0..255, "
                         f"found {smallest:.4g}..{largest:.4g}; rescale first")
    return 1.0 if largest <= 1.0 else 255.0


def _check_channels(grey: torch.Tensor, colour: torch.Tensor) -> None:
    if grey.ndim not in (3, 4) or grey.shape[0] != 1:
        raise InputError(f"the grey image must be (1, H, W) or (1, D, H, W), got shape {tuple(grey.shape)}")
    if colour.shape != (3, *grey.shape[1:]):
        raise InputError(f"the colour image must be RGB (3, ...) on the grey image's grid {tuple(grey.shape[1:])}, "
                         f"got shape {tuple(colour.shape)}")


class FuseColour(Transform):
    """Fuse a grey image (A, ``(1, ...)``) with the luma of a colour image (B, RGB ``(3, ...)``), keeping B's colour.

    Args:
        method: a rule of :data:`monai_fusion.rules.RULES` used on the luma.
        return_luma: also return the fused luma ``(1, ...)`` (same dtype and clipping as the output).
        max_value: 1 or 255, the scale of both images; inferred by default (module docstring).
        rule_kwargs: options of the rule.

    ``__call__(grey, colour)`` returns the fused RGB image ``(3, ...)``, or ``(rgb, luma)``, in the
    grey image's type and geometry (a MetaTensor output records ``meta["fusion"]``).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, method: str = "laplacian_pyramid", return_luma: bool = False, max_value: float | None = None,
                 **rule_kwargs) -> None:
        self.rule = check_rule(method, rule_kwargs)
        if max_value is not None:
            chroma_offset(max_value)
        self.method, self.return_luma, self.max_value, self.rule_kwargs = method, return_luma, max_value, rule_kwargs

    def fusion_meta(self) -> dict:
        return {"method": self.method, "options": dict(self.rule_kwargs), "colour_space": COLOUR_SPACE}

    def __call__(self, grey: NdarrayOrTensor, colour: NdarrayOrTensor):
        check_same_grid(grey, colour)
        plain_grey, plain_colour = _plain(grey), _plain(colour)
        _check_channels(plain_grey, plain_colour)
        max_value = _colour_scale(plain_grey, plain_colour, self.max_value)
        ycbcr = rgb_to_ycbcr(plain_colour, max_value)
        luma = self.rule(plain_grey, ycbcr[:1], **self.rule_kwargs).fused
        rgb = ycbcr_to_rgb(torch.cat([luma.to(ycbcr.dtype), ycbcr[1:]]), max_value, clip=True)
        luma = luma.clamp(0.0, max_value)
        if not plain_grey.is_floating_point():
            rgb, luma = rgb.round().to(torch.uint8), luma.round().to(torch.uint8)
        meta = self.fusion_meta()
        rgb = like_source(rgb, grey, meta)
        return (rgb, like_source(luma, grey, {**meta, "content": "fused luma"})) if self.return_luma else rgb


class FuseColourd(MapTransform):
    """Dictionary twin of :class:`FuseColour`: colour fusion of ``data[grey_key]`` and ``data[colour_key]``.

    Args:
        keys: exactly two keys, ``(grey_key, colour_key)``.
        method: rule name used on the luma.
        output_key: where the fused RGB image goes.
        luma_key: if given, where the fused luma goes.
        max_value: 1 or 255; inferred by default.
        allow_missing_keys: if a source is missing, return the data unchanged instead of raising.
        rule_kwargs: options of the rule.
    """

    backend = FuseColour.backend

    def __init__(self, keys: KeysCollection, method: str = "laplacian_pyramid", output_key: Hashable = "fused",
                 luma_key: Hashable | None = None, max_value: float | None = None, allow_missing_keys: bool = False,
                 **rule_kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise InputError(f"FuseColourd needs exactly two keys (grey_key, colour_key), got {list(self.keys)}")
        self.fuser = FuseColour(method, return_luma=True, max_value=max_value, **rule_kwargs)
        self.output_key, self.luma_key = output_key, luma_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if len(list(self.key_iterator(d))) < 2:
            return d
        grey_key, colour_key = self.keys
        rgb, luma = self.fuser(d[grey_key], d[colour_key])
        sources = {"sources": [str(grey_key), str(colour_key)]}
        d[self.output_key] = record_sources(rgb, sources)
        if self.luma_key is not None:
            d[self.luma_key] = record_sources(luma, sources)
        return d


RGBToYCbCrD = RGBToYCbCrDict = RGBToYCbCrd
YCbCrToRGBD = YCbCrToRGBDict = YCbCrToRGBd
FuseColourD = FuseColourDict = FuseColourd
