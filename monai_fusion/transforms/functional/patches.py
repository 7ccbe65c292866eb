"""Patch-sampling algorithms: information maps, class balance, and 2D slices of 3D patches.

Medical images are mostly background (air around the head, empty field of view), so patches
drawn uniformly waste most of a training batch. These functions build a non-negative weight map
over patch *centres* that MONAI's ``weighted_patch_samples`` (behind ``RandWeightedCrop(d)``)
samples from:

* :func:`local_entropy`: Shannon entropy of the quantised intensities in a sliding window, high
  where several tissues meet; robust to the modality's unit, since only the histogram matters.
* :func:`gradient_magnitude`: Gaussian-smoothed gradient magnitude, high at edges (what fusion
  networks must transfer), scaled by each image's robust range so that modalities compare.
* :func:`foreground_map`: Otsu foreground, the plain "anything but background" choice.

:func:`information_map` averages one map per modality (each scaled to a maximum of 1, so every
modality counts the same), and :func:`patch_mean` turns a per-voxel map into the mean
information inside the patch centred on each voxel. :func:`class_balanced_weights` re-weights
it so that each label class is drawn with a chosen probability.

Maps are plain float32 tensors of the spatial shape (no channel axis).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from monai_fusion.errors import InputError

__all__ = [
    "local_entropy", "gradient_magnitude", "foreground_map", "information_map", "patch_mean",
    "valid_centre_slices", "class_balanced_weights", "squeeze_slice", "INFORMATION_METHODS",
]

INFORMATION_METHODS = ("entropy", "gradient", "foreground", "uniform")


def _numpy(image: torch.Tensor) -> np.ndarray:
    return image.detach().cpu().numpy().astype(np.float32, copy=False)


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high)


def local_entropy(image: torch.Tensor, window: int = 9, bins: int = 16) -> torch.Tensor:
    """Entropy (bits) of the intensity histogram in a ``window``-wide box around each voxel, averaged over channels.

    Intensities are quantised into ``bins`` levels between the image's 0.5th and 99.5th
    percentiles; a constant image has zero entropy everywhere.
    """
    from scipy.ndimage import uniform_filter

    if window < 1 or bins < 2:
        raise InputError(f"local entropy needs window >= 1 and bins >= 2, got window={window}, bins={bins}")
    maps = []
    for channel in _numpy(image):
        low, high = _robust_range(channel)
        if not high > low:
            maps.append(np.zeros(channel.shape, np.float32))
            continue
        levels = np.clip(((channel - low) / (high - low) * bins).astype(np.int64), 0, bins - 1)
        entropy = np.zeros(channel.shape, np.float32)
        for level in np.unique(levels):
            fraction = uniform_filter((levels == level).astype(np.float32), size=window, mode="nearest")
            positive = fraction > 1e-6
            entropy[positive] -= fraction[positive] * np.log2(fraction[positive])
        maps.append(entropy)
    return torch.from_numpy(np.mean(maps, axis=0).astype(np.float32))


def gradient_magnitude(image: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian gradient magnitude (``sigma`` in voxels) per unit of each channel's robust range, averaged over channels."""
    from scipy.ndimage import gaussian_gradient_magnitude

    maps = []
    for channel in _numpy(image):
        low, high = _robust_range(channel)
        if not high > low:
            maps.append(np.zeros(channel.shape, np.float32))
            continue
        maps.append(gaussian_gradient_magnitude((channel - low) / (high - low), sigma=sigma).astype(np.float32))
    return torch.from_numpy(np.mean(maps, axis=0).astype(np.float32))


def foreground_map(image: torch.Tensor) -> torch.Tensor:
    """1 where any channel is above its Otsu threshold, else 0 (all 0 for a constant image)."""
    from skimage.filters import threshold_otsu

    channels = _numpy(image)
    mask = np.zeros(channels.shape[1:], bool)
    for channel in channels:
        if channel.max() > channel.min():
            mask |= channel > threshold_otsu(channel)
    return torch.from_numpy(mask.astype(np.float32))


def information_map(images: Sequence[torch.Tensor], method: str = "entropy", **options) -> torch.Tensor:
    """Mean of one map per image (each scaled to a maximum of 1), by ``method`` of :data:`INFORMATION_METHODS`.

    Args:
        images: channel-first images on one grid (the modalities of a pair).
        method: ``"entropy"`` (:func:`local_entropy`, options ``window``, ``bins``),
            ``"gradient"`` (:func:`gradient_magnitude`, option ``sigma``), ``"foreground"`` or
            ``"uniform"`` (all ones).

    Example:
        >>> image = torch.zeros(1, 32, 32); image[:, 8:24, 8:24] = 1
        >>> weights = information_map([image], "gradient")
        >>> bool(weights[16, 8] > weights[2, 2])
        True
    """
    functions = {"entropy": local_entropy, "gradient": gradient_magnitude, "foreground": foreground_map}
    if method not in INFORMATION_METHODS:
        raise InputError(f"unknown information weighting {method!r}; use one of {list(INFORMATION_METHODS)}")
    if not images:
        raise InputError("information_map needs at least one image")
    shape = tuple(images[0].shape[1:])
    if any(tuple(image.shape[1:]) != shape for image in images):
        raise InputError(f"the images differ in spatial shape {[tuple(i.shape[1:]) for i in images]}; "
                         "resample them onto one grid before sampling paired patches")
    if method == "uniform":
        return torch.ones(shape, dtype=torch.float32)
    total = torch.zeros(shape, dtype=torch.float32)
    for image in images:
        weights = functions[method](image, **options)
        peak = float(weights.max())
        if peak > 0:
            total += weights / peak
    return total / len(images)


