"""Modality-aware intensity transforms: normalisation, equalisation, gamma/contrast, histogram matching,
bias field and noise, with random variants drawn jointly or independently across modality keys.

The algorithms are the pure functions of :mod:`monai_fusion.transforms.functional.intensity`
(where each default is justified); these classes add MONAI's array/dictionary interface, resolve
each image's modality and units, and keep the input's type (numpy in, numpy out; MetaTensor in,
MetaTensor out with its affine and metadata). Integer inputs give float32 output.

Modality comes from the ``modality`` argument or from ``meta["modality"]`` of a MetaTensor
(``CT``, ``MR``, ``PT``, ``NM``; ``MRI``/``PET``/``SPECT`` are accepted too). Units come from
``meta["units"]`` (``load_image`` writes ``HU`` for CT and ``SUVbw`` for converted PET) unless
given.

Normalisation records what it did on a MetaTensor: ``meta["units"] = "normalised"`` and
``meta["intensity_normalisation"] = {"modality", "method", "scale", "offset", "clipped", ...}``
(one scale/offset per output channel, ``normalised = clip(scale * raw + offset, 0, 1)``). The
noise transform reads it to add CT noise in HU to an already windowed image exactly; transforms
that remap intensities non-linearly (equalisation, gamma) mark the record ``"nonlinear": True``.

Random transforms (``RandGammaContrast(d)``, ``RandMRBiasField(d)``, ``RandModalityNoise(d)``):
with ``joint=True`` a dictionary transform makes ONE draw (apply or not, and the parameters) and
uses it for every key, e.g. one scanner's bias field on T1 and T2 of the same session; with
``joint=False`` each key gets its own draw, e.g. two scanners. Dictionary transforms share their
``RandomState`` with the array transform inside (``set_random_state`` forwards the state object),
so the apply decision and the parameters come from one stream.

Example:
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> ct = MetaTensor(torch.tensor([[[-1000.0, 0.0, 40.0, 80.0, 1000.0]]]), meta={"modality": "CT", "units": "HU"})
    >>> NormalizeModality(ct_window="brain")(ct).tolist()
    [[[0.0, 0.0, 0.5, 1.0, 1.0]]]
"""

from __future__ import annotations

import warnings
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandBiasField, RandomizableTransform, Transform
from monai.utils import TransformBackends

from monai_fusion.errors import InputError
from monai_fusion.rules.inputs import numpy_to_tensor
from monai_fusion.transforms.fusion import like_source
from monai_fusion.transforms.functional import intensity as F

__all__ = [
    "NormalizeModality", "NormalizeModalityd", "NormalizeModalityD", "NormalizeModalityDict",
    "EqualizeHistogram", "EqualizeHistogramd", "EqualizeHistogramD", "EqualizeHistogramDict",
    "EqualizeAdaptiveHistogram", "EqualizeAdaptiveHistogramd", "EqualizeAdaptiveHistogramD",
    "EqualizeAdaptiveHistogramDict",
    "AdjustGammaContrast", "AdjustGammaContrastd", "AdjustGammaContrastD", "AdjustGammaContrastDict",
    "HistogramMatch", "HistogramMatchd", "HistogramMatchD", "HistogramMatchDict",
    "RandGammaContrast", "RandGammaContrastd", "RandGammaContrastD", "RandGammaContrastDict",
    "RandMRBiasField", "RandMRBiasFieldd", "RandMRBiasFieldD", "RandMRBiasFieldDict",
    "RandModalityNoise", "RandModalityNoised", "RandModalityNoiseD", "RandModalityNoiseDict",
    "modality_of",
]

NORMALISED_UNITS = "normalised"
_UNKNOWN_UNITS = (None, "", "unknown")


# ----------------------------------------------------------------------------------------------- helpers


