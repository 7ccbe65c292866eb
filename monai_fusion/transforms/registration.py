"""Registration as MONAI transforms: ``RegisterToReference(d)`` and ``ApplyTransformFile(d)``.

The transforms are thin: :func:`monai_fusion.registration.register` finds the transform (fixed
world -> moving world, RAS mm) and :func:`monai_fusion.registration.resample` puts each image on
the reference grid. Outputs are ``MetaTensor`` s whose geometry (``affine``, ``original_affine``,
``spatial_shape``, ``spacing``) is the reference's while everything else (file name, modality,
units, SUV factor...) stays the moving image's. The registration is recorded as data in
``meta["registration"]`` (model, backend, ``affine_ras`` 4x4 list, metric values, convergence).

Both are invertible: each output carries a trace with the transform (as tensors) and the moving
image's own grid, so ``monai.transforms.Invertd`` resamples a result (a prediction, a fused
image) back onto the moving image's original grid.

Example:
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    >>> blob = lambda cy: MetaTensor(torch.exp(-((yy - cy) ** 2 + (xx - 20) ** 2) / 50)[None])
    >>> data = {"mr": blob(20), "pet": blob(23), "mask": (blob(23) > 0.5).float()}
    >>> register = RegisterToReferenced(keys=("pet", "mask"), fixed_key="mr", moving_key="pet",
    ...                                 mode=("bilinear", "nearest"), model="translation", levels=(2, 1))
    >>> out = register(data)
    >>> sorted(torch.unique(out["mask"]).tolist())
    [0.0, 1.0]
"""

from __future__ import annotations

import os
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type, ensure_tuple_rep

from monai_fusion.errors import InputError
from monai_fusion.registration import read_transform, register, resample
from monai_fusion.registration.engine import BACKENDS
from monai_fusion.registration.resample import PADDING_MODES, RESAMPLE_MODES, reference_grid
from monai_fusion.registration.result import RegistrationResult
from monai_fusion.registration.spatial import SpatialTransform, as_transform, transform_from_record, transform_to_record

__all__ = [
    "ResampleWithTransform",
    "RegisterToReference",
    "RegisterToReferenced",
    "RegisterToReferenceD",
    "RegisterToReferenceDict",
    "ApplyTransformFile",
    "ApplyTransformFiled",
    "ApplyTransformFileD",
    "ApplyTransformFileDict",
]

#: Metadata keys that describe the grid: they follow the image to the reference grid and back.
GEOMETRY_KEYS = ("affine", "original_affine", "spatial_shape", "spacing", "space", "pixdim")


def _check_mode(mode: str, padding_mode: str) -> None:
    if mode not in RESAMPLE_MODES:
        raise InputError(f"unknown interpolation mode {mode!r}; choose from {RESAMPLE_MODES}")
    if padding_mode not in PADDING_MODES:
        raise InputError(f"unknown padding mode {padding_mode!r}; choose from {PADDING_MODES}")


def _geometry_of(image) -> dict:
    meta = image.meta if isinstance(image, MetaTensor) else {}
    return {key: meta[key] for key in GEOMETRY_KEYS if key in meta}


