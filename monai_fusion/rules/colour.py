"""RGB <-> YCbCr conversion (ITU-R BT.601, full range), as the image-fusion literature uses it.

The convention is JPEG/JFIF's, which is also OpenCV's ``COLOR_RGB2YCrCb`` for 8-bit and float
images (OpenCV orders the chroma channels Cr, Cb; here they are Cb, Cr):

    Y  = 0.299 R + 0.587 G + 0.114 B
    Cb = (B - Y) / 1.772 + offset      # ~ -0.168736 R - 0.331264 G + 0.5 B + offset
    Cr = (R - Y) / 1.402 + offset      # ~  0.5 R - 0.418688 G - 0.081312 B + offset

with full range (no 16..235 footroom) and ``offset`` 0.5 for data on 0..1 or 128 for data on
0..255. The inverse is the exact algebraic inverse (R = Y + 1.402 (Cr - offset),
G = Y - 0.344136 (Cb - offset) - 0.714136 (Cr - offset), B = Y + 1.772 (Cb - offset); the
coefficients are derived from Kr = 0.299, Kb = 0.114, not rounded), so a round trip returns the
input to floating-point rounding. OpenCV rounds its chroma factors to 0.564/0.713 and its uint8
output to integers: measured against ``cv2.cvtColor(..., COLOR_RGB2YCrCb)``, values here differ
by < 3e-4 on float 0..1 data and by < 1 (its rounding) on uint8 data; Pillow's
``Image.convert("YCbCr")`` agrees to within its fixed-point rounding too.

Contract: images are channel-first with 3 channels first, ``(3, H, W)`` or ``(3, D, H, W)``.
Integer input (uint8) is on 0..255; floating input is on 0..1 unless ``max_value=255`` is given
(MONAI's ``LoadImage`` returns float32 on 0..255: pass ``max_value=255``). Results are floating
point and unrounded (float32 for integer input, else the input dtype) on the same scale, so
nothing is lost; :func:`ycbcr_to_rgb` clips to ``[0, max_value]`` only when asked.
"""

from __future__ import annotations

import numpy as np
import torch

from monai_fusion.errors import InputError
from monai_fusion.rules.inputs import numpy_to_tensor

__all__ = ["KR", "KB", "rgb_to_ycbcr", "ycbcr_to_rgb", "chroma_offset", "default_max_value"]

KR, KB = 0.299, 0.114
KG = 1.0 - KR - KB
_CB_SCALE, _CR_SCALE = 2.0 * (1.0 - KB), 2.0 * (1.0 - KR)  # 1.772, 1.402
_SUPPORTED_MAX = (1.0, 255.0)

_RGB_TO_YCBCR = (
    (KR, KG, KB),
    (-KR / _CB_SCALE, -KG / _CB_SCALE, 0.5),
    (0.5, -KG / _CR_SCALE, -KB / _CR_SCALE),
)
_YCBCR_TO_RGB = (
    (1.0, 0.0, _CR_SCALE),
    (1.0, -KB * _CB_SCALE / KG, -KR * _CR_SCALE / KG),
    (1.0, _CB_SCALE, 0.0),
)


def default_max_value(image) -> float:
    """255 for integer images, 1.0 for floating-point ones."""
    dtype = image.dtype
    is_float = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
    return 1.0 if is_float else 255.0


def chroma_offset(max_value: float) -> float:
    """0.5 for 0..1 data, 128 for 0..255 data (the JPEG/OpenCV 8-bit convention, not 127.5)."""
    if float(max_value) not in _SUPPORTED_MAX:
        raise InputError(f"max_value must be 1 (data on 0..1) or 255 (data on 0..255), got {max_value!r}")
    return 0.5 if float(max_value) == 1.0 else 128.0


def _as_float_tensor(image, name: str) -> torch.Tensor:
    tensor = image.as_tensor() if hasattr(image, "as_tensor") else image
    tensor = numpy_to_tensor(tensor) if isinstance(tensor, np.ndarray) else tensor
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{name} is a {type(image).__name__}; pass a numpy array or a torch tensor")
    if tensor.ndim not in (3, 4) or tensor.shape[0] != 3:
        raise InputError(f"{name} has shape {tuple(tensor.shape)}: expected 3 channels first, (3, H, W) or (3, D, H, W)")
    return tensor if tensor.is_floating_point() else tensor.float()


def _mix(image: torch.Tensor, matrix, bias_in, bias_out) -> torch.Tensor:
    """``matrix @ (channels - bias_in) + bias_out`` channel-wise, computed in float64, cast back."""
    channels = [image[j].double() - bias_in[j] for j in range(3)]
    rows = [sum(c * channels[j] for j, c in enumerate(row) if c) + bias_out[i] for i, row in enumerate(matrix)]
    return torch.stack(rows).to(image.dtype)


def rgb_to_ycbcr(rgb, max_value: float | None = None) -> torch.Tensor:
    """Convert a channel-first RGB image to full-range BT.601 YCbCr (see the module docstring).

    Args:
        rgb: ``(3, *spatial)`` numpy array or tensor, uint8 on 0..255 or float on 0..``max_value``.
        max_value: 1 or 255; default 255 for integer input, 1 for floating input.

    Example:
        >>> [round(v, 4) for v in rgb_to_ycbcr(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)).flatten().tolist()]
        [0.299, 0.3313, 1.0]
    """
    max_value = default_max_value(rgb) if max_value is None else max_value
    offset = chroma_offset(max_value)
    return _mix(_as_float_tensor(rgb, "rgb"), _RGB_TO_YCBCR, (0.0, 0.0, 0.0), (0.0, offset, offset))


def ycbcr_to_rgb(ycbcr, max_value: float | None = None, clip: bool = False) -> torch.Tensor:
    """Convert channel-first full-range BT.601 YCbCr back to RGB (exact inverse of :func:`rgb_to_ycbcr`).

    Args:
        ycbcr: ``(3, *spatial)`` numpy array or tensor on the same scale as the RGB it came from.
        max_value: 1 or 255; default 255 for integer input, 1 for floating input.
        clip: clip the result to ``[0, max_value]`` (needed after editing Y, e.g. by fusion).

    Example:
        >>> rgb = torch.rand(3, 4, 4, dtype=torch.float64)
        >>> bool(torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12))
        True
    """
    max_value = default_max_value(ycbcr) if max_value is None else max_value
    offset = chroma_offset(max_value)
    rgb = _mix(_as_float_tensor(ycbcr, "ycbcr"), _YCBCR_TO_RGB, (0.0, offset, offset), (0.0, 0.0, 0.0))
    return rgb.clamp_(0.0, float(max_value)) if clip else rgb