def _plain(image) -> torch.Tensor:
    """A plain floating tensor (float32 for integer/bool/half inputs); refuses empty and non-finite images."""
    if isinstance(image, np.ndarray):
        tensor = numpy_to_tensor(image)
    elif isinstance(image, torch.Tensor):
        tensor = image.as_tensor() if isinstance(image, MetaTensor) else image
    else:
        raise InputError(f"expected a numpy array or a torch tensor, got {type(image).__name__}")
    if tensor.ndim < 2:
        raise InputError(f"expected a channel-first image (C, *spatial), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise InputError(f"the image is empty (shape {tuple(tensor.shape)}); give an image with voxels")
    if not tensor.is_floating_point() or tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise InputError("the image contains NaN or Inf values; replace them (e.g. torch.nan_to_num) first")
    return tensor


def _meta(image) -> dict:
    return image.meta if isinstance(image, MetaTensor) else {}


def modality_of(image, modality: str | None = None) -> str | None:
    """The DICOM modality code of ``image``: ``modality`` if given, else its ``meta["modality"]``, else None."""
    if modality is not None:
        return F.canonical_modality(modality)
    stored = _meta(image).get("modality")
    return F.canonical_modality(stored) if stored not in (None, "") else None


def _output(result: torch.Tensor, source, **meta_updates) -> NdarrayOrTensor:
    """``result`` in the type of ``source`` (MetaTensor: its metadata plus ``meta_updates``)."""
    if isinstance(result, MetaTensor):  # MONAI transforms called on plain tensors return fresh MetaTensors
        result = result.as_tensor()
    output = like_source(result, source)
    if isinstance(output, MetaTensor):
        output.meta.update(meta_updates)
    return output


def _mark_nonlinear(source, operation: str) -> dict:
    """Metadata update saying that intensities were remapped non-linearly (noise in HU no longer applies)."""
    record = _meta(source).get("intensity_normalisation")
    if not isinstance(record, dict):
        return {"intensity_normalisation": {"method": operation, "nonlinear": True}}
    return {"intensity_normalisation": {**record, "nonlinear": True, "after": [*record.get("after", []), operation]}}


def _mask(mask) -> torch.Tensor | None:
    if mask is None:
        return None
    tensor = numpy_to_tensor(mask) if isinstance(mask, np.ndarray) else torch.as_tensor(mask)
    return (tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor).bool()


def _windows(ct_window) -> list[tuple[float, float]]:
    """One or several CT windows: a preset, a (width, level) pair, or a list of those."""
    if isinstance(ct_window, str):
        return [F.resolve_ct_window(ct_window)]
    items = list(ct_window)
    if len(items) == 2 and all(isinstance(v, (int, float, np.number)) for v in items):
        return [F.resolve_ct_window(items)]
    if not items:
        raise InputError("ct_window is empty; give a preset name, a (width, level) pair or a list of them")
    return [F.resolve_ct_window(item) for item in items]


def _per_key(keys: Sequence[Hashable], values, name: str) -> dict:
    """Per-key options: None/one value for all keys, a sequence aligned with keys, or a mapping."""
    if values is None or isinstance(values, str):
        return {key: values for key in keys}
    if isinstance(values, Mapping):
        unknown = set(values) - set(keys)
        if unknown:
            raise InputError(f"{name} names keys that are not transformed: {sorted(map(str, unknown))}")
        return {key: values.get(key) for key in keys}
    values = list(values)
    if len(values) != len(keys):
        raise InputError(f"{name} has {len(values)} entries for {len(keys)} keys; give one per key or a mapping")
    return dict(zip(keys, values))


# ----------------------------------------------------------------------------------------------- normalisation


class NormalizeModality(Transform):
    """Normalise an image by its modality: CT windows, MR percentiles or z-score, PET SUV, SPECT percentiles.

    ============ ======================================================================================
    modality     mapping (``F`` = :mod:`monai_fusion.transforms.functional.intensity`)
    ============ ======================================================================================
    CT           HU window(s) to 0..1, clipped: ``ct_window`` is a preset of ``F.CT_WINDOWS``
                 (``brain`` W80/L40, ``subdural`` W200/L80, ``bone`` W2800/L600, ``soft_tissue``
                 W400/L40), a ``(width, level)`` pair, or a list of them (one output channel each,
                 e.g. brain + bone as a two-channel input)
    MR           ``mr_method="percentile"``: ``mr_percentiles`` (0.5..99.5) to 0..1, clipped, within
                 ``mask`` if given; ``"zscore"``: zero mean, unit variance within ``mask``, unclipped
    PT           SUV 0..``max_suv`` (10) to 0..1, clipped; when the units are known and not SUV,
                 ``nm_percentiles`` instead, with a warning
    NM           counts: ``nm_percentiles`` (0..99.5) to 0..1, clipped (zero counts stay zero)
    ============ ======================================================================================

    Units: CT is taken to be in HU unless ``units`` (or ``meta["units"]``) names something else
    (e.g. ``"display"`` for 8-bit atlas PNGs, which then get percentile scaling with a warning):
    CT converters write HU nearly always. PET is taken to be SUV when the units say so
    (``SUVbw``...) or when there are no units at all (plain arrays, MONAI's ``LoadImage``: the
    caller vouches); units that are known and not SUV, ``"unknown"`` included (what
    ``load_image`` writes for NIfTI), give percentile scaling and a warning. A constant image (or
    constant masked region) normalises to 0 everywhere, without NaN (PET and CT map absolutely).

    Args:
        modality: CT/MR/PT/NM (or MRI/PET/SPECT); default: ``meta["modality"]`` of each image.
        ct_window: CT window preset, ``(width, level)`` in HU, or a list of them.
        mr_method: ``"percentile"`` or ``"zscore"``.
        mr_percentiles: lower and upper percentile for MR (and for CT/PET fallbacks).
        max_suv: SUV mapped to 1 for PET.
        nm_percentiles: lower and upper percentile for SPECT counts and non-SUV PET.
        units: override the units of the images (e.g. ``"HU"``, ``"SUVbw"``, ``"display"``).

    Example:
        >>> import numpy as np
        >>> NormalizeModality("PET")(np.array([[0.0, 5.0, 20.0]], np.float32)).tolist()
        [[0.0, 0.5, 1.0]]
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, modality: str | None = None, ct_window="brain", mr_method: str = "percentile",
                 mr_percentiles: tuple[float, float] = (0.5, 99.5), max_suv: float = 10.0,
                 nm_percentiles: tuple[float, float] = (0.0, 99.5), units: str | None = None) -> None:
        self.modality = F.canonical_modality(modality) if modality is not None else None
        self.windows = _windows(ct_window)
        if mr_method not in ("percentile", "zscore"):
            raise InputError(f"unknown mr_method {mr_method!r}; use 'percentile' or 'zscore'")
        self.mr_method = mr_method
        self.mr_percentiles = tuple(float(p) for p in mr_percentiles)
        self.nm_percentiles = tuple(float(p) for p in nm_percentiles)
        for low, high in (self.mr_percentiles, self.nm_percentiles):
            if not 0.0 <= low < high <= 100.0:
                raise InputError(f"percentiles must satisfy 0 <= lower < upper <= 100, got ({low}, {high})")
        F.suv_map(max_suv)
        self.max_suv = float(max_suv)
        self.units = units

    def linear_maps(self, image: torch.Tensor, modality: str, units: str | None,
                    mask: torch.Tensor | None) -> tuple[list[F.LinearMap], dict]:
        """The maps to apply (one per output channel group) and the record of what was chosen."""
        record: dict = {"modality": modality, "source_units": units}
        if modality == "CT":
            if units in _UNKNOWN_UNITS or str(units).upper() == "HU":
                record.update(method="window", windows=[list(w) for w in self.windows])
                return [F.window_map(*w) for w in self.windows], record
            warnings.warn(f"CT image in units {units!r}, not HU: CT windows do not apply; "
                          f"using percentile scaling {self.mr_percentiles}", stacklevel=3)
            record.update(method="percentile", percentiles=list(self.mr_percentiles), fallback=True)
            return [F.percentile_map(image, *self.mr_percentiles, mask=mask)], record
        if modality == "MR":
            if self.mr_method == "zscore":
                record.update(method="zscore")
                return [F.zscore_map(image, mask)], record
            record.update(method="percentile", percentiles=list(self.mr_percentiles))
            return [F.percentile_map(image, *self.mr_percentiles, mask=mask)], record
        if modality == "PT" and (units is None or str(units).upper().startswith("SUV")):
            record.update(method="suv", max_suv=self.max_suv)
            return [F.suv_map(self.max_suv)], record
        if modality == "PT":
            warnings.warn(f"PET image in units {units!r}, not SUV: using percentile scaling {self.nm_percentiles} "
                          "instead of a fixed SUV range (convert to SUV for scans that compare)", stacklevel=3)
        record.update(method="percentile", percentiles=list(self.nm_percentiles), fallback=modality == "PT")
        return [F.percentile_map(image, *self.nm_percentiles, mask=mask)], record

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None,
                 modality: str | None = None) -> NdarrayOrTensor:
        image = _plain(img)
        code = modality_of(img, modality or self.modality)
        if code is None:
            raise InputError("the image's modality is unknown; pass modality= (CT, MR, PT or NM) "
                             "or give a MetaTensor with meta['modality']")
        units = self.units if self.units is not None else _meta(img).get("units")
        maps, record = self.linear_maps(image, code, units, _mask(mask))
        out = torch.cat([F.apply_linear_map(image, m) for m in maps])
        channels = image.shape[0]
        record.update(scale=[m.scale for m in maps for _ in range(channels)],
                      offset=[m.offset for m in maps for _ in range(channels)], clipped=maps[0].clip)
        return _output(out, img, units=NORMALISED_UNITS, intensity_normalisation=record)


class NormalizeModalityd(MapTransform):
    """Dictionary twin of :class:`NormalizeModality`, each key with its own modality.

    Args:
        keys: the images to normalise.
        modalities: None (each image's ``meta["modality"]``), one modality for all keys, a list
            aligned with ``keys``, or a mapping ``key -> modality``.
        mask_key: optional key of a foreground mask used for the MR/percentile statistics.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
        kwargs: the options of :class:`NormalizeModality` (``ct_window``, ``mr_method``...).

    Example:
        >>> norm = NormalizeModalityd(("mri", "ct"), modalities={"mri": "MR", "ct": "CT"}, ct_window="brain")
    """

    backend = NormalizeModality.backend

    def __init__(self, keys: KeysCollection, modalities=None, mask_key: Hashable | None = None,
                 allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modalities = {k: (F.canonical_modality(m) if m is not None else None)
                           for k, m in _per_key(self.keys, modalities, "modalities").items()}
        self.mask_key = mask_key
        self.normalizer = NormalizeModality(**kwargs)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key], mask=mask, modality=self.modalities[key])
        return d


# ----------------------------------------------------------------------------------------------- equalisation


class EqualizeHistogram(Transform):
    """Global histogram equalisation of each channel to 0..1, for 2D and 3D images.

    Wraps scikit-image's ``equalize_hist`` per channel (MONAI's ``HistogramNormalize``
    equalises all channels together onto 0..255; per channel on 0..1 matches
    :class:`EqualizeAdaptiveHistogram`). ``mask`` (e.g. the head) keeps the background out of the
    histogram. Constant channels become 0.

    Args:
        num_bins: histogram bins.
        mask: default mask, ``(1, *spatial)`` or spatial shape; a call's ``mask`` overrides it.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, num_bins: int = 256, mask: NdarrayOrTensor | None = None) -> None:
        self.num_bins, self.mask = int(num_bins), mask

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        out = F.equalize_histogram(_plain(img), self.num_bins, _mask(mask if mask is not None else self.mask))
        return _output(out, img, units=NORMALISED_UNITS, **_mark_nonlinear(img, "histogram_equalisation"))


class EqualizeAdaptiveHistogram(Transform):
    """CLAHE of each channel to 0..1: tile-based over a 2D slice or a whole 3D volume.

    Wraps scikit-image's n-dimensional ``equalize_adapthist``: 3D volumes are equalised with 3D
    contextual regions, so neighbouring slices get consistent mappings. Use it for display and
    for networks that should see local contrast regardless of the global window. Constant
    channels become 0.

    Args:
        kernel_size: contextual-region size in voxels (one value or one per spatial axis);
            default 1/8 of each axis.
        clip_limit: contrast limit in (0, 1]; higher gives more contrast (and more noise).
        num_bins: histogram bins.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, kernel_size: int | Sequence[int] | None = None, clip_limit: float = 0.01,
                 num_bins: int = 256) -> None:
        if not 0.0 < clip_limit <= 1.0:
            raise InputError(f"clip_limit must be in (0, 1], got {clip_limit}")
        self.kernel_size, self.clip_limit, self.num_bins = kernel_size, float(clip_limit), int(num_bins)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        out = F.equalize_adaptive_histogram(_plain(img), self.kernel_size, self.clip_limit, self.num_bins)
        return _output(out, img, units=NORMALISED_UNITS, **_mark_nonlinear(img, "clahe"))


class AdjustGammaContrast(Transform):
    """Gamma and contrast adjustment within each channel's own range (see ``F.adjust_gamma_contrast``).

    Args:
        gamma: exponent on the 0..1-scaled channel (< 1 brightens dark tissue).
        contrast: stretch about the channel mean (> 1 more contrast), clipped to the range.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, gamma: float = 1.0, contrast: float = 1.0) -> None:
        if not gamma > 0 or not contrast > 0:
            raise InputError(f"gamma and contrast must be positive, got gamma={gamma}, contrast={contrast}")
        self.gamma, self.contrast = float(gamma), float(contrast)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        out = F.adjust_gamma_contrast(_plain(img), self.gamma, self.contrast)
        return _output(out, img, **_mark_nonlinear(img, "gamma_contrast"))


