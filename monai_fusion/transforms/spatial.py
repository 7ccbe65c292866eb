"""Paired spatial augmentation: MONAI's random spatial transforms, configured for fusion pairs.

MONAI's dictionary transforms already draw ONE random transform per call and apply it to every
key, which is exactly the pairing a fusion pair needs (the MRI and the CT/PET must move
together). So these classes are thin subclasses that only set our defaults; they add no
algorithm:

* ``label_keys``: keys that are label maps get ``label_mode`` (nearest) and every other key
  ``image_mode`` (bilinear), so labels stay integer while images interpolate smoothly;
* ``padding_mode="border"``: the border of a medical image is background in whatever unit it is
  in (-1000 HU for CT, 0 for MR/PET), so replicating it pads with background; zero padding would
  paint water (0 HU) into a CT, and reflection mirrors anatomy into the corners;
* moderate ranges: flips only across the left-right axis (axis 0 in RAS: brains are nearly
  symmetric, top-bottom flips are not anatomy), 10 degree rotations, 10 % scaling.

Everything MONAI offers keeps working: lazy resampling (``lazy=True`` or a lazy ``Compose``; the
flip/rotate/affine are ``LazyTransform``s), inversion with ``Invertd`` (flip, rotate-90, rotate
and affine push their trace; MetaTensor affines are updated), ``set_random_state`` and
``allow_missing_keys``. Elastic deformation (:class:`RandPairedElasticd`) is MONAI's
``Rand2DElasticd``/``Rand3DElasticd``, which are neither lazy nor invertible.

Example:
    >>> import torch
    >>> from monai.transforms import Compose
    >>> augment = Compose([RandPairedFlipd(("mri", "ct", "seg"), prob=1.0),
    ...                    RandPairedRotated(("mri", "ct", "seg"), label_keys="seg", prob=1.0)])
    >>> out = augment({"mri": torch.rand(1, 32, 32), "ct": torch.rand(1, 32, 32), "seg": torch.zeros(1, 32, 32)})
    >>> sorted(out)
    ['ct', 'mri', 'seg']
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    MapTransform,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAffined,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandRotated,
)
from monai.utils import ensure_tuple

from monai_fusion.errors import InputError

__all__ = [
    "paired_modes",
    "RandPairedFlipd", "RandPairedFlipD", "RandPairedFlipDict",
    "RandPairedRotate90d", "RandPairedRotate90D", "RandPairedRotate90Dict",
    "RandPairedRotated", "RandPairedRotateD", "RandPairedRotateDict",
    "RandPairedAffined", "RandPairedAffineD", "RandPairedAffineDict",
    "RandPairedElasticd", "RandPairedElasticD", "RandPairedElasticDict",
]

TEN_DEGREES = float(np.deg2rad(10.0))


def paired_modes(keys: KeysCollection, label_keys: KeysCollection = (), image_mode: str = "bilinear",
                 label_mode: str = "nearest") -> tuple[str, ...]:
    """One interpolation mode per key: ``label_mode`` for ``label_keys``, ``image_mode`` for the rest.

    Example:
        >>> paired_modes(("mri", "ct", "seg"), "seg")
        ('bilinear', 'bilinear', 'nearest')
    """
    keys, label_keys = ensure_tuple(keys), ensure_tuple(label_keys)
    unknown = [k for k in label_keys if k not in keys]
    if unknown:
        raise InputError(f"label_keys {unknown} are not among the keys {list(keys)}; list labels in keys too")
    return tuple(label_mode if key in label_keys else image_mode for key in keys)


class RandPairedFlipd(RandFlipd):
    """MONAI's ``RandFlipd`` (one draw for all keys), flipping the left-right axis (0) by default.

    Args:
        keys: every key of the pair (images and labels: a flip needs no interpolation).
        prob: probability of flipping.
        spatial_axis: spatial axis (or axes) to flip; 0 is left-right for RAS volumes and for
            2D images read by ``load_image`` (index i runs along a row).
        allow_missing_keys, lazy: as in MONAI.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.5, spatial_axis: Sequence[int] | int | None = 0,
                 allow_missing_keys: bool = False, lazy: bool = False) -> None:
        super().__init__(keys, prob=prob, spatial_axis=spatial_axis, allow_missing_keys=allow_missing_keys, lazy=lazy)


