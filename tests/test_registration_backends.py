"""SimpleITK and elastix backends behind the same register() API, result object and transforms."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from monai_fusion.errors import InputError
from monai_fusion.io import load_image
from monai_fusion.registration import AffineTransform, RegistrationResult, read_transform, register
from monai_fusion.registration.elastix_backend import elastix_available
from monai_fusion.registration.evaluation import downsample, foreground_points, move_image, point_error, random_linear_transform
from monai_fusion.registration.itk_io import transform_from_sitk
from monai_fusion.transforms.registration import RegisterToReferenced
from tests.conftest import shared_path
from tests.test_registration_engine import as_metatensor, phantom_2d

needs_elastix = pytest.mark.skipif(not elastix_available(), reason="itk-elastix not installed (pip install 'monai-fusion[elastix]')")


@pytest.fixture(scope="module")
def moved_t1():
    """T1 at 4 mm and the same T1 moved by a known rigid transform: truth is exact."""
    t1 = downsample(load_image(shared_path("templates", "T1.nii")), 2)
    known = random_linear_transform(21, "rigid", foreground_points(t1).mean(axis=0), max_degrees=10, max_mm=10)
    return t1, move_image(t1, known, pad=3), known


def check_recovery(result: RegistrationResult, fixed, known, backend: str, tolerance: float = 1.0) -> None:
    assert isinstance(result, RegistrationResult)
    assert result.backend == backend
    assert result.converged, result.reason
    assert result.metric_final > result.metric_initial
    assert result.seconds > 0 and len(result.iterations) > 0
    error = point_error(known.compose(result.transform.linear_part()), AffineTransform.identity(3), foreground_points(fixed))
    assert error.mean() < tolerance, error.mean()


def test_simpleitk_backend_recovers_known_rigid(moved_t1):
    fixed, moving, known = moved_t1
    result = register(fixed, moving, model="rigid", backend="simpleitk", levels=(2, 1))
    check_recovery(result, fixed, known, "simpleitk")


def test_simpleitk_backend_rigid_then_affine_2d():
    fixed = as_metatensor(phantom_2d(64))
    known = random_linear_transform(3, "rigid", (32, 32), max_degrees=8, max_mm=4, dims=2)
    result = register(fixed, move_image(fixed, known, pad=4), model=("rigid", "affine"), backend="simpleitk", levels=(2, 1))
    error = point_error(known.compose(result.transform), AffineTransform.identity(2), foreground_points(fixed))
    assert result.converged, result.reason
    assert error.mean() < 0.5


def test_simpleitk_backend_in_the_dict_transform(moved_t1):
    fixed, moving, _ = moved_t1
    out = RegisterToReferenced(keys="moving", fixed_key="fixed", moving_key="moving", backend="simpleitk",
                               levels=(2, 1))({"fixed": fixed, "moving": moving})
    assert out["moving"].meta["registration"]["backend"] == "simpleitk"
    assert out["moving"].shape == fixed.shape


def test_unknown_backend_and_models_the_backend_lacks():
    image = as_metatensor(phantom_2d(32))
    with pytest.raises(InputError, match="unknown registration backend"):
        register(image, image, backend="ants")
    with pytest.raises(InputError, match="simpleitk backend has no 'dense'"):
        register(image, image, model=("rigid", "dense"), backend="simpleitk", levels=(1,))


@needs_elastix
def test_elastix_backend_recovers_known_rigid(moved_t1):
    fixed, moving, known = moved_t1
    result = register(fixed, moving, model="rigid", backend="elastix")
    check_recovery(result, fixed, known, "elastix")


@needs_elastix
def test_elastix_result_files_read_back_with_the_same_meaning(moved_t1, tmp_path):
    """Our reader of elastix parameter files (a rigid -> affine chain) agrees with elastix's own
    combination transform, which fixes the order of elastix's 'Compose'."""
    import itk

    from monai_fusion.registration.elastix_backend import _itk_image
    from monai_fusion.registration.grid import as_spatial_image

    fixed, moving, _ = moved_t1
    f, m = as_spatial_image(fixed, "fixed"), as_spatial_image(moving, "moving")
    parameters = itk.ParameterObject.New()
    for name in ("rigid", "affine"):
        mapping = parameters.GetDefaultParameterMap(name)
        mapping["MaximumNumberOfIterations"] = ["32"]
        mapping["WriteResultImage"] = ["false"]
        parameters.AddParameterMap(mapping)
    method = itk.ElastixRegistrationMethod.New(_itk_image(itk, f.data, f.grid), _itk_image(itk, m.data, m.grid))
    method.SetParameterObject(parameters)
    method.SetLogToConsole(False)
    method.Update()
    result = method.GetTransformParameterObject()
    names = [str(tmp_path / f"TransformParameters.{i}.txt") for i in range(result.GetNumberOfParameterMaps())]
    for i, name in enumerate(names):
        mapping = result.GetParameterMap(i)
        mapping["InitialTransformParametersFileName"] = [names[i - 1] if i else "NoInitialTransform"]
        itk.ParameterObject.WriteParameterFile(mapping, name)
    combined = method.ConvertToItkTransform(method.GetCombinationTransform())
    itk.transformwrite([combined], str(tmp_path / "combined.h5"))
    theirs = transform_from_sitk(sitk.ReadTransform(str(tmp_path / "combined.h5")))
    points = foreground_points(fixed, max_points=200)
    assert np.abs(read_transform(names[-1]).map_numpy(points) - theirs.map_numpy(points)).max() < 1e-6
    assert os.path.exists(names[0])
