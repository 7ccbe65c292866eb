"""Intensity algorithms: modality normalisation, equalisation, gamma/contrast, histogram matching, noise.

All functions take plain channel-first tensors ``(C, *spatial)`` (2D or 3D) in a floating dtype
and return new tensors of the same shape and dtype; statistics are taken over the whole image
(all channels) unless a function says otherwise. Random functions draw from the
``numpy.random.RandomState`` they are given.

Normalisation is expressed as a :class:`LinearMap` ``y = clip(scale * x + offset, 0, 1)``: the
normalising transforms record it on the image's metadata, so that later steps can convert
physical quantities (CT noise in HU) to the normalised scale exactly.

Why these defaults (see also ``docs/augmentation.md``):

* **CT windows** (:data:`CT_WINDOWS`, width/level in HU) are the standard head-CT reading
  windows: *brain* W80/L40 spans 0..80 HU, from CSF (0..15 HU) through white (25..30) and grey
  matter (35..45) to acute blood (50..80), the range where the diagnostic contrast of the brain
  lies; *subdural* W200/L80 (-20..180 HU) keeps extra-axial blood distinguishable next to the
  inner table of the skull; *bone* W2800/L600 (-800..2000 HU) shows cortical and trabecular bone
  and air cells without saturating; *soft_tissue* W400/L40 (-160..240 HU) spans fat (-100) to
  enhanced vessels, for scalp, orbit and neck. Windowing (rather than min-max scaling) maps
  the same tissue to the same value in every scan, because HU are calibrated.
* **MR** has no calibrated unit: intensities depend on scanner, coil and sequence. Robust
  percentile scaling (0.5..99.5 %) maps tissue to comparable ranges while ignoring the few
  hottest voxels (vessels, fat, artefacts) that would compress min-max scaling; z-score is offered
  for networks that expect zero-mean input.
* **PET** in SUV is calibrated (body-weight normalised activity): a fixed SUV range maps uptake
  identically across patients; ``max_suv`` = 10 covers brain grey-matter FDG uptake (SUV 6..10)
  without compressing it. Raw activity or counts are not comparable between patients, so they
  fall back to percentile scaling.
* **SPECT** counts depend on dose, acquisition time and reconstruction: percentile scaling from
  0 (zero counts stay zero) to 99.5 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from monai_fusion.errors import InputError

__all__ = [
    "CT_WINDOWS", "MODALITIES", "LinearMap", "canonical_modality", "resolve_ct_window", "window_map",
    "percentile_map", "zscore_map", "suv_map", "apply_linear_map", "robust_maximum", "cormack_to_hounsfield",
    "hounsfield_to_cormack", "equalize_histogram", "equalize_adaptive_histogram", "adjust_gamma_contrast",
    "match_histogram", "add_rician_noise", "add_gaussian_noise", "add_poisson_noise",
]

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (80.0, 40.0),
    "subdural": (200.0, 80.0),
    "bone": (2800.0, 600.0),
    "soft_tissue": (400.0, 40.0),
}
"""CT window presets as ``(width, level)`` in HU; see the module docstring for why."""

MODALITIES = ("CT", "MR", "PT", "NM")
"""DICOM modality codes we normalise: CT, MR, PET (PT) and SPECT (NM)."""

_ALIASES = {"CT": "CT", "MR": "MR", "MRI": "MR", "PT": "PT", "PET": "PT", "NM": "NM", "SPECT": "NM"}


@dataclass(frozen=True)
class LinearMap:
    """``y = scale * x + offset``, clipped to 0..1 when ``clip``; a constant image gets ``scale = offset = 0``."""

    scale: float
    offset: float
    clip: bool = True


def canonical_modality(name: str) -> str:
    """The DICOM code (``CT``, ``MR``, ``PT``, ``NM``) of a modality name; ``MRI``/``PET``/``SPECT`` are accepted.

    Example:
        >>> canonical_modality("pet"), canonical_modality("SPECT")
        ('PT', 'NM')
    """
    code = _ALIASES.get(str(name).strip().upper())
    if code is None:
        raise InputError(f"unknown modality {name!r}; use one of CT, MR (MRI), PT (PET) or NM (SPECT)")
    return code


def resolve_ct_window(window: str | Sequence[float]) -> tuple[float, float]:
    """``(width, level)`` in HU of a preset name of :data:`CT_WINDOWS` or of a ``(width, level)`` pair.

    Example:
        >>> resolve_ct_window("bone"), resolve_ct_window((350, 50))
        ((2800.0, 600.0), (350.0, 50.0))
    """
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in CT_WINDOWS:
            raise InputError(f"unknown CT window {window!r}; use one of {sorted(CT_WINDOWS)} or a (width, level) pair in HU")
        return CT_WINDOWS[key]
    try:
        width, level = (float(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"a CT window is a preset name or a (width, level) pair in HU, got {window!r}") from None
    if not np.isfinite(width) or not np.isfinite(level) or width <= 0:
        raise InputError(f"CT window width must be a positive number of HU, got width={width}, level={level}")
    return width, level


def window_map(width: float, level: float) -> LinearMap:
    """Map the HU window ``[level - width/2, level + width/2]`` to 0..1 (clipped)."""
    low = level - width / 2.0
    return LinearMap(1.0 / width, -low / width + 0.0, True)  # + 0.0: no negative zero in records


def _selected(image: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    values = image.detach().cpu().numpy()
    if mask is not None:
        selection = np.broadcast_to(mask.detach().cpu().numpy().astype(bool), values.shape)
        values = values[selection]
        if values.size == 0:
            raise InputError("the foreground mask selects no voxel; give a mask with at least one true voxel")
    return values.ravel()


def percentile_map(image: torch.Tensor, lower: float = 0.5, upper: float = 99.5, mask: torch.Tensor | None = None,
                   clip: bool = True) -> LinearMap:
    """Map the ``lower``..``upper`` percentiles of ``image`` (within ``mask`` if given) to 0..1.

    A constant image (or mask region) gives the all-zero map, so it normalises to 0 without NaN.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    low, high = np.percentile(_selected(image, mask), [lower, upper])
    if not high > low:
        return LinearMap(0.0, 0.0, clip)
    return LinearMap(float(1.0 / (high - low)), float(-low / (high - low)), clip)


