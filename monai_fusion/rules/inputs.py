"""Checking and converting the two sources a rule receives.

Rules accept numpy arrays, tensors and MONAI ``MetaTensor``s, channel-first ``(C, H, W)`` or
``(C, D, H, W)``, and always compute on plain tensors: metadata is the transforms' business, and
plain tensors keep MONAI's metadata tracking out of the inner loops.

Dtype contract: floating inputs keep their dtype (two different float dtypes promote, as torch
does); ``float16``/``bfloat16`` are computed in float32 and cast back, since several CPU kernels
lack half precision and pyramids lose too many bits in it; integer and boolean inputs are
computed and returned as float32, because fused values are rarely integers. The device is the
inputs' device; both sources must be on the same one.

Rules never rescale intensities. Both sources should be on comparable scales (0..1 is
recommended, and the defaults of the guided-filter rule assume it unless told the data range).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from monai_fusion.errors import InputError

__all__ = ["numpy_to_tensor", "prepare_pair", "max_levels", "check_levels", "check_window"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing memory with ``array`` where possible; read-only arrays (e.g. from
    ``np.asarray(PIL.Image)``) and non-contiguous views are copied, which torch requires."""
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True, order="C")
    return torch.from_numpy(array)


def _to_tensor(image, name: str) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image.as_tensor() if hasattr(image, "as_tensor") else image
    if isinstance(image, np.ndarray):
        return numpy_to_tensor(image)
    raise InputError(f"source {name} is a {type(image).__name__}; pass a numpy array or a torch tensor")


def _compute_dtype(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(dtype to compute in, dtype to return) for a pair of inputs."""
    floats = [t.dtype for t in (a, b) if t.is_floating_point()]
    if not floats:
        return torch.float32, torch.float32
    out = floats[0] if len(floats) == 1 else torch.promote_types(*floats)
    return (torch.float32 if out in _LOW_PRECISION else out), out


def _check_one(image: torch.Tensor, name: str) -> None:
    if image.ndim not in (3, 4):
        hint = "; add a channel dimension first (image[None])" if image.ndim == 2 else ""
        raise InputError(f"source {name} has shape {tuple(image.shape)}: "
                         f"expected channel-first (C, H, W) or (C, D, H, W){hint}")
    if image.numel() == 0:
        raise InputError(f"source {name} is empty (shape {tuple(image.shape)})")
    if image.is_floating_point() and not bool(torch.isfinite(image).all()):
        raise InputError(f"source {name} contains NaN or Inf values; replace them (e.g. torch.nan_to_num) before fusing")
    if image.is_complex():
        raise InputError(f"source {name} is complex; fuse magnitudes or real parts")


def prepare_pair(a, b) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Validate two sources; return them as plain tensors in the compute dtype, and the output dtype.

    Args:
        a, b: channel-first images of identical shape, numpy or torch, on the same device.

    Raises:
        InputError: wrong number of dimensions, different shapes or devices, NaN/Inf values.

    Example:
        >>> a, b, out_dtype = prepare_pair(np.zeros((1, 8, 8), np.uint8), torch.ones(1, 8, 8, dtype=torch.float16))
        >>> a.dtype, out_dtype
        (torch.float32, torch.float16)
    """
    ta, tb = _to_tensor(a, "A"), _to_tensor(b, "B")
    _check_one(ta, "A")
    _check_one(tb, "B")
    if ta.shape != tb.shape:
        raise InputError(f"sources differ in shape: A {tuple(ta.shape)} vs B {tuple(tb.shape)}; "
                         "resample B onto A's grid (and match channels) before fusing")
    if ta.device != tb.device:
        raise InputError(f"sources are on different devices ({ta.device} and {tb.device}); move both to one device")
    compute, out = _compute_dtype(ta, tb)
    return ta.to(compute), tb.to(compute), out


def max_levels(shape: tuple[int, ...], coarsest: int) -> int:
    """The most halvings that keep every spatial size at least ``coarsest``."""
    return max(0, int(math.floor(math.log2(min(shape) / coarsest))))


def check_levels(levels: int, shape: tuple[int, ...], coarsest: int, rule: str) -> None:
    """Refuse a decomposition depth that the image is too small for (or that is not a positive int)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise InputError(f"{rule}: levels must be a positive integer, got {levels!r}")
    allowed = max_levels(shape, coarsest)
    if levels > allowed:
        if allowed == 0:
            raise InputError(f"{rule}: image of size {shape} is too small for any decomposition "
                             f"(needs at least {2 * coarsest} voxels per axis); use another rule")
        raise InputError(f"{rule}: image of size {shape} is too small for levels={levels}; use levels <= {allowed}")


def check_window(window: int, name: str = "window") -> int:
    """The radius of an odd window size; refuse even or non-positive sizes."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise InputError(f"{name} must be a positive odd integer (3, 5, 7...), got {window!r}")
    return int(window) // 2
