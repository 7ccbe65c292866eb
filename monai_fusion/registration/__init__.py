"""Multimodal image registration: a pure-PyTorch Mattes-MI engine, SimpleITK/elastix adapters,
transform objects and ITK transform files.

Conventions (details in ``docs/registration.md``): a transform maps **fixed** world points to
**moving** world points (RAS mm), the resampling direction used by ITK, SimpleITK, elastix and
ANTs; ITK files hold the same mapping in LPS, converted in :mod:`~monai_fusion.registration.itk_io`.

Example:
    >>> from monai_fusion.io import load_image  # doctest: +SKIP
    >>> from monai_fusion.registration import register, resample  # doctest: +SKIP
    >>> t1, pet = load_image("T1.nii"), load_image("PET.nii")  # doctest: +SKIP
    >>> result = register(t1, pet, preset="pet-mr")  # doctest: +SKIP
    >>> pet_on_t1 = resample(pet, result.transform, t1)  # doctest: +SKIP
"""

from monai_fusion.registration.engine import BACKENDS, evaluate_metric, register
from monai_fusion.registration.grid import ImageGrid
from monai_fusion.registration.itk_io import read_transform, transform_from_sitk, transform_to_sitk, write_transform
from monai_fusion.registration.resample import resample
from monai_fusion.registration.result import LevelReport, RegistrationResult
from monai_fusion.registration.settings import PRESETS, RegistrationSettings, resolve_settings
from monai_fusion.registration.spatial import AffineTransform, CompositeTransform, DisplacementField, SpatialTransform

__all__ = [
    "BACKENDS",
    "PRESETS",
    "AffineTransform",
    "CompositeTransform",
    "DisplacementField",
    "ImageGrid",
    "LevelReport",
    "RegistrationResult",
    "RegistrationSettings",
    "SpatialTransform",
    "evaluate_metric",
    "read_transform",
    "register",
    "resample",
    "resolve_settings",
    "transform_from_sitk",
    "transform_to_sitk",
    "write_transform",
]