class RandPairedRotate90d(RandRotate90d):
    """MONAI's ``RandRotate90d`` (one draw for all keys; exact, so labels need no special mode).

    Args:
        keys: every key of the pair.
        prob: probability of rotating.
        max_k: the number of quarter turns is drawn from 1..max_k.
        spatial_axes: the plane of rotation (axial plane (0, 1) for RAS volumes).
        allow_missing_keys, lazy: as in MONAI.

    Quarter turns put anatomy in orientations a scanner never produces; use them for 2D
    slice-based networks that should be orientation-agnostic, not for 3D anatomy models.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.5, max_k: int = 3,
                 spatial_axes: tuple[int, int] = (0, 1), allow_missing_keys: bool = False, lazy: bool = False) -> None:
        super().__init__(keys, prob=prob, max_k=max_k, spatial_axes=spatial_axes,
                         allow_missing_keys=allow_missing_keys, lazy=lazy)


class RandPairedRotated(RandRotated):
    """MONAI's ``RandRotated`` with per-key modes (images bilinear, labels nearest) and border padding.

    Args:
        keys: every key of the pair.
        label_keys: the keys among ``keys`` that are label maps.
        range_x, range_y, range_z: rotation ranges in radians (a number ``r`` means ``[-r, r]``);
            2D images use ``range_x`` only. Default 10 degrees about each axis.
        prob: probability of rotating.
        keep_size: keep the spatial size (corners are padded).
        image_mode, label_mode: interpolation of images and of labels.
        padding_mode: ``"border"`` by default (module docstring).
        allow_missing_keys, lazy: as in MONAI.
    """

    def __init__(self, keys: KeysCollection, label_keys: KeysCollection = (), range_x=TEN_DEGREES, range_y=TEN_DEGREES,
                 range_z=TEN_DEGREES, prob: float = 0.5, keep_size: bool = True, image_mode: str = "bilinear",
                 label_mode: str = "nearest", padding_mode: str = "border", allow_missing_keys: bool = False,
                 lazy: bool = False) -> None:
        super().__init__(keys, range_x=range_x, range_y=range_y, range_z=range_z, prob=prob, keep_size=keep_size,
                         mode=paired_modes(keys, label_keys, image_mode, label_mode), padding_mode=padding_mode,
                         allow_missing_keys=allow_missing_keys, lazy=lazy)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the apply decision and the angles as ONE stream (MONAI seeds two identical streams)."""
        super().set_random_state(seed, state)
        self.rand_rotate.set_random_state(state=self.R)
        return self