def zscore_map(image: torch.Tensor, mask: torch.Tensor | None = None) -> LinearMap:
    """Zero mean, unit standard deviation (within ``mask`` if given), not clipped; constant images map to 0."""
    values = _selected(image, mask).astype(np.float64)
    std = float(values.std())
    if std == 0.0:
        return LinearMap(0.0, 0.0, False)
    return LinearMap(1.0 / std, -float(values.mean()) / std, False)


def suv_map(max_suv: float) -> LinearMap:
    """Map SUV ``0..max_suv`` to 0..1 (clipped)."""
    if not (np.isfinite(max_suv) and max_suv > 0):
        raise InputError(f"max_suv must be a positive SUV, got {max_suv!r}")
    return LinearMap(1.0 / float(max_suv), 0.0, True)


def apply_linear_map(image: torch.Tensor, linear_map: LinearMap) -> torch.Tensor:
    """``clip(scale * image + offset, 0, 1)`` (no clipping when ``linear_map.clip`` is false)."""
    out = image * linear_map.scale + linear_map.offset
    return out.clamp(0.0, 1.0) if linear_map.clip else out


def robust_maximum(image: torch.Tensor, percentile: float = 99.5) -> float:
    """The ``percentile`` of the image: a maximum that ignores the few hottest voxels."""
    return float(np.percentile(image.detach().cpu().numpy(), percentile))


# Cormack units (Rorden et al., NeuroImage 61(4), 2012, the CT template in ../shared/data/templates):
# v = HU + 1024 is kept below 900 (air..-124 HU), stretched 10x over the next 200 (-124..76 HU,
# the brain) and shifted by 1800 above. Checked on the template: the brain parenchyma mode sits
# at about 2520 c = 38 HU, CSF at 2150..2300 c = 1..16 HU.
_CORMACK_DARK, _CORMACK_MID, _CORMACK_STRETCH, _CORMACK_OFFSET = 900.0, 200.0, 10.0, 1024.0


def cormack_to_hounsfield(image: torch.Tensor) -> torch.Tensor:
    """Convert Cormack units (the CT template of Rorden et al. 2012) to Hounsfield units.

    Example:
        >>> cormack_to_hounsfield(torch.tensor([0.0, 2540.0, 3300.0])).tolist()
        [-1024.0, 40.0, 476.0]
    """
    mid_top = _CORMACK_DARK + _CORMACK_MID * _CORMACK_STRETCH
    shifted = torch.where(image <= _CORMACK_DARK, image,
                          torch.where(image <= mid_top, _CORMACK_DARK + (image - _CORMACK_DARK) / _CORMACK_STRETCH,
                                      image - _CORMACK_MID * (_CORMACK_STRETCH - 1.0)))
    return shifted - _CORMACK_OFFSET


