"""Paired, information-weighted patch sampling: the same region from every modality.

:class:`RandInformativePatchd` is MONAI's ``RandWeightedCropd`` with the weight map computed for
you: it builds an information map from the modality keys (local entropy, gradient magnitude or
foreground; :mod:`monai_fusion.transforms.functional.patches`), averages it over the patch, makes
it class-balanced when a label map is given, and hands it to ``RandWeightedCropd``, which draws
``num_samples`` centres ONCE and crops every key at them. That is the pairing guarantee: all
keys of one sample come from the same voxels, and a MetaTensor's affine is moved to the patch
(MONAI's crop bookkeeping). ``inverse`` (and so ``Invertd``) pads a patch back into its source
grid, zeros outside, e.g. to paste a prediction; MONAI's own weighted crop is not invertible.

With ``slice_axis`` set, patches are one voxel thick along that axis of a 3D volume and come out
as 2D slices ``(C, H, W)`` (the other two axes, in order). Their 4x4 affine keeps the full 3D
geometry, with the dropped axis as the third column (see
:func:`~monai_fusion.transforms.functional.patches.squeeze_slice`), so ``affine @ (i, j, 0, 1)``
is the world position of pixel ``(i, j)``; the slice is recorded in ``meta["slice_axis"]`` and
``meta["slice_index"]``. A slice is a projection, not an invertible crop: its crop trace is
dropped, and it goes back into a volume by resampling (e.g. ``ResampleToMatch``) with its affine.

Why weights: a head scan is more than half air, so uniform patches waste most of a batch on
background. Averaging the information over the patch (``patch_average=True``) weights each
centre by what the whole patch contains, not by its centre voxel alone; patches of pure
background get weight 0 and are never drawn (an image without any information falls back to
uniform sampling, MONAI's rule).

Why class balance through weights rather than ``RandCropByLabelClassesd``: the weights give the
same class probabilities (``ratios``) and, within a class, still prefer informative patches;
with ``weighting="uniform"`` the two sample alike.

Example:
    >>> import torch
    >>> mr = torch.rand(1, 64, 64, 40); pet = 2 * mr + 1
    >>> sampler = RandInformativePatchd(("mr", "pet"), spatial_size=(32, 32), num_samples=4, slice_axis=2)
    >>> patches = sampler({"mr": mr, "pet": pet})
    >>> len(patches), tuple(patches[0]["mr"].shape)
    (4, (1, 32, 32))
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import (
    BorderPad, InvertibleTransform, MapTransform, RandWeightedCrop, RandWeightedCropd, Transform,
)
from monai.utils import TraceKeys, TransformBackends, ensure_tuple, fall_back_tuple

from monai_fusion.errors import InputError
from monai_fusion.rules.inputs import numpy_to_tensor
from monai_fusion.transforms.fusion import like_source
from monai_fusion.transforms.functional import patches as P

__all__ = [
    "InformationMap", "InformationMapd", "InformationMapD", "InformationMapDict",
    "RandInformativePatch", "RandInformativePatchd", "RandInformativePatchD", "RandInformativePatchDict",
]

_WEIGHT_KEY = "__monai_fusion_patch_weights__"


def _plain(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        tensor = numpy_to_tensor(image)
    elif isinstance(image, torch.Tensor):
        tensor = image.as_tensor() if isinstance(image, MetaTensor) else image
    else:
        raise InputError(f"expected a numpy array or a torch tensor, got {type(image).__name__}")
    if tensor.ndim not in (3, 4):
        raise InputError("expected a channel-first 2D or 3D image (C, H, W) / (C, X, Y, Z), "
                         f"got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise InputError(f"the image is empty (shape {tuple(tensor.shape)}); give an image with voxels")
    return tensor


def _labels(label) -> torch.Tensor:
    """Argmax label map of the spatial shape from ``(1, *spatial)`` labels or one-hot ``(K, *spatial)``."""
    tensor = _plain(label)
    return tensor[0].round().long() if tensor.shape[0] == 1 else tensor.argmax(0)


class _WeightOptions:
    """The weighting options shared by the array and dictionary transforms."""

    def __init__(self, weighting: str, patch_average: bool, class_ratios, options: dict) -> None:
        if weighting not in P.INFORMATION_METHODS:
            raise InputError(f"unknown information weighting {weighting!r}; use one of {list(P.INFORMATION_METHODS)}")
        allowed = {"entropy": {"window", "bins"}, "gradient": {"sigma"}}.get(weighting, set())
        unknown = set(options) - allowed
        if unknown:
            raise InputError(f"weighting {weighting!r} does not take {sorted(unknown)}; "
                             f"it takes {sorted(allowed) or 'no options'}")
        self.weighting, self.patch_average, self.class_ratios, self.options = weighting, patch_average, class_ratios, options

    def weights(self, images: Sequence[torch.Tensor], labels: torch.Tensor | None, patch_size: Sequence[int],
                information: torch.Tensor | None = None) -> torch.Tensor:
        """Sampling weights ``(1, *spatial)``; ``information`` is a precomputed map that replaces the images' one."""
        if information is None:
            weights = P.information_map(images, self.weighting, **self.options)
            average = self.patch_average and self.weighting != "uniform"
        else:
            weights, average = information, self.patch_average
        if average:
            weights = P.patch_mean(weights, patch_size)
        if labels is not None:
            if tuple(labels.shape) != tuple(weights.shape):
                raise InputError(f"the label map {tuple(labels.shape)} is not on the images' grid {tuple(weights.shape)}")
            weights = P.class_balanced_weights(labels, weights, patch_size, self.class_ratios)
        return weights[None]


