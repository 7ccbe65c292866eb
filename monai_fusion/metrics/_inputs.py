"""The input contract every metric shares: what an image is, and how 3D volumes are walked.

An image is a 2D ``(H, W)`` or 3D ``(D, H, W)`` grey array, numpy or torch, of any real dtype. It
is converted once to float64 numpy *without rescaling*: uint8 data stays on 0..255, floats stay
as given. Reference-based metrics compare A, B and F on one shared intensity scale, as fusion
produces them; nothing here normalises one image to another.

The *data range* ``L`` of a triple (the peak in PSNR, the SSIM constants, the 0..255 scale that
VIF's noise variance assumes) is 255 when all three inputs are uint8, otherwise the observed
``max - min`` over A, B and F together, and 1 when that is 0 (all three the same constant). A
uint8 triple and the same values as floats therefore agree whenever the floats span 0..255.

Bad input raises :class:`~monai_fusion.errors.InputError` with one line: wrong dimensionality,
mismatched shapes, NaN/Inf voxels, complex or non-numeric data, images too small for a window.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from monai_fusion.errors import InputError

__all__ = [
    "CONVENTIONS",
    "Triple",
    "as_image",
    "check_convention",
    "prepare_image",
    "prepare_triple",
    "require_min_size",
    "nonempty_slices",
    "mean_over_slices",
]

#: Metric conventions: ``default`` (documented, mathematically clean), ``benchmark`` (CDDFuse-era
#: tables) and ``vifb`` (the VIFB benchmark of Zhang et al. 2020; metrics it lacks use ``default``).
CONVENTIONS = ("default", "benchmark", "vifb")


class Triple(NamedTuple):
    """Sources ``a``, ``b`` and fused ``f`` as float64 arrays of one shape, and their data range."""

    a: np.ndarray
    b: np.ndarray
    f: np.ndarray
    data_range: float


def check_convention(convention: str) -> str:
    """``convention`` itself when it is one of :data:`CONVENTIONS`, else :class:`InputError`."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown metric convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return convention


def _is_uint8(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype == torch.uint8
    return getattr(x, "dtype", None) == np.uint8


def as_image(x, name: str = "image") -> np.ndarray:
    """A checked float64 numpy view or copy of a 2D/3D grey image, values unchanged.

    Args:
        x: numpy array or torch tensor (``MetaTensor`` included), any real dtype.
        name: how the image is called in error messages (``"A"``, ``"F"``...).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    else:
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3):
        raise InputError(f"{name} must be a 2D (H, W) or 3D (D, H, W) grey image, got shape {tuple(x.shape)}")
    if x.size == 0:
        raise InputError(f"{name} is empty (shape {tuple(x.shape)})")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{name} has NaN or infinite voxels; metrics need finite values")
    return x


def prepare_image(f, name: str = "F") -> np.ndarray:
    """The fused image of a no-reference metric, checked and as float64."""
    return as_image(f, name)


def prepare_triple(a, b, f) -> Triple:
    """Check and convert a (source A, source B, fused F) triple; see the module docstring for ``L``."""
    arrays = [as_image(x, name) for x, name in ((a, "A"), (b, "B"), (f, "F"))]
    shapes = [x.shape for x in arrays]
    if len(set(shapes)) != 1:
        raise InputError(f"A, B and F must have the same shape, got A {shapes[0]}, B {shapes[1]}, F {shapes[2]}")
    if all(_is_uint8(x) for x in (a, b, f)):
        data_range = 255.0
    else:
        data_range = max(float(x.max()) for x in arrays) - min(float(x.min()) for x in arrays)
        data_range = data_range if data_range > 0 else 1.0
    return Triple(*arrays, data_range)


def require_min_size(shape: Sequence[int], minimum: int, metric: str, axes: str = "H and W") -> None:
    """:class:`InputError` unless the last two axes (H, W) have at least ``minimum`` pixels."""
    if min(shape[-2:]) < minimum:
        raise InputError(f"{metric} needs at least {minimum} pixels along {axes}, got shape {tuple(shape)}")


def _is_constant(x: np.ndarray) -> bool:
    return bool(x.max() == x.min())


def nonempty_slices(*volumes: np.ndarray) -> list[int]:
    """Indices ``k`` along axis 0 where at least one of the volumes is not constant."""
    return [k for k in range(volumes[0].shape[0]) if not all(_is_constant(v[k]) for v in volumes)]


def mean_over_slices(metric_2d: Callable[..., float], *volumes: np.ndarray) -> float:
    """``metric_2d`` of 2D images, or its mean over the non-empty slices (axis 0) of 3D volumes.

    A slice is empty when every volume is constant on it; such slices carry no structure and
    would only pull the mean towards the constant-image value. When every slice is empty the
    value of the first slice is returned (the metric's documented constant-image value).
    """
    if volumes[0].ndim == 2:
        return float(metric_2d(*volumes))
    slices = nonempty_slices(*volumes) or [0]
    return float(np.mean([metric_2d(*(v[k] for v in volumes)) for k in slices]))
