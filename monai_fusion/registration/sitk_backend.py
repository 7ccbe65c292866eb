"""``backend="simpleitk"``: SimpleITK's ``ImageRegistrationMethod`` behind the same API and result.

The recipe is SimpleITK's standard one: Mattes MI with the settings' bins and random sampling
fraction, linear interpolation, the same shrink factors and smoothing sigmas (in mm), a centred
transform initialiser (``MOMENTS`` or ``GEOMETRY``), regular-step gradient descent with scales estimated
from physical shifts (step halved when the direction reverses, down to 0.001). Stages run in turn,
each starting from the last result; a B-spline stage optimises a ``BSplineTransform`` on top of
the linear result with L-BFGS-B. The transform is converted to ours (RAS) and scored with the
engine's own metric, so results compare across backends.
"""

from __future__ import annotations

import time

import numpy as np

from monai_fusion.errors import InputError
from monai_fusion.registration.engine import adapter_result
from monai_fusion.registration.inputs import initial_alignment, prepare_pair
from monai_fusion.registration.itk_io import image_to_sitk, transform_from_sitk, transform_to_sitk
from monai_fusion.registration.pyramid import level_specs
from monai_fusion.registration.settings import RegistrationSettings, stages_of
from monai_fusion.registration.spatial import AffineTransform, as_transform

__all__ = ["register_simpleitk"]


def _linear_sitk(kind: str, dims: int):
    import SimpleITK as sitk

    if kind == "translation":
        return sitk.TranslationTransform(dims)
    if kind == "rigid":
        return sitk.Euler3DTransform() if dims == 3 else sitk.Euler2DTransform()
    if kind == "similarity":
        return sitk.Similarity3DTransform() if dims == 3 else sitk.Similarity2DTransform()
    if kind == "affine":
        return sitk.AffineTransform(dims)
    raise InputError(f"the simpleitk backend has no {kind!r} model; use translation, rigid, similarity, affine or bspline")


def _start_from(kind: str, previous, fixed, moving, init: str, start: AffineTransform):
    """The stage's SimpleITK transform: from the previous stage, else SimpleITK's centred initialiser."""
    import SimpleITK as sitk

    dims = fixed.GetDimension()
    tx = _linear_sitk(kind, dims)
    if previous is None:
        if kind == "translation" or init == "identity":
            previous = transform_to_sitk(start)
        else:
            mode = sitk.CenteredTransformInitializerFilter.MOMENTS if init == "moments" else \
                sitk.CenteredTransformInitializerFilter.GEOMETRY
            return sitk.CenteredTransformInitializer(fixed, moving, tx, mode)
    if kind == "translation":
        offset = np.asarray(previous.TransformPoint((0.0,) * dims))
        return sitk.TranslationTransform(dims, tuple(float(v) for v in offset))
    tx.SetCenter(previous.GetCenter())
    try:
        tx.SetMatrix(previous.GetMatrix())
    except RuntimeError:
        raise InputError(f"a {kind!r} stage cannot start from the non-{kind} result of the stage before it; "
                         "order the models from fewest to most degrees of freedom") from None
    tx.SetTranslation(previous.GetTranslation())
    return tx


def register_simpleitk(fixed, moving, settings: RegistrationSettings, *, fixed_mask=None, moving_mask=None,
                       initial_transform=None):
    """Register with SimpleITK; returns a :class:`~monai_fusion.registration.result.RegistrationResult`."""
    import SimpleITK as sitk

    started = time.perf_counter()
    fixed_img, moving_img, fixed_mask_t, moving_mask_t = prepare_pair(fixed, moving, fixed_mask, moving_mask, "cpu")
    f = image_to_sitk(fixed_img.data, fixed_img.grid)
    m = image_to_sitk(moving_img.data, moving_img.grid)
    base = float(min(fixed_img.grid.spacing.min(), moving_img.grid.spacing.min()))
    specs = level_specs(settings.levels, base, settings.smoothing_mm)
    shrinks = [max(1, int(round(s.spacing_mm / float(fixed_img.grid.spacing.min())))) for s in specs]
    iterations_per_level: list[int] = []
    result_tx = None
    if initial_transform is not None:
        start = as_transform(initial_transform, fixed_img.dims).linear_part()
        result_tx = transform_to_sitk(start)
    else:
        start = initial_alignment(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings.init)
    problem = None
    for index, stage in enumerate(stages_of(settings.model)):
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed + 1)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetShrinkFactorsPerLevel(shrinks)
        method.SetSmoothingSigmasPerLevel([s.sigma_mm for s in specs])
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        if fixed_mask_t is not None:
            method.SetMetricFixedMask(image_to_sitk(fixed_mask_t, fixed_img.grid, sitk.sitkUInt8))
        if moving_mask_t is not None:
            method.SetMetricMovingMask(image_to_sitk(moving_mask_t, moving_img.grid, sitk.sitkUInt8))
        counts: list[int] = []
        method.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: counts.append(0))
        method.AddCommand(sitk.sitkIterationEvent, lambda: counts.__setitem__(-1, counts[-1] + 1) if counts else None)
        iterations = settings.iterations if isinstance(settings.iterations, int) else max(settings.iterations)
        if stage == "bspline":
            mesh = [max(1, int(round(size * sp / settings.bspline_spacing_mm)))
                    for size, sp in zip(f.GetSize(), f.GetSpacing())]
            tx = sitk.BSplineTransformInitializer(f, mesh)
            if result_tx is not None:
                method.SetMovingInitialTransform(result_tx)
            method.SetInitialTransform(tx, inPlace=True)
            method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
        elif stage in ("dense", "diffeomorphic"):
            raise InputError(f"the simpleitk backend has no {stage!r} model; use 'bspline' or the torch backend")
        else:
            tx = _start_from(stage, result_tx, f, m, settings.init, start)
            if index == 0 and initial_transform is None:
                start = transform_from_sitk(tx).linear_part()
            method.SetInitialTransform(tx, inPlace=False)
            method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
                                                            relaxationFactor=0.5)
            method.SetOptimizerScalesFromPhysicalShift()
        try:
            out = method.Execute(f, m)
        except RuntimeError as err:
            problem = f"SimpleITK failed: {str(err).strip().splitlines()[-1][:200]}"
            break
        iterations_per_level.extend(counts)
        if stage == "bspline":
            composite = sitk.CompositeTransform(fixed_img.dims)
            if result_tx is not None:
                composite.AddTransform(result_tx)
            composite.AddTransform(tx)
            result_tx = composite
        else:  # flatten SimpleITK's output composite into one centred affine for the next stage
            result_tx = transform_to_sitk(transform_from_sitk(out).linear_part())
    seconds = time.perf_counter() - started
    transform = transform_from_sitk(result_tx) if result_tx is not None else start
    return adapter_result(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings, start, transform,
                          seconds=seconds, backend="simpleitk", iterations=tuple(iterations_per_level), problem=problem)