class HistogramMatch(Transform):
    """Match each channel's histogram to a reference image's (scikit-image ``match_histograms``).

    Typical use: harmonise MR from different scanners or sites to one reference appearance
    before fusion. The reference may have another grid; it has one channel or as many as the
    image.

    Args:
        reference: default reference image; a call's ``reference`` overrides it.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, reference: NdarrayOrTensor | None = None) -> None:
        self.reference = reference

    def __call__(self, img: NdarrayOrTensor, reference: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        reference = reference if reference is not None else self.reference
        if reference is None:
            raise InputError("HistogramMatch needs a reference image; pass reference= when building or calling it")
        out = F.match_histogram(_plain(img), _plain(reference))
        return _output(out, img, **_mark_nonlinear(img, "histogram_matching"))


class _Deterministicd(MapTransform):
    """Apply one array transform to every key."""

    def __init__(self, keys: KeysCollection, transform: Transform, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class EqualizeHistogramd(MapTransform):
    """Dictionary twin of :class:`EqualizeHistogram`; ``mask_key`` names an optional mask in the data."""

    backend = EqualizeHistogram.backend

    def __init__(self, keys: KeysCollection, num_bins: int = 256, mask_key: Hashable | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.equalizer, self.mask_key = EqualizeHistogram(num_bins), mask_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.equalizer(d[key], mask=mask)
        return d


class EqualizeAdaptiveHistogramd(_Deterministicd):
    """Dictionary twin of :class:`EqualizeAdaptiveHistogram` (each key equalised on its own)."""

    backend = EqualizeAdaptiveHistogram.backend

    def __init__(self, keys: KeysCollection, kernel_size: int | Sequence[int] | None = None, clip_limit: float = 0.01,
                 num_bins: int = 256, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, EqualizeAdaptiveHistogram(kernel_size, clip_limit, num_bins), allow_missing_keys)


class AdjustGammaContrastd(_Deterministicd):
    """Dictionary twin of :class:`AdjustGammaContrast`."""

    backend = AdjustGammaContrast.backend

    def __init__(self, keys: KeysCollection, gamma: float = 1.0, contrast: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, AdjustGammaContrast(gamma, contrast), allow_missing_keys)


class HistogramMatchd(MapTransform):
    """Dictionary twin of :class:`HistogramMatch`: match ``keys`` to ``data[reference_key]`` or to ``reference``.

    Args:
        keys: the images to match.
        reference_key: key of the reference image in the data (e.g. an atlas MR loaded alongside).
        reference: a fixed reference array, used when ``reference_key`` is None.
        allow_missing_keys: skip missing keys, and return the data unchanged when the reference key is missing.
    """

    backend = HistogramMatch.backend

    def __init__(self, keys: KeysCollection, reference_key: Hashable | None = None,
                 reference: NdarrayOrTensor | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if (reference_key is None) == (reference is None):
            raise InputError("HistogramMatchd needs exactly one of reference_key (a key in the data) "
                             "or reference (an array)")
        self.reference_key, self.matcher = reference_key, HistogramMatch(reference)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        reference = None
        if self.reference_key is not None:
            if self.reference_key not in d:
                if self.allow_missing_keys:
                    return d
                raise KeyError(f"reference key {self.reference_key!r} is not in the data")
            reference = d[self.reference_key]
        for key in self.key_iterator(d):
            d[key] = self.matcher(d[key], reference=reference)
        return d


# ----------------------------------------------------------------------------------------------- random


def _uniform_log(rng: np.random.RandomState, bounds: tuple[float, float]) -> float:
    low, high = (float(b) for b in bounds)
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high != low else low


def _check_range(name: str, bounds, positive: bool = False) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a (low, high) pair, got {bounds!r}") from None
    if not low <= high or (positive and not low > 0) or (not positive and low < 0):
        lowest = "0 <" if positive else "0 <="
        raise InputError(f"{name} must be a (low, high) pair with {lowest} low <= high, got {bounds!r}")
    return low, high


class RandGammaContrast(RandomizableTransform):
    """With probability ``prob``, :class:`AdjustGammaContrast` with gamma and contrast drawn log-uniformly.

    Args:
        prob: probability of applying.
        gamma_range: range of gamma (log-uniform, so 0.7 and 1/0.7 are equally likely around 1).
        contrast_range: range of the contrast factor (log-uniform); ``(1, 1)`` for gamma only.
    """

    backend = AdjustGammaContrast.backend

    def __init__(self, prob: float = 0.1, gamma_range: tuple[float, float] = (0.7, 1.5),
                 contrast_range: tuple[float, float] = (0.8, 1.25)) -> None:
        super().__init__(prob)
        self.gamma_range = _check_range("gamma_range", gamma_range, positive=True)
        self.contrast_range = _check_range("contrast_range", contrast_range, positive=True)
        self.gamma, self.contrast = 1.0, 1.0

    def randomize(self, img=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.gamma = _uniform_log(self.R, self.gamma_range)
            self.contrast = _uniform_log(self.R, self.contrast_range)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True, modality: str | None = None) -> NdarrayOrTensor:
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        return AdjustGammaContrast(self.gamma, self.contrast)(img)


class RandMRBiasField(RandomizableTransform):
    """A smooth multiplicative bias field on MR images (MONAI's ``RandBiasField``); other modalities pass unchanged.

    The receive-coil sensitivity and B1 inhomogeneity of MR multiply the image by a slowly
    varying field (the reason N4 bias correction exists); CT, PET and SPECT have no such
    artefact, so non-MR images (by ``modality`` or ``meta["modality"]``) are returned as they
    are. An image of unknown modality is treated as MR (you asked for the transform). The field
    is ``exp`` of a random Legendre polynomial of ``degree`` with coefficients from
    ``coeff_range`` (symmetric by default, so it brightens and darkens). The default +-0.1 gives a
    log-field of about 0.06 rms in 2D and 0.1 in 3D (more terms), i.e. 6..10 % intensity
    non-uniformity with peaks of +-30..50 % at the corners, the range seen on head coils before
    N4 correction. Apply it to non-negative MR (raw or percentile-scaled), not to z-scored images.

    Args:
        prob: probability of applying.
        degree: polynomial degree (smoothness; 3 gives one or two bumps across the field of view).
        coeff_range: range of the polynomial coefficients.
        modality: the modality of the images, if not in their metadata.
    """

    backend = RandBiasField.backend

    def __init__(self, prob: float = 0.1, degree: int = 3, coeff_range: tuple[float, float] = (-0.1, 0.1),
                 modality: str | None = None) -> None:
        super().__init__(prob)
        low, high = (float(c) for c in coeff_range)
        if not low <= high:
            raise InputError(f"coeff_range must be (low, high) with low <= high, got {coeff_range!r}")
        self.modality = F.canonical_modality(modality) if modality is not None else None
        self.bias = RandBiasField(degree=degree, coeff_range=(low, high), prob=1.0)
        self.bias.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.bias.set_random_state(state=self.R)
        return self

    def randomize(self, img=None) -> None:
        super().randomize(None)
        if self._do_transform:
            if img is None:
                raise InputError("RandMRBiasField.randomize needs the image (for its spatial shape)")
            self.bias.randomize(img_size=img.shape[1:])

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True, modality: str | None = None) -> NdarrayOrTensor:
        code = modality_of(img, modality or self.modality)
        if randomize:
            self.randomize(img)
        if not self._do_transform or code not in (None, "MR"):
            return img
        image = _plain(img)
        out = self.bias(image, randomize=False)
        return _output(torch.as_tensor(out, dtype=image.dtype), img)


class RandModalityNoise(RandomizableTransform):
    """Noise by modality, at a random severity: MR Rician, CT Gaussian in HU, PET/SPECT Poisson-like.

    One draw is a *severity* ``s`` uniform in 0..1, mapped onto each modality's range:

    ========= ====================================================================================
    MR        Rician (``F.add_rician_noise``), std = ``mr_std`` range at ``s`` x the image's 99.5th
              percentile: MR magnitude noise is Rician, not Gaussian (positive noise floor)
    CT        Gaussian in HU (``F.add_gaussian_noise``), std = ``ct_std`` range at ``s`` (HU; default
              up to 10 HU, low-dose head CT); on a windowed image the std is converted with the
              recorded window (``std * scale``), and is in the CT's stored units when those are not HU
    PT, NM    Poisson (``F.add_poisson_noise``) with ``counts`` expected counts at the 99.5th
              percentile, log-interpolated from ``counts_range[0]`` (``s`` = 0, mild) to
              ``counts_range[1]`` (``s`` = 1, noisy): count statistics are signal dependent
    ========= ====================================================================================

    On an image whose normalisation was clipped to 0..1 the noisy result is clipped too, as if
    the noise had been there before normalising. CT noise cannot be added in HU once intensities
    were remapped non-linearly (equalisation, gamma): add noise first.

    Args:
        prob: probability of applying.
        mr_std: range of the MR noise std, as a fraction of the 99.5th percentile.
        ct_std: range of the CT noise std in HU.
        counts_range: expected counts at the 99.5th percentile for severity 0 and 1.
        modality: the modality of the images, if not in their metadata.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 0.1, mr_std: tuple[float, float] = (0.0, 0.05),
                 ct_std: tuple[float, float] = (0.0, 10.0), counts_range: tuple[float, float] = (2000.0, 100.0),
                 modality: str | None = None) -> None:
        super().__init__(prob)
        self.mr_std = _check_range("mr_std", mr_std)
        self.ct_std = _check_range("ct_std", ct_std)
        counts = tuple(float(c) for c in counts_range)
        if len(counts) != 2 or min(counts) <= 0:
            raise InputError(f"counts_range must be two positive counts (mild, noisy), got {counts_range!r}")
        self.counts_range = counts
        self.modality = F.canonical_modality(modality) if modality is not None else None
        self.severity = 0.0

    def randomize(self, img=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.severity = float(self.R.uniform(0.0, 1.0))

    def noise_level(self, modality: str) -> float:
        """MR: std fraction; CT: std in HU; PT/NM: expected counts at the reference, for the current severity."""
        s = self.severity
        if modality == "MR":
            return self.mr_std[0] + s * (self.mr_std[1] - self.mr_std[0])
        if modality == "CT":
            return self.ct_std[0] + s * (self.ct_std[1] - self.ct_std[0])
        mild, noisy = self.counts_range
        return float(np.exp(np.log(mild) + s * (np.log(noisy) - np.log(mild))))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True, modality: str | None = None) -> NdarrayOrTensor:
        code = modality_of(img, modality or self.modality)
        if code is None:
            raise InputError("noise needs the image's modality; pass modality= (CT, MR, PT or NM) "
                             "or give a MetaTensor with meta['modality']")
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        image = _plain(img)
        record = _meta(img).get("intensity_normalisation") or {}
        level = self.noise_level(code)
        if code == "MR":
            noisy = F.add_rician_noise(image, level * F.robust_maximum(image - image.amin()), self.R)
        elif code == "CT":
            noisy = F.add_gaussian_noise(image, self._ct_std_in_image_units(level, record, image.shape[0]), self.R)
        else:
            noisy = F.add_poisson_noise(image, level, self.R)
        if record.get("clipped") and not record.get("nonlinear"):
            noisy = noisy.clamp(0.0, 1.0)
        return _output(noisy, img)

    @staticmethod
    def _ct_std_in_image_units(std_hu: float, record: dict, channels: int):
        if record.get("nonlinear"):
            raise InputError("CT noise in HU cannot be added after a non-linear intensity remapping "
                             f"({record.get('after') or record.get('method')}); add noise before equalising or gamma")
        scales = record.get("scale")
        if scales is None:
            return std_hu
        if len(scales) != channels:
            raise InputError(f"the normalisation record has {len(scales)} channel scales for {channels} channels")
        return [std_hu * abs(float(s)) for s in scales]