def _crop_size(spatial_size, slice_axis: int | None, shape: Sequence[int], allow_smaller: bool) -> tuple[int, ...]:
    """The crop size in the image's dimensions (a 2D ``spatial_size`` gets a 1 inserted at ``slice_axis``)."""
    size = list(ensure_tuple(spatial_size))
    if slice_axis is not None:
        if len(shape) != 3:
            raise InputError(f"slice_axis needs 3D volumes (C, X, Y, Z); the images have spatial shape {tuple(shape)}")
        if len(size) == 2:
            size.insert(slice_axis, 1)
        elif len(size) != 3 or size[slice_axis] != 1:
            raise InputError(f"with slice_axis={slice_axis}, spatial_size is the 2D patch size (H, W), got {spatial_size}")
    if len(size) == 1:
        size = size * len(shape)
    if len(size) != len(shape):
        raise InputError(f"spatial_size {tuple(size)} does not match the images' {len(shape)}D spatial shape {tuple(shape)}")
    size = fall_back_tuple(size, shape)
    if not allow_smaller and any(s > n for s, n in zip(size, shape)):
        raise InputError(f"the patch {tuple(size)} is larger than the image {tuple(shape)}; pad the images first "
                         "(e.g. SpatialPadd) or pass allow_smaller=True")
    return tuple(int(s) for s in size)


def _as_slice(patch: NdarrayOrTensor, slice_axis: int) -> NdarrayOrTensor:
    """A one-voxel-thick 3D patch as a 2D slice with the full-geometry 4x4 affine (module docstring)."""
    affine = torch.as_tensor(patch.affine, dtype=torch.float64) if isinstance(patch, MetaTensor) else None
    squeezed, new_affine = P.squeeze_slice(_plain(patch), affine, slice_axis)
    out = like_source(squeezed, patch)
    if isinstance(out, MetaTensor):
        out.affine = new_affine
        centre = patch.meta.get("crop_center")
        out.meta["slice_axis"] = int(slice_axis)
        if centre is not None:
            out.meta["slice_index"] = int(np.asarray(centre)[slice_axis])
        out.applied_operations = list(patch.applied_operations[:-1])
    return out


def _uncrop(patch: MetaTensor, tracer, slice_axis: int | None) -> MetaTensor:
    """Pad a 3D/nD patch back to its source image's size (the inverse of its weighted crop)."""
    if slice_axis is not None:
        raise InputError("2D slices of volumes are not invertible crops; put a slice back by resampling "
                         "with its affine (e.g. ResampleToMatch)")
    transform = tracer.pop_transform(patch, check=False)
    if transform.get(TraceKeys.CLASS_NAME) != "RandWeightedCrop":
        raise InputError(f"the latest operation on this patch is {transform.get(TraceKeys.CLASS_NAME)}, "
                         "not the weighted crop; invert the later transforms first")
    cropped = transform[TraceKeys.EXTRA_INFO][TraceKeys.EXTRA_INFO]["cropped"]
    padder = BorderPad(cropped)
    with padder.trace_transform(False):
        return padder(patch)