class RandPairedAffined(RandAffined):
    """MONAI's ``RandAffined`` with per-key modes, border padding and moderate default ranges.

    Args:
        keys: every key of the pair.
        label_keys: the keys among ``keys`` that are label maps.
        prob: probability of applying.
        rotate_range: radians per spatial axis (default 10 degrees each; 2D uses the first).
        scale_range: relative scaling per axis (default +-10 %).
        translate_range: voxels per axis (default +-5).
        shear_range: shear per axis pair (default none).
        spatial_size: output size (default: the input's).
        image_mode, label_mode, padding_mode: as in :class:`RandPairedRotated`.
        allow_missing_keys, lazy: as in MONAI.
    """

    def __init__(self, keys: KeysCollection, label_keys: KeysCollection = (), prob: float = 0.5,
                 rotate_range=(TEN_DEGREES, TEN_DEGREES, TEN_DEGREES), scale_range=(0.1, 0.1, 0.1),
                 translate_range=(5.0, 5.0, 5.0), shear_range=None, spatial_size=None, image_mode: str = "bilinear",
                 label_mode: str = "nearest", padding_mode: str = "border", allow_missing_keys: bool = False,
                 lazy: bool = False) -> None:
        super().__init__(keys, spatial_size=spatial_size, prob=prob, rotate_range=rotate_range, shear_range=shear_range,
                         translate_range=translate_range, scale_range=scale_range,
                         mode=paired_modes(keys, label_keys, image_mode, label_mode), padding_mode=padding_mode,
                         allow_missing_keys=allow_missing_keys, lazy=lazy)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the apply decision and the affine parameters as ONE stream (MONAI seeds two identical streams)."""
        super().set_random_state(seed, state)
        self.rand_affine.set_random_state(state=self.R)
        return self


class RandPairedElasticd(RandomizableTransform, MapTransform):
    """Elastic deformation of a pair: MONAI's ``Rand2DElasticd`` or ``Rand3DElasticd``, chosen by the data.

    Both draw one deformation per call for all keys. The dimension is taken from the first
    present key (``(C, H, W)``: 2D; ``(C, X, Y, Z)``: 3D), so one configured transform serves
    slices and volumes. Not lazy and not invertible (MONAI's elastic transforms are neither):
    put it after invertible steps you want to undo, or leave it out of inference chains.

    Defaults, measured on an identity grid: 2D (spacing 32 px, magnitude 1..2) displaces by about
    2.4 px rms (6 px at most) on a 256 x 256 slice; 3D (sigma 5..7, magnitude 100..200) by about
    1.3 voxels rms (3.5 at most) on the 91 x 109 x 91 templates, i.e. 2..3 mm of smooth anatomical
    variation; both keep the pair's relation exact because every key is resampled on one grid.

    Args:
        keys: every key of the pair.
        label_keys: the keys among ``keys`` that are label maps (nearest interpolation).
        prob: probability of deforming.
        spacing: 2D control-point spacing in pixels (coarser = smoother).
        magnitude_range_2d: 2D control-point displacement range in pixels.
        sigma_range: 3D smoothing (voxels) of the random displacement field.
        magnitude_range_3d: 3D displacement magnitude range (scales the smoothed field).
        image_mode, label_mode, padding_mode: as in :class:`RandPairedRotated`.
        allow_missing_keys: as in MONAI.
    """

    def __init__(self, keys: KeysCollection, label_keys: KeysCollection = (), prob: float = 0.5,
                 spacing: tuple[float, float] | float = (32.0, 32.0), magnitude_range_2d: tuple[float, float] = (1.0, 2.0),
                 sigma_range: tuple[float, float] = (5.0, 7.0), magnitude_range_3d: tuple[float, float] = (100.0, 200.0),
                 image_mode: str = "bilinear", label_mode: str = "nearest", padding_mode: str = "border",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        modes = paired_modes(keys, label_keys, image_mode, label_mode)
        self.elastic_2d = Rand2DElasticd(keys, spacing=spacing, magnitude_range=magnitude_range_2d, prob=1.0,
                                         mode=modes, padding_mode=padding_mode, allow_missing_keys=allow_missing_keys)
        self.elastic_3d = Rand3DElasticd(keys, sigma_range=sigma_range, magnitude_range=magnitude_range_3d, prob=1.0,
                                         mode=modes, padding_mode=padding_mode, allow_missing_keys=allow_missing_keys)
        self.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for inner in (self.elastic_2d, self.elastic_3d):
            inner.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        self.randomize(None)
        if not keys or not self._do_transform:
            return d
        spatial_dims = len(d[keys[0]].shape) - 1
        if spatial_dims not in (2, 3):
            raise InputError("elastic deformation needs (C, H, W) or (C, X, Y, Z) images, "
                             f"got shape {tuple(d[keys[0]].shape)}")
        return (self.elastic_2d if spatial_dims == 2 else self.elastic_3d)(d)


RandPairedFlipD = RandPairedFlipDict = RandPairedFlipd
RandPairedRotate90D = RandPairedRotate90Dict = RandPairedRotate90d
RandPairedRotateD = RandPairedRotateDict = RandPairedRotated
RandPairedAffineD = RandPairedAffineDict = RandPairedAffined
RandPairedElasticD = RandPairedElasticDict = RandPairedElasticd