class _RandIntensityd(RandomizableTransform, MapTransform):
    """Apply a random array transform to each key, with one draw for all keys (``joint``) or one per key."""

    def __init__(self, keys: KeysCollection, transform: RandomizableTransform, prob: float, joint: bool,
                 modalities=None, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform, self.joint = transform, bool(joint)
        self.modalities = {k: (F.canonical_modality(m) if m is not None else None)
                           for k, m in _per_key(self.keys, modalities, "modalities").items()}
        self.transform.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(state=self.R)
        return self

    def _applies_to(self, image, key) -> bool:
        return True

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = [key for key in self.key_iterator(d) if self._applies_to(d[key], key)]
        if self.joint:
            self.randomize(None)
            if not self._do_transform or not keys:
                return d
            self.transform.randomize(d[keys[0]])
            for key in keys:
                d[key] = self.transform(d[key], randomize=False, modality=self.modalities[key])
            return d
        for key in keys:
            self.randomize(None)
            if self._do_transform:
                d[key] = self.transform(d[key], randomize=True, modality=self.modalities[key])
        return d


class RandGammaContrastd(_RandIntensityd):
    """Dictionary twin of :class:`RandGammaContrast`; ``joint=True`` gives every key the same gamma and contrast."""

    backend = RandGammaContrast.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, gamma_range: tuple[float, float] = (0.7, 1.5),
                 contrast_range: tuple[float, float] = (0.8, 1.25), joint: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandGammaContrast(1.0, gamma_range, contrast_range), prob, joint, None, allow_missing_keys)


