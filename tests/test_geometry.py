"""geometry: LPS/RAS conversion, ITK geometry <-> affine, orientation codes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from monai_fusion.io.geometry import (
    LPS_TO_RAS,
    affine_from_itk_geometry,
    affine_from_sitk,
    affines_match,
    copy_affine_to_sitk,
    itk_geometry_from_affine,
    orientation_code,
    spacing_from_affine,
)


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_lps_point_maps_to_ras_by_flipping_x_and_y():
    np.testing.assert_array_equal(LPS_TO_RAS @ [10, 20, 30, 1], [-10, -20, 30, 1])
    np.testing.assert_array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_affine_maps_voxels_to_the_points_simpleitk_reports():
    image = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    image.SetOrigin((3.0, -4.0, 5.0))
    image.SetSpacing((0.5, 0.7, 2.5))
    image.SetDirection(tuple(_rotation(25).ravel()))
    affine = affine_from_sitk(image)
    for index in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)


def test_itk_geometry_round_trip():
    origin, spacing, direction = np.array([1.0, 2.0, 3.0]), np.array([0.8, 0.9, 3.0]), _rotation(-40)
    affine = affine_from_itk_geometry(origin, spacing, direction)
    o, s, d = itk_geometry_from_affine(affine)
    np.testing.assert_allclose(o, origin)
    np.testing.assert_allclose(s, spacing)
    np.testing.assert_allclose(d, direction, atol=1e-12)
    image = sitk.Image(2, 2, 2, sitk.sitkUInt8)
    copy_affine_to_sitk(image, affine)
    assert affines_match(affine_from_sitk(image), affine, atol=1e-9)


def test_two_d_sitk_image_is_lifted_to_one_slice():
    image = sitk.Image(3, 4, sitk.sitkUInt8)
    image.SetSpacing((0.5, 0.25))
    np.testing.assert_allclose(affine_from_sitk(image), np.diag([-0.5, -0.25, 1, 1]))


@pytest.mark.parametrize(
    "diagonal, code", [((1, 1, 1), "RAS"), ((-1, 1, 1), "LAS"), ((-1, -1, 1), "LPS"), ((1, -1, -1), "RPI")]
)
def test_orientation_code(diagonal, code):
    assert orientation_code(np.diag([*diagonal, 1])) == code


def test_spacing_is_column_norm():
    affine = np.eye(4)
    affine[:3, :3] = _rotation(30) @ np.diag([0.5, 1.5, 3.0])
    np.testing.assert_allclose(spacing_from_affine(affine), [0.5, 1.5, 3.0])