class ResampleWithTransform(InvertibleTransform):
    """Resample an image on a reference grid through a known transform, invertibly.

    ``__call__(img, transform, reference, mode, padding_mode, record)``: ``transform`` maps the
    reference world to ``img``'s world (a :class:`~monai_fusion.registration.spatial.SpatialTransform`
    or RAS matrix); ``record`` (a dict) goes to ``meta["registration"]``. The inverse resamples the
    image back on the grid ``img`` had, through the inverse transform. This is the building block
    of the registration transforms; use it directly to apply a stored result.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, img, transform, reference, mode: str = "bilinear", padding_mode: str = "zeros",
                 record: dict | None = None):
        _check_mode(mode, padding_mode)
        transform = as_transform(transform, img.ndim - 1)
        moved = resample(img, transform, reference, mode=mode, padding_mode=padding_mode)
        if not isinstance(img, MetaTensor):
            return convert_to_dst_type(moved.as_tensor(), img, dtype=torch.float32)[0]
        meta = dict(img.meta)
        for key in GEOMETRY_KEYS:
            meta.pop(key, None)
        meta.update(_geometry_of(reference) if isinstance(reference, MetaTensor) else {})
        meta["affine"] = moved.affine
        meta["spatial_shape"] = np.asarray(moved.shape[1:])
        if record is not None:
            meta["registration"] = record
        out = MetaTensor(moved.as_tensor(), meta=meta, applied_operations=list(img.applied_operations))
        extra = {
            "transform": transform_to_record(transform),
            "source_geometry": {k: v for k, v in _geometry_of(img).items() if k != "affine"},
            "source_affine": torch.as_tensor(img.affine, dtype=torch.float64).clone(),
            "mode": mode,
            "padding_mode": padding_mode,
        }
        return self.push_transform(out, orig_size=tuple(int(s) for s in img.shape[1:]), extra_info=extra)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        trace = self.pop_transform(data)
        extra = trace[TraceKeys.EXTRA_INFO]
        transform = transform_from_record(extra["transform"])
        grid = reference_grid((extra["source_affine"], trace[TraceKeys.ORIG_SIZE]))
        with self.trace_transform(False):
            back = resample(data, transform.inverse(), grid, mode=extra["mode"], padding_mode=extra["padding_mode"])
        meta = dict(data.meta) if isinstance(data, MetaTensor) else {}
        for key in GEOMETRY_KEYS + ("registration",):
            meta.pop(key, None)
        meta.update(extra.get("source_geometry", {}))
        meta["affine"] = torch.as_tensor(extra["source_affine"], dtype=torch.float64)
        meta["spatial_shape"] = np.asarray(grid.shape)
        operations = list(data.applied_operations) if isinstance(data, MetaTensor) else []
        return MetaTensor(back.as_tensor(), meta=meta, applied_operations=operations)


class RegisterToReference(InvertibleTransform):
    """Register a moving image to a reference and resample it on the reference grid.

    Args:
        model, preset, backend: see :func:`monai_fusion.registration.register` (e.g.
            ``preset="pet-mr"``, ``backend="simpleitk"``).
        mode: interpolation of the output: ``"bilinear"``, ``"nearest"`` or ``"bicubic"`` (2D).
        padding_mode: outside the moving image: ``"zeros"``, ``"border"`` or ``"reflection"``.
        options: further registration options (``levels=(4, 2, 1)``, ``bins=48``, ``seed=1``...).

    ``__call__(moving, reference, moving_mask=None, reference_mask=None)`` returns the moving image
    on the reference grid (``meta["registration"]`` records the result) and keeps the full result
    in :attr:`last_result`.

    Example:
        >>> from monai_fusion.io import load_image  # doctest: +SKIP
        >>> pet_on_mr = RegisterToReference(preset="pet-mr")(load_image("pet.nii"), load_image("t1.nii"))  # doctest: +SKIP
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, model=None, preset: str | None = None, backend: str = "torch", mode: str = "bilinear",
                 padding_mode: str = "zeros", **options) -> None:
        _check_mode(mode, padding_mode)
        if backend not in BACKENDS:
            raise InputError(f"unknown registration backend {backend!r}; choose from {BACKENDS}")
        from monai_fusion.registration.settings import resolve_settings

        resolve_settings(preset, model=model, **options)  # fail now, not on the first image
        self.model, self.preset, self.registration_backend = model, preset, backend
        self.mode, self.padding_mode = mode, padding_mode
        self.options = options
        self.resampler = ResampleWithTransform()
        self.last_result: RegistrationResult | None = None

    def register(self, moving, reference, moving_mask=None, reference_mask=None) -> RegistrationResult:
        """Only the registration (reference = fixed); no resampling."""
        result = register(reference, moving, model=self.model, preset=self.preset, backend=self.registration_backend,
                          fixed_mask=reference_mask, moving_mask=moving_mask, **self.options)
        self.last_result = result
        return result

    def __call__(self, moving, reference, moving_mask=None, reference_mask=None):
        result = self.register(moving, reference, moving_mask, reference_mask)
        return self.resampler(moving, result.transform, reference, self.mode, self.padding_mode, result.summary())

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        return self.resampler.inverse(data)