def patch_mean(weights: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """Mean of ``weights`` over the patch of ``patch_size`` centred at each voxel (MONAI's centre convention).

    A patch starts at ``centre - size // 2``, which is where scipy's box filter of an even size
    puts its window too. Outside the image counts as zero information.
    """
    from scipy.ndimage import uniform_filter

    sizes = [max(1, min(int(s), n)) for s, n in zip(patch_size, weights.shape)]
    return torch.from_numpy(uniform_filter(_numpy(weights), size=sizes, mode="constant", cval=0.0))


def valid_centre_slices(shape: Sequence[int], patch_size: Sequence[int]) -> tuple[slice, ...]:
    """The centres MONAI's ``weighted_patch_samples`` draws from (patches that fit in the image)."""
    return tuple(slice(w // 2, m - w + w // 2) if m > w else slice(m // 2, m // 2 + 1)
                 for w, m in zip((int(s) for s in patch_size), (int(n) for n in shape)))


def class_balanced_weights(labels: torch.Tensor, weights: torch.Tensor, patch_size: Sequence[int],
                           ratios: Sequence[float] | Mapping[int, float] | None = None) -> torch.Tensor:
    """Re-weight ``weights`` so that the centre's class is drawn with probability proportional to ``ratios``.

    Within a class the draw stays proportional to ``weights`` (information), or uniform if the
    class has no information at all. The classes and their sizes are counted over the centres
    that can be drawn (:func:`valid_centre_slices`), so the probabilities hold exactly.

    Args:
        labels: integer label map of the spatial shape (argmax labels).
        weights: non-negative weights of the same shape.
        patch_size: the patch size (decides the valid centres).
        ratios: per class label (sequence indexed by label, or mapping label -> ratio); classes
            absent from the valid centres are dropped and the rest renormalised. Default: equal.

    Example:
        >>> labels = torch.zeros(20, 20, dtype=torch.long); labels[5:7, 5:7] = 1
        >>> w = class_balanced_weights(labels, torch.ones(20, 20), (4, 4))
        >>> round(float(w[labels == 1].sum() / w.sum()), 3)
        0.5
    """
    if labels.shape != weights.shape:
        raise InputError(f"label map {tuple(labels.shape)} and weights {tuple(weights.shape)} differ in shape")
    window = valid_centre_slices(labels.shape, patch_size)
    valid_labels = labels[window].long()
    valid_weights = weights[window].double()
    present = [int(c) for c in torch.unique(valid_labels)]
    if isinstance(ratios, Mapping):
        ratio_of = {int(k): float(v) for k, v in ratios.items()}
    elif ratios is not None:
        ratio_of = {k: float(v) for k, v in enumerate(ratios)}
    else:
        ratio_of = {c: 1.0 for c in present}
    if any(v < 0 for v in ratio_of.values()):
        raise InputError(f"class ratios must be non-negative, got {ratios}")
    drawn = [c for c in present if ratio_of.get(c, 0.0) > 0]
    if not drawn:
        raise InputError(f"no class with a positive ratio among the labels present {present}; check ratios={ratios}")
    total_ratio = sum(ratio_of[c] for c in drawn)
    balanced = torch.zeros_like(valid_weights)
    for c in drawn:
        in_class = valid_labels == c
        class_weights = valid_weights * in_class
        mass = float(class_weights.sum())
        if mass <= 0:
            class_weights, mass = in_class.double(), float(in_class.sum())
        balanced += class_weights * (ratio_of[c] / total_ratio / mass)
    out = torch.zeros(labels.shape, dtype=torch.float64)
    out[window] = balanced
    return out.float()


def squeeze_slice(image: torch.Tensor, affine: torch.Tensor | None, axis: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop the singleton spatial ``axis`` of a ``(C, X, Y, Z)`` patch; move its affine column last.

    The 4x4 affine stays a full 3D affine: the in-plane axes keep their columns, and the dropped
    axis becomes the third column, so ``affine @ (i, j, 0, 1)`` is the world position of pixel
    ``(i, j)`` of the slice (the convention of 2D images read by ``load_image``).

    Example:
        >>> patch = torch.zeros(1, 4, 1, 5)
        >>> out, affine = squeeze_slice(patch, torch.diag(torch.tensor([1.0, 2.0, 3.0, 1.0])), axis=1)
        >>> tuple(out.shape), affine.diagonal().tolist()
        ((1, 4, 5), [1.0, 0.0, 0.0, 1.0])
    """
    if image.ndim != 4 or image.shape[axis + 1] != 1:
        raise InputError(f"expected a (C, X, Y, Z) patch one voxel thick along axis {axis}, got {tuple(image.shape)}")
    squeezed = image.squeeze(axis + 1)
    if affine is None:
        return squeezed, None
    order = [a for a in range(3) if a != axis] + [axis, 3]
    return squeezed, affine[:, order]