class RandMRBiasFieldd(_RandIntensityd):
    """Dictionary twin of :class:`RandMRBiasField`: only MR keys are biased.

    ``joint=True`` puts the same field on every MR key (several MR contrasts of one session share
    the coil); non-MR keys (by ``modalities`` or their metadata) are left alone.
    """

    backend = RandMRBiasField.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, degree: int = 3,
                 coeff_range: tuple[float, float] = (-0.1, 0.1), joint: bool = True, modalities=None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandMRBiasField(1.0, degree, coeff_range), prob, joint, modalities, allow_missing_keys)

    def _applies_to(self, image, key) -> bool:
        return modality_of(image, self.modalities[key]) in (None, "MR")


class RandModalityNoised(_RandIntensityd):
    """Dictionary twin of :class:`RandModalityNoise`, each key with its modality's noise model.

    ``joint=True`` shares the apply decision and the severity between keys (a "noisy study");
    the noise *realisations* are always drawn per key, because the scanners' noise is
    independent. ``joint=False`` draws both per key.
    """

    backend = RandModalityNoise.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, mr_std: tuple[float, float] = (0.0, 0.05),
                 ct_std: tuple[float, float] = (0.0, 10.0), counts_range: tuple[float, float] = (2000.0, 100.0),
                 joint: bool = False, modalities=None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandModalityNoise(1.0, mr_std, ct_std, counts_range), prob, joint, modalities,
                         allow_missing_keys)


NormalizeModalityD = NormalizeModalityDict = NormalizeModalityd
EqualizeHistogramD = EqualizeHistogramDict = EqualizeHistogramd
EqualizeAdaptiveHistogramD = EqualizeAdaptiveHistogramDict = EqualizeAdaptiveHistogramd
AdjustGammaContrastD = AdjustGammaContrastDict = AdjustGammaContrastd
HistogramMatchD = HistogramMatchDict = HistogramMatchd
RandGammaContrastD = RandGammaContrastDict = RandGammaContrastd
RandMRBiasFieldD = RandMRBiasFieldDict = RandMRBiasFieldd
RandModalityNoiseD = RandModalityNoiseDict = RandModalityNoised