class InformationMap(Transform):
    """The per-voxel information map of an image, ``(1, *spatial)``, in the image's type and geometry.

    Args:
        method: ``"entropy"``, ``"gradient"``, ``"foreground"`` or ``"uniform"``.
        options: ``window``/``bins`` for entropy, ``sigma`` for gradient.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, method: str = "entropy", **options) -> None:
        self.config = _WeightOptions(method, False, None, options)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return like_source(P.information_map([_plain(img)], self.config.weighting, **self.config.options)[None], img)


class InformationMapd(MapTransform):
    """The joint information map of ``keys`` (each modality scaled to a maximum of 1, then averaged) into ``output_key``.

    Use it to feed MONAI's ``RandWeightedCropd(w_key=output_key)`` yourself, or to look at the
    map; :class:`RandInformativePatchd` does both steps in one.
    """

    backend = InformationMap.backend

    def __init__(self, keys: KeysCollection, output_key: Hashable = "information", method: str = "entropy",
                 allow_missing_keys: bool = False, **options) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.config = _WeightOptions(method, False, None, options)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if keys:
            weights = P.information_map([_plain(d[k]) for k in keys], self.config.weighting, **self.config.options)
            d[self.output_key] = like_source(weights[None], d[keys[0]])
        return d


class RandInformativePatch(RandWeightedCrop, InvertibleTransform):
    """``num_samples`` patches of one image, drawn by information (MONAI's ``RandWeightedCrop`` with our weights).

    For several modalities, stack them as channels, or use :class:`RandInformativePatchd`.
    ``__call__(img, label=None)`` returns a list of patches; ``label`` (``(1, *spatial)`` or
    one-hot) makes the draw class-balanced. Arguments as in :class:`RandInformativePatchd`.
    """

    def __init__(self, spatial_size: Sequence[int] | int, num_samples: int = 1, weighting: str = "entropy",
                 class_ratios: Sequence[float] | Mapping[int, float] | None = None, slice_axis: int | None = None,
                 patch_average: bool = True, allow_smaller: bool = False, lazy: bool = False, **options) -> None:
        if slice_axis is not None and slice_axis not in (0, 1, 2):
            raise InputError(f"slice_axis must be 0, 1 or 2 (a spatial axis of a 3D volume), got {slice_axis!r}")
        if lazy and slice_axis is not None:
            raise InputError("slices (slice_axis) are cut from current data and cannot be lazy; use lazy=False")
        super().__init__(spatial_size, num_samples, lazy=lazy)
        self.requested_size, self.slice_axis, self.allow_smaller = spatial_size, slice_axis, allow_smaller
        self.config = _WeightOptions(weighting, patch_average, class_ratios, options)

    @property
    def requires_current_data(self) -> bool:
        return True

    def __call__(self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None, randomize: bool = True,
                 lazy: bool | None = None) -> list[NdarrayOrTensor]:
        image = _plain(img)
        self.spatial_size = _crop_size(self.requested_size, self.slice_axis, image.shape[1:], self.allow_smaller)
        weight_map = None
        if randomize:
            weight_map = self.config.weights([image], None if label is None else _labels(label), self.spatial_size)
        patches = super().__call__(img, weight_map=weight_map, randomize=randomize, lazy=lazy)
        return patches if self.slice_axis is None else [_as_slice(p, self.slice_axis) for p in patches]

    def inverse(self, data: MetaTensor) -> MetaTensor:
        """Pad one patch back to the source image's size (zeros outside the patch)."""
        return _uncrop(data, self, self.slice_axis)


class RandInformativePatchd(RandWeightedCropd, InvertibleTransform):
    """Paired patches: ``num_samples`` regions drawn by information, each cut from EVERY key.

    Args:
        keys: the keys to crop (modalities, and the label map if you want it cropped too).
        spatial_size: the patch size; for slices (``slice_axis``) the 2D size ``(H, W)``.
            Non-positive entries take the image's size.
        num_samples: patches per call (a list of ``num_samples`` dictionaries, like MONAI's).
        weighting: ``"entropy"`` (default), ``"gradient"``, ``"foreground"`` or ``"uniform"``.
        weight_keys: the keys whose information counts (default: ``keys`` except ``label_key``).
        label_key: a label map (``(1, *spatial)`` or one-hot); makes the draw class-balanced.
        class_ratios: probability ratios per label class (sequence by label or mapping); default equal.
        slice_axis: None for patches of the images' dimension; 0, 1 or 2 for 2D slices of 3D volumes.
        patch_average: weight a centre by the mean information of its whole patch (default)
            instead of its centre voxel.
        allow_smaller: allow images smaller than the patch (MONAI then returns smaller
            patches); by default that is an ``InputError``.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
        lazy: MONAI lazy resampling (3D/nD patches only).
        information_key: key of a precomputed information map ``(1, *spatial)`` (from
            :class:`InformationMapd`); when present in the data it replaces ``weighting``, so a
            ``CacheDataset`` can cache the map (the entropy of a 91 x 109 x 91 volume takes about
            0.5 s on one CPU core) while the draw stays random.
        options: ``window`` and ``bins`` (entropy) or ``sigma`` (gradient).

    The weight map is computed from the current data (``requires_current_data``), so in a lazy
    ``Compose`` pending operations are applied before it.
    """

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int] | int, num_samples: int = 1,
                 weighting: str = "entropy", weight_keys: KeysCollection | None = None, label_key: Hashable | None = None,
                 class_ratios: Sequence[float] | Mapping[int, float] | None = None, slice_axis: int | None = None,
                 patch_average: bool = True, allow_smaller: bool = False, allow_missing_keys: bool = False,
                 lazy: bool = False, information_key: Hashable | None = None, **options) -> None:
        if slice_axis is not None and slice_axis not in (0, 1, 2):
            raise InputError(f"slice_axis must be 0, 1 or 2 (a spatial axis of a 3D volume), got {slice_axis!r}")
        if lazy and slice_axis is not None:
            raise InputError("slices (slice_axis) are cut from current data and cannot be lazy; use lazy=False")
        super().__init__(keys, _WEIGHT_KEY, spatial_size, num_samples, allow_missing_keys, lazy)
        self.requested_size, self.slice_axis, self.allow_smaller = spatial_size, slice_axis, allow_smaller
        self.label_key, self.information_key = label_key, information_key
        self.weight_keys = ensure_tuple(weight_keys) if weight_keys is not None else None
        self.config = _WeightOptions(weighting, patch_average, class_ratios, options)

    @property
    def requires_current_data(self) -> bool:
        return True

    def _grid_shape(self, d: dict, keys: list) -> tuple[int, ...]:
        shapes = {key: tuple(_plain(d[key]).shape[1:]) for key in keys}
        if len(set(shapes.values())) > 1:
            raise InputError(f"paired patches need all keys on one grid, got spatial shapes "
                             f"{ {str(k): s for k, s in shapes.items()} }; resample them onto one grid first")
        return next(iter(shapes.values()))

    def __call__(self, data: Mapping[Hashable, torch.Tensor],
                 lazy: bool | None = None) -> list[dict[Hashable, torch.Tensor]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return [dict(d) for _ in range(self.cropper.num_samples)]
        shape = self._grid_shape(d, keys)
        crop_size = _crop_size(self.requested_size, self.slice_axis, shape, self.allow_smaller)
        self.cropper.spatial_size = crop_size
        sources = self.weight_keys if self.weight_keys is not None else [k for k in keys if k != self.label_key]
        images = [_plain(d[k]) for k in sources if k in d]
        labels = _labels(d[self.label_key]) if self.label_key is not None else None
        information = None
        if self.information_key is not None and self.information_key in d:
            information = _plain(d[self.information_key])[0].float()
            if tuple(information.shape) != shape:
                raise InputError(f"the information map {tuple(information.shape)} is not on the images' grid {shape}")
        if images or information is not None:
            weights = self.config.weights(images, labels, crop_size, information)
        else:
            uniform = _WeightOptions("uniform", False, self.config.class_ratios, {})
            weights = uniform.weights([_plain(d[keys[0]])], labels, crop_size)
        d[_WEIGHT_KEY] = weights
        samples = super().__call__(d, lazy=False if self.slice_axis is not None else lazy)
        for sample in samples:
            sample.pop(_WEIGHT_KEY, None)
            if self.slice_axis is not None:
                for key in keys:
                    sample[key] = _as_slice(sample[key], self.slice_axis)
        return samples

    def inverse(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        """Pad one sample's patches back to the source size (zeros outside), for ``Invertd``."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _uncrop(d[key], self.cropper, self.slice_axis)
        return d


InformationMapD = InformationMapDict = InformationMapd
RandInformativePatchD = RandInformativePatchDict = RandInformativePatchd
