"""No-reference metrics of the fused image alone: EN, SD, SF, AG, EI.

All five are volumetric on 3D input: histograms over every voxel, differences and gradients along
all three axes (voxel units, no spacing). Axes of length 1 are ignored, so a ``(1, H, W)``
volume gives the 2D value. Constant images give 0 for every one of them.
"""

from __future__ import annotations

import numpy as np

from monai_fusion.metrics._histograms import entropy as _entropy
from monai_fusion.metrics._histograms import grey_levels
from monai_fusion.metrics._filters import sobel_components
from monai_fusion.metrics._inputs import check_convention, prepare_image

__all__ = ["entropy", "standard_deviation", "spatial_frequency", "average_gradient", "edge_intensity"]

_EN_SCHEME = {"default": "bins256", "benchmark": "round", "vifb": "floor"}


def entropy(f, convention: str = "default") -> float:
    """EN: Shannon entropy of the 256-level grey histogram of F, in bits.

    Reference: J. W. Roberts, J. van Aardt, F. Ahmed, "Assessment of image fusion procedures using
    entropy, image quality, and multispectral classification", J. Appl. Remote Sens. 2 (2008).

    Conventions (grey levels, see ``_histograms``): ``default`` 256 equal bins over F's own
    min..max; ``benchmark`` (CDDFuse) ``round(F)`` clipped to 0..255; ``vifb`` ``floor(F)``
    clipped to 0..255. The benchmark conventions assume F on the 0..255 scale.

    Args:
        f: fused image, 2D or 3D.
        convention: one of :data:`~monai_fusion.metrics.CONVENTIONS`.
    """
    scheme = _EN_SCHEME[check_convention(convention)]
    return float(_entropy(grey_levels(prepare_image(f), scheme), base=2.0))


def standard_deviation(f, convention: str = "default") -> float:
    """SD: population standard deviation of F, ``sqrt(mean((F - mean F)^2))``.

    Reference: Y.-J. Rao, "In-fibre Bragg grating sensors", Meas. Sci. Technol. 8 (1997), as cited
    by VIFB. Identical in every convention (CDDFuse ``np.std``, VIFB divides by ``H*W``).

    Args:
        f: fused image, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    check_convention(convention)
    return float(np.std(prepare_image(f)))


def _active_axes(shape) -> list[int]:
    return [axis for axis, n in enumerate(shape) if n > 1]


def spatial_frequency(f, convention: str = "default") -> float:
    """SF: ``sqrt(RF^2 + CF^2 (+ DF^2 in 3D))`` from first differences along each axis.

    Reference: A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance",
    IEEE Trans. Commun. 43 (1995).

    Conventions: ``default`` and ``benchmark`` (CDDFuse) take each squared-difference term as the
    mean over the differences that exist (``H (W - 1)`` for rows); ``vifb`` divides each sum by
    the voxel count ``H W`` instead, as in the paper and VIFB, which gives a slightly smaller SF.

    Args:
        f: fused image, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    x = prepare_image(f)
    total = 0.0
    for axis in _active_axes(x.shape):
        squared = np.diff(x, axis=axis) ** 2
        total += squared.sum() / x.size if convention == "vifb" else squared.mean()
    return float(np.sqrt(total))


def _forward_difference_gradient(x: np.ndarray, axes: list[int]) -> list[np.ndarray]:
    """Forward differences along ``axes``, all cropped to the common ``(n - 1)`` grid."""
    crop = tuple(slice(0, n - 1) if axis in axes else slice(None) for axis, n in enumerate(x.shape))
    return [np.diff(x, axis=axis)[crop] for axis in axes]


def average_gradient(f, convention: str = "default") -> float:
    """AG: mean of ``sqrt(sum_k g_k^2 / K)`` over the image, ``g_k`` the gradient along axis k.

    Reference: G. Cui, H. Feng, Z. Xu, Q. Li, Y. Chen, "Detail preserved fusion of visible and
    infrared images using regional saliency extraction and multi-scale image decomposition",
    Opt. Commun. 341 (2015).

    Conventions: ``default`` follows the paper: forward differences, averaged over the
    ``(H - 1)(W - 1)`` grid where all of them exist (a ramp of slope s gives ``s / sqrt(2)``).
    ``benchmark`` (CDDFuse) uses ``np.gradient`` (central differences, one-sided at the border)
    and averages over all ``H W`` pixels. ``vifb`` uses the same gradient (MATLAB ``gradient``)
    but divides the sum by ``(H - 1)(W - 1)``. ``K`` is the number of axes longer than 1.

    Args:
        f: fused image, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    convention = check_convention(convention)
    x = prepare_image(f)
    axes = _active_axes(x.shape)
    if not axes:
        return 0.0
    if convention == "default":
        gradients = _forward_difference_gradient(x, axes)
    else:
        gradients = [np.gradient(x, axis=axis) for axis in axes]
    magnitude = np.sqrt(sum(g * g for g in gradients) / len(axes))
    if convention == "vifb":
        return float(magnitude.sum() / np.prod([x.shape[axis] - 1 for axis in axes]))
    return float(magnitude.mean())


def edge_intensity(f, convention: str = "default") -> float:
    """EI: mean Sobel gradient magnitude of F, with replicated borders.

    Reference: B. Rajalingam, R. Priya, "Hybrid multimodality medical image fusion technique for
    feature enhancement in medical diagnosis", Int. J. Eng. Sci. Invention (2018), as in VIFB
    (``imfilter(F, fspecial('sobel'), 'replicate')``). Identical in every convention. In 3D the
    3D Sobel operator is scaled to the 2D one (a ramp of slope s gives ``8 s`` in both).

    Args:
        f: fused image, 2D ``(H, W)`` or 3D ``(D, H, W)``, numpy or torch, any real dtype.
        convention: ``"default"``, ``"benchmark"`` or ``"vifb"`` (see above).
    """
    check_convention(convention)
    x = prepare_image(f)
    return float(np.sqrt(sum(g * g for g in sobel_components(x, mode="nearest"))).mean())