class RegisterToReferenced(MapTransform, InvertibleTransform):
    """Register ``data[moving_key]`` to ``data[fixed_key]`` and apply that one transform to every key.

    Args:
        keys: images to put on the fixed grid with the registration's transform (e.g. the PET and
            its lesion mask); usually includes ``moving_key``. Not ``fixed_key``.
        fixed_key: the reference (fixed) image.
        moving_key: the image that drives the registration.
        mode: interpolation per key (``"nearest"`` keeps label masks binary).
        padding_mode: padding per key.
        model, preset, backend: see :func:`monai_fusion.registration.register`.
        fixed_mask_key, moving_mask_key: optional masks restricting the metric.
        transform_key: if given, where to put the transform object (to write it with
            :func:`monai_fusion.registration.write_transform`).
        allow_missing_keys: skip absent keys; if ``moving_key`` or ``fixed_key`` is absent, return
            the data unchanged.
        options: further registration options (``levels``, ``bins``, ``seed``...).

    Each output's ``meta["registration"]`` records the result (``model``, ``backend``,
    ``affine_ras``, ``metric_initial``/``metric_final``, ``converged``, ``reason``...).
    ``monai.transforms.Invertd`` undoes it key by key.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, keys: KeysCollection, fixed_key: Hashable, moving_key: Hashable,
                 mode: Sequence[str] | str = "bilinear", padding_mode: Sequence[str] | str = "zeros",
                 model=None, preset: str | None = None, backend: str = "torch", fixed_mask_key: Hashable | None = None,
                 moving_mask_key: Hashable | None = None, transform_key: Hashable | None = None,
                 allow_missing_keys: bool = False, **options) -> None:
        super().__init__(keys, allow_missing_keys)
        if fixed_key in self.keys:
            raise InputError(f"fixed_key {fixed_key!r} is the reference and cannot be among the keys to resample")
        self.fixed_key, self.moving_key = fixed_key, moving_key
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        for m, p in zip(self.mode, self.padding_mode):
            _check_mode(m, p)
        self.fixed_mask_key, self.moving_mask_key = fixed_mask_key, moving_mask_key
        self.transform_key = transform_key
        self.registrar = RegisterToReference(model=model, preset=preset, backend=backend, **options)
        self.resampler = self.registrar.resampler

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.fixed_key not in d or self.moving_key not in d:
            if self.allow_missing_keys:
                return d
            missing = self.fixed_key if self.fixed_key not in d else self.moving_key
            raise InputError(f"key {missing!r} is missing from the data; RegisterToReferenced needs it")
        result = self.registrar.register(
            d[self.moving_key], d[self.fixed_key],
            moving_mask=d.get(self.moving_mask_key) if self.moving_mask_key is not None else None,
            reference_mask=d.get(self.fixed_mask_key) if self.fixed_mask_key is not None else None,
        )
        record = {**result.summary(), "fixed_key": str(self.fixed_key), "moving_key": str(self.moving_key)}
        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = self.resampler(d[key], result.transform, d[self.fixed_key], mode, padding_mode, dict(record))
        if self.transform_key is not None:
            d[self.transform_key] = result.transform
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resampler.inverse(d[key])
        return d


class ApplyTransformFile(InvertibleTransform):
    """Resample an image through a transform file from ITK, SimpleITK, elastix, ANTs or 3D Slicer.

    Args:
        path: ``.tfm``/``.txt``/``.mat``/``.h5`` ITK transform, an elastix
            ``TransformParameters.N.txt`` (linear) or a displacement-field image (``.nii.gz``...).
            The file maps reference (fixed) points to the image's points, as ITK writes them.
        mode, padding_mode: interpolation and padding.
        invert: apply the inverse of the file's transform (for files written in the modelling,
            "to parent", direction).

    ``__call__(img, reference=None)``: ``img`` resampled on ``reference``'s grid (default: its own).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, path: str | os.PathLike, mode: str = "bilinear", padding_mode: str = "zeros",
                 invert: bool = False) -> None:
        _check_mode(mode, padding_mode)
        self.path = str(path)
        transform: SpatialTransform = read_transform(path)
        self.transform = transform.inverse() if invert else transform
        self.mode, self.padding_mode = mode, padding_mode
        self.resampler = ResampleWithTransform()

    def __call__(self, img, reference=None):
        if img.ndim - 1 != self.transform.dims:
            raise InputError(f"{os.path.basename(self.path)} holds a {self.transform.dims}D transform but the image is "
                             f"{img.ndim - 1}D")
        record = {"transform_file": os.path.basename(self.path), "affine_ras": self.transform.linear_part().matrix.tolist(),
                  "direction": "fixed world -> moving world (RAS mm)"}
        return self.resampler(img, self.transform, img if reference is None else reference, self.mode,
                              self.padding_mode, record)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        return self.resampler.inverse(data)


class ApplyTransformFiled(MapTransform, InvertibleTransform):
    """Dictionary twin of :class:`ApplyTransformFile`: one file applied to every key.

    Args:
        keys: images to resample.
        path, invert: see :class:`ApplyTransformFile`.
        reference_key: key of the image whose grid the outputs take (default: each image's own).
        mode, padding_mode: per key.
        allow_missing_keys: skip absent keys.
    """

    backend = ApplyTransformFile.backend

    def __init__(self, keys: KeysCollection, path: str | os.PathLike, reference_key: Hashable | None = None,
                 mode: Sequence[str] | str = "bilinear", padding_mode: Sequence[str] | str = "zeros",
                 invert: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        self.applier = ApplyTransformFile(path, self.mode[0], self.padding_mode[0], invert)
        self.reference_key = reference_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        reference = d.get(self.reference_key) if self.reference_key is not None else None
        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            _check_mode(mode, padding_mode)
            self.applier.mode, self.applier.padding_mode = mode, padding_mode
            d[key] = self.applier(d[key], reference)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.applier.inverse(d[key])
        return d


RegisterToReferenceD = RegisterToReferenceDict = RegisterToReferenced
ApplyTransformFileD = ApplyTransformFileDict = ApplyTransformFiled
