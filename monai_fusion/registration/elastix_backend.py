"""``backend="elastix"``: itk-elastix with its default parameter maps, behind the same API and result.

Optional: ``pip install monai-fusion[elastix]`` (``itk-elastix``). Each stage uses elastix's
default map for the model (``translation``, ``rigid``, ``affine``, ``bspline``; ``similarity``
is the rigid map with ``SimilarityTransform``), unchanged except that the result image is not
written (we resample ourselves) and, unless ``init="identity"``, elastix's automatic transform
initialisation is switched on (``CenterOfGravity`` for ``init="moments"``, ``GeometricalCenter``
for ``"geometry"``). The combined elastix transform is converted to an ITK transform, then to
ours, and scored with the engine's metric.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from monai_fusion.errors import InputError
from monai_fusion.registration.engine import adapter_result
from monai_fusion.registration.inputs import initial_alignment, prepare_pair
from monai_fusion.registration.itk_io import grid_to_sitk_geometry, transform_from_sitk
from monai_fusion.registration.settings import RegistrationSettings, stages_of
from monai_fusion.registration.spatial import AffineTransform, as_transform

__all__ = ["register_elastix", "elastix_available", "elastix_parameter_maps"]

_ELASTIX_MAPS = {"translation": "translation", "rigid": "rigid", "similarity": "rigid", "affine": "affine",
                 "bspline": "bspline"}


def elastix_available() -> bool:
    """True when itk-elastix can be imported."""
    try:
        import itk

        return hasattr(itk, "ElastixRegistrationMethod")
    except ImportError:
        return False


def _itk():
    try:
        import itk
    except ImportError:
        raise InputError("backend='elastix' needs itk-elastix: pip install 'monai-fusion[elastix]'") from None
    if not hasattr(itk, "ElastixRegistrationMethod"):
        raise InputError("backend='elastix' needs itk-elastix: pip install 'monai-fusion[elastix]'")
    return itk


def _itk_image(itk, data, grid, pixel=None):
    import numpy as np

    array = np.ascontiguousarray(data.detach().cpu().numpy().transpose(*range(data.ndim - 1, -1, -1)))
    image = itk.image_from_array(array.astype(np.float32 if pixel is None else np.uint8))
    origin, spacing, direction = grid_to_sitk_geometry(grid)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(np.asarray(direction, dtype=float).reshape(grid.dims, grid.dims))
    return image


def elastix_parameter_maps(settings: RegistrationSettings):
    """The elastix ``ParameterObject`` for the settings' stages (default maps, see module docstring)."""
    itk = _itk()
    parameters = itk.ParameterObject.New()
    for index, stage in enumerate(stages_of(settings.model)):
        if stage not in _ELASTIX_MAPS:
            raise InputError(f"the elastix backend has no {stage!r} model; use translation, rigid, similarity, affine or bspline")
        mapping = parameters.GetDefaultParameterMap(_ELASTIX_MAPS[stage])
        if stage == "similarity":
            mapping["Transform"] = ["SimilarityTransform"]
        if stage == "bspline":
            mapping["FinalGridSpacingInPhysicalUnits"] = [str(float(settings.bspline_spacing_mm))]
        mapping["WriteResultImage"] = ["false"]
        if index == 0 and settings.init != "identity" and stage != "bspline":
            mapping["AutomaticTransformInitialization"] = ["true"]
            mapping["AutomaticTransformInitializationMethod"] = [
                "CenterOfGravity" if settings.init == "moments" else "GeometricalCenter"]
        mapping["RandomSeed"] = [str(int(settings.seed) + 1)]
        parameters.AddParameterMap(mapping)
    return parameters


def register_elastix(fixed, moving, settings: RegistrationSettings, *, fixed_mask=None, moving_mask=None,
                     initial_transform=None):
    """Register with itk-elastix; returns a :class:`~monai_fusion.registration.result.RegistrationResult`."""
    import SimpleITK as sitk

    itk = _itk()
    started = time.perf_counter()
    fixed_img, moving_img, fixed_mask_t, moving_mask_t = prepare_pair(fixed, moving, fixed_mask, moving_mask, "cpu")
    if initial_transform is not None:
        raise InputError("the elastix backend does not take an initial_transform; use init= or the torch/simpleitk backends")
    start = initial_alignment(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings.init)
    if settings.init == "identity":
        start = AffineTransform.identity(fixed_img.dims)
    f = _itk_image(itk, fixed_img.data, fixed_img.grid)
    m = _itk_image(itk, moving_img.data, moving_img.grid)
    method = itk.ElastixRegistrationMethod.New(f, m)
    parameters = elastix_parameter_maps(settings)
    method.SetParameterObject(parameters)
    if fixed_mask_t is not None:
        method.SetFixedMask(_itk_image(itk, fixed_mask_t, fixed_img.grid, pixel="mask"))
    if moving_mask_t is not None:
        method.SetMovingMask(_itk_image(itk, moving_mask_t, moving_img.grid, pixel="mask"))
    method.SetLogToConsole(False)
    problem = None
    transform = start
    try:
        method.Update()
        combined = method.ConvertToItkTransform(method.GetCombinationTransform())
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "elastix.h5")
            itk.transformwrite([combined], path)
            transform = transform_from_sitk(sitk.ReadTransform(path))
    except RuntimeError as err:
        problem = f"elastix failed: {str(err).strip().splitlines()[-1][:200]}"
    seconds = time.perf_counter() - started
    levels = []
    if problem is None:
        for i in range(parameters.GetNumberOfParameterMaps()):  # ASGD runs every iteration it is given
            mapping = dict(parameters.GetParameterMap(i))
            resolutions = int(float(mapping.get("NumberOfResolutions", ("1",))[0]))
            levels += [int(float(mapping.get("MaximumNumberOfIterations", ("0",))[0]))] * resolutions
    return adapter_result(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings, start,
                          as_transform(transform), seconds=seconds, backend="elastix", iterations=tuple(levels),
                          problem=problem)