def hounsfield_to_cormack(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`cormack_to_hounsfield` (values below -1024 HU map to 0)."""
    shifted = (image + _CORMACK_OFFSET).clamp(min=0.0)
    mid_top = _CORMACK_DARK + _CORMACK_MID
    return torch.where(shifted <= _CORMACK_DARK, shifted,
                       torch.where(shifted <= mid_top, _CORMACK_DARK + (shifted - _CORMACK_DARK) * _CORMACK_STRETCH,
                                   shifted + _CORMACK_MID * (_CORMACK_STRETCH - 1.0)))


def _per_channel(image: torch.Tensor, function) -> torch.Tensor:
    """Apply a numpy function to each channel; constant channels become 0 (nothing to equalise)."""
    channels = []
    for channel in image.detach().cpu().numpy():
        if channel.max() == channel.min():
            channels.append(np.zeros_like(channel))
        else:
            channels.append(function(channel))
    return torch.as_tensor(np.stack(channels), dtype=image.dtype, device=image.device)


def equalize_histogram(image: torch.Tensor, num_bins: int = 256, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Global histogram equalisation of each channel to 0..1 (2D or 3D; scikit-image's ``equalize_hist``).

    The output is the intensity's cumulative frequency, stretched so that the lowest intensity
    (in the mask) maps to 0 and the highest to 1.

    ``mask`` (spatial shape or ``(1, *spatial)``) restricts the histogram to a region, e.g. the
    head, so that the background does not take most of the output range.
    """
    from skimage.exposure import equalize_hist

    spatial_mask = None if mask is None else mask.detach().cpu().numpy().astype(bool).reshape(image.shape[1:])
    if spatial_mask is not None and not spatial_mask.any():
        raise InputError("the equalisation mask selects no voxel; give a mask with at least one true voxel")

    def equalize(channel: np.ndarray) -> np.ndarray:
        # scikit-image returns the CDF, whose lowest value is the fraction of voxels in the lowest
        # bin (the background, often most of the image); stretch so the lowest value maps to 0
        cdf = equalize_hist(channel, nbins=num_bins, mask=spatial_mask)
        low = float(cdf[spatial_mask].min() if spatial_mask is not None else cdf.min())
        return np.clip((cdf - low) / (1.0 - low), 0.0, 1.0) if low < 1.0 else np.zeros_like(cdf)

    return _per_channel(image, equalize)


def equalize_adaptive_histogram(image: torch.Tensor, kernel_size: int | Sequence[int] | None = None,
                                clip_limit: float = 0.01, num_bins: int = 256) -> torch.Tensor:
    """CLAHE of each channel to 0..1, tile-based over the whole 2D slice or 3D volume.

    Wraps scikit-image's ``equalize_adapthist``, which is n-dimensional: in 3D the contextual
    regions are ``kernel_size`` boxes (default 1/8 of each axis) and the mapping is interpolated
    between them in all three axes, so neighbouring slices stay consistent (slice-wise 2D CLAHE
    makes the volume flicker along the third axis). Each channel is min-max scaled to 0..1 first,
    as ``equalize_adapthist`` requires.
    """
    from skimage.exposure import equalize_adapthist

    if not 0.0 < clip_limit <= 1.0:
        raise InputError(f"clip_limit must be in (0, 1], got {clip_limit}")

    def clahe(channel: np.ndarray) -> np.ndarray:
        unit = (channel - channel.min()) / (channel.max() - channel.min())
        sizes = kernel_size
        if sizes is not None and not isinstance(sizes, (int, np.integer)):
            sizes = [min(int(k), n) for k, n in zip(sizes, channel.shape)]
        return equalize_adapthist(unit.astype(np.float64), kernel_size=sizes, clip_limit=clip_limit, nbins=num_bins)

    return _per_channel(image, clahe)


def adjust_gamma_contrast(image: torch.Tensor, gamma: float = 1.0, contrast: float = 1.0) -> torch.Tensor:
    """Gamma, then linear contrast about the mean, within each channel's own min..max range.

    Each channel is scaled to 0..1, raised to ``gamma`` (< 1 brightens dark tissue, > 1 darkens),
    stretched by ``contrast`` about its mean, clipped to 0..1 and scaled back, so that the
    output keeps the input's range (0..1 stays 0..1, HU stay in the image's HU range).
    """
    if not gamma > 0 or not contrast > 0:
        raise InputError(f"gamma and contrast must be positive, got gamma={gamma}, contrast={contrast}")
    spatial_axes = tuple(range(1, image.ndim))
    low = image.amin(dim=spatial_axes, keepdim=True)
    span = image.amax(dim=spatial_axes, keepdim=True) - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    unit = ((image - low) / safe_span).clamp(0.0, 1.0) ** gamma
    if contrast != 1.0:
        mean = unit.mean(dim=spatial_axes, keepdim=True)
        unit = (mean + contrast * (unit - mean)).clamp(0.0, 1.0)
    return torch.where(span > 0, unit * safe_span + low, image)


def match_histogram(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Map each channel's intensities so that its histogram matches the reference's (scikit-image).

    ``reference`` may have another spatial shape (any image of the target appearance); it has
    either the image's number of channels (matched channel by channel) or one channel (every
    channel is matched to it).
    """
    from skimage.exposure import match_histograms

    if reference.numel() == 0:
        raise InputError("the histogram-matching reference is empty; give a reference image with voxels")
    ref = reference.detach().cpu().numpy()
    if ref.shape[0] not in (1, image.shape[0]):
        raise InputError(f"the reference has {ref.shape[0]} channels and the image {image.shape[0]}; "
                         "give a reference with one channel or as many as the image")
    channels = [match_histograms(channel, ref[min(index, ref.shape[0] - 1)])
                for index, channel in enumerate(image.detach().cpu().numpy())]
    return torch.as_tensor(np.stack(channels), dtype=image.dtype, device=image.device)


def _per_channel_std(std: float | Sequence[float], image: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(np.broadcast_to(np.asarray(std, dtype=np.float64), (image.shape[0],)).copy(),
                             dtype=image.dtype, device=image.device)
    return values.reshape(-1, *([1] * (image.ndim - 1)))


def _normal(rng: np.random.RandomState, image: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(rng.standard_normal(image.shape).astype(np.float32), device=image.device).to(image.dtype)


def add_rician_noise(image: torch.Tensor, std: float | Sequence[float], rng: np.random.RandomState) -> torch.Tensor:
    """Rician noise, the noise of MR magnitude images: ``sqrt((m + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, std)``.

    MR images are magnitudes of complex data whose real and imaginary parts carry independent
    Gaussian noise (Gudbjartsson & Patz, MRM 34(6), 1995), so the background becomes a positive
    Rayleigh noise floor and the signal is biased upwards at low SNR; additive Gaussian noise
    would instead create negative values in the background. The magnitude ``m`` is taken
    relative to the image minimum (0 for percentile-scaled images), which keeps the model valid
    for z-scored images too. ``std`` is in image units, one value or one per channel.
    """
    floor = image.amin()
    magnitude = image - floor
    scale = _per_channel_std(std, image)
    real = magnitude + _normal(rng, image) * scale
    imaginary = _normal(rng, image) * scale
    return torch.sqrt(real * real + imaginary * imaginary) + floor


def add_gaussian_noise(image: torch.Tensor, std: float | Sequence[float], rng: np.random.RandomState,
                       clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Additive Gaussian noise of ``std`` (image units, one value or one per channel), optionally clipped.

    The noise of reconstructed CT is close to Gaussian in HU (many projections contribute to each
    voxel, and filtered back-projection is linear), with a standard deviation of a few HU at
    diagnostic dose and 10..30 HU at low dose.
    """
    noisy = image + _normal(rng, image) * _per_channel_std(std, image)
    return noisy.clamp(*clip) if clip is not None else noisy


def add_poisson_noise(image: torch.Tensor, counts: float, rng: np.random.RandomState,
                      reference: float | None = None) -> torch.Tensor:
    """Poisson-like noise of emission images: the image is read as counts, ``counts`` at ``reference``.

    PET and SPECT measure photon counts, whose variance equals their mean; a reconstructed image
    keeps that signal dependence (hot regions are noisier in absolute terms, relatively quieter).
    The image is scaled so that ``reference`` (default: its 99.5th percentile) corresponds to
    ``counts`` expected counts, resampled from a Poisson distribution and scaled back: the
    relative noise at the reference is ``1 / sqrt(counts)`` (100 counts: 10 %). Negative values
    (impossible counts) are treated as 0. Reconstruction also correlates the noise spatially,
    which this model leaves out.
    """
    if not counts > 0:
        raise InputError(f"counts must be positive, got {counts}")
    positive = image.clamp(min=0.0)
    ref = robust_maximum(positive) if reference is None else float(reference)
    if not ref > 0:
        return image.clone()
    expected = (positive / ref * counts).detach().cpu().numpy().astype(np.float64)
    sampled = torch.as_tensor(rng.poisson(expected), device=image.device).to(image.dtype)
    return sampled * (ref / counts)
