"""Transform interchange: our transforms <-> SimpleITK <-> ITK/elastix/ANTs files, with the same meaning."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError, OutputError
from monai_fusion.registration import (
    AffineTransform,
    CompositeTransform,
    DisplacementField,
    ImageGrid,
    read_transform,
    resample,
    transform_from_sitk,
    transform_to_sitk,
    write_transform,
)
from monai_fusion.registration.elastix_files import parse_elastix_parameters
from monai_fusion.registration.evaluation import random_linear_transform
from monai_fusion.registration.itk_io import grid_from_sitk, image_to_sitk

FLIP3 = np.array([-1.0, -1.0, 1.0])
FLIP2 = np.array([-1.0, -1.0])


def sitk_map(tx, points_ras: np.ndarray) -> np.ndarray:
    """Map RAS points through a SimpleITK (LPS) transform."""
    flip = FLIP3 if points_ras.shape[1] == 3 else FLIP2
    return np.array([tx.TransformPoint(tuple(float(v) for v in p * flip)) for p in points_ras]) * flip


@pytest.fixture
def points3():
    return np.random.default_rng(0).uniform(-80, 80, (40, 3))


def a_deformable_3d() -> CompositeTransform:
    grid = ImageGrid(np.array([[0.0, -4.0, 0, 40], [4.0, 0, 0, -50], [0, 0, 5.0, -30], [0, 0, 0, 1]]), (20, 24, 14))
    index = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in grid.shape], indexing="ij"))
    field = torch.stack((3 * torch.sin(index[1] / 5), 2 * torch.cos(index[0] / 4), torch.sin(index[2] / 3)))
    linear = random_linear_transform(3, "affine", (0, -10, 5), max_degrees=10, max_mm=8)
    return CompositeTransform([DisplacementField(field, grid), linear])


def test_affine_to_sitk_has_the_same_meaning(points3):
    transform = random_linear_transform(1, "affine", (10, -20, 5), max_degrees=15, max_mm=20)
    tx = transform_to_sitk(transform)
    assert np.abs(sitk_map(tx, points3) - transform.map_numpy(points3)).max() < 1e-9
    # the centre of rotation is ITK's fixed parameter, in LPS
    assert np.allclose(tx.GetCenter(), transform.centre * FLIP3)


def test_2d_affine_to_sitk():
    transform = random_linear_transform(2, "affine", (5, 7), max_degrees=20, max_mm=10, dims=2)
    points = np.random.default_rng(1).uniform(-50, 50, (20, 2))
    assert np.abs(sitk_map(transform_to_sitk(transform), points) - transform.map_numpy(points)).max() < 1e-9


@pytest.mark.parametrize("suffix", [".tfm", ".txt", ".mat", ".h5"])
def test_linear_file_round_trip_and_simpleitk_reads_the_same_mapping(tmp_path, suffix, points3):
    transform = random_linear_transform(4, "affine", (10, -20, 5), max_degrees=15, max_mm=20)
    path = write_transform(transform, tmp_path / f"t{suffix}")
    back = read_transform(path)
    assert isinstance(back, AffineTransform)
    assert np.abs(back.matrix - transform.matrix).max() < 1e-10
    assert np.allclose(back.centre, transform.centre)
    theirs = sitk_map(sitk.ReadTransform(str(path)), points3)
    assert np.abs(theirs - transform.map_numpy(points3)).max() < 0.01


def test_text_file_is_itk_affine_with_centre(tmp_path):
    transform = random_linear_transform(5, "rigid", (1, 2, 3), max_degrees=10, max_mm=5)
    text = write_transform(transform, tmp_path / "rigid.tfm").read_text()
    assert "Transform: AffineTransform_double_3_3" in text
    assert "FixedParameters: -1 -2 3" in text


def test_simpleitk_resample_with_our_file_equals_our_resample(tmp_path):
    image = MetaTensor(torch.rand(1, 18, 22, 12),
                       affine=torch.tensor([[0.0, -1.5, 0.0, 20.0], [2.0, 0.0, 0.0, -30.0], [0.0, 0.0, 2.5, -10.0], [0, 0, 0, 1]]))
    reference = MetaTensor(torch.zeros(1, 16, 20, 14), affine=torch.tensor([[-2.0, 0, 0, 30], [0, 1.8, 0, -25], [0, 0, 2, -15], [0, 0, 0, 1]]))
    grid, ref_grid = ImageGrid.of(image), ImageGrid.of(reference)
    transform = random_linear_transform(6, "affine", grid.centre(), max_degrees=8, max_mm=4)
    path = write_transform(transform, tmp_path / "t.tfm")
    ours = resample(image, transform, reference)[0].numpy()
    theirs = sitk.Resample(image_to_sitk(image[0], grid), image_to_sitk(reference[0], ref_grid), sitk.ReadTransform(str(path)),
                           sitk.sitkLinear, 0.0)
    theirs = sitk.GetArrayFromImage(theirs).transpose(2, 1, 0)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in ref_grid.shape], indexing="ij"), -1).reshape(-1, 3)
    mapped = grid.world_to_index(transform.map_numpy(ref_grid.index_to_world(index)))
    inside = ((mapped >= 0) & (mapped <= np.array(grid.shape) - 1)).all(axis=1).reshape(ref_grid.shape)
    assert inside.mean() > 0.3
    assert np.abs(ours - theirs)[inside].max() < 1e-4


def test_inverse_and_composition():
    transform = random_linear_transform(8, "affine", (0, 0, 0), max_degrees=15, max_mm=20)
    points = np.random.default_rng(2).uniform(-50, 50, (10, 3))
    assert np.abs(transform.inverse().map_numpy(transform.map_numpy(points)) - points).max() < 1e-9
    assert np.abs(transform.inverse().compose(transform).matrix - np.eye(4)).max() < 1e-12


def test_displacement_field_matches_itk_inside_and_outside(points3):
    deformable = a_deformable_3d()
    field = deformable.transforms[0]
    tx = transform_to_sitk(field)
    grid_points = field.grid.index_to_world(np.random.default_rng(3).uniform(0, 1, (50, 3)) * (np.array(field.grid.shape) - 1))
    far = np.array([[500.0, 500.0, 500.0]])
    for points in (grid_points, far):
        assert np.abs(sitk_map(tx, points) - field.map_numpy(points)).max() < 1e-4
    assert np.allclose(field.map_numpy(far), far)


@pytest.mark.parametrize("suffix", [".h5", ".nii.gz", ".nrrd"])
def test_deformable_file_round_trip(tmp_path, suffix):
    deformable = a_deformable_3d()
    grid = deformable.transforms[0].grid
    points = grid.index_to_world(np.random.default_rng(4).uniform(1, 1, (30, 3)) * (np.array(grid.shape) - 3))
    path = write_transform(deformable, tmp_path / f"warp{suffix}")
    back = read_transform(path)
    assert np.abs(back.map_numpy(points) - deformable.map_numpy(points)).max() < 1e-3
    if suffix == ".h5":  # SimpleITK applies the composite in the same order
        assert np.abs(sitk_map(sitk.ReadTransform(str(path)), points) - deformable.map_numpy(points)).max() < 1e-3


def test_linear_transform_as_displacement_image_needs_a_grid(tmp_path):
    transform = AffineTransform.from_translation([1.0, 2.0, 3.0])
    with pytest.raises(OutputError, match="reference"):
        write_transform(transform, tmp_path / "shift.nii.gz")
    image = MetaTensor(torch.zeros(1, 6, 7, 8))
    back = read_transform(write_transform(transform, tmp_path / "shift.nii.gz", reference=image))
    assert np.allclose(back.field[:, 2, 3, 4].numpy(), [1, 2, 3], atol=1e-6)


def test_refusals(tmp_path):
    with pytest.raises(OutputError, match="deformable"):
        write_transform(a_deformable_3d(), tmp_path / "warp.tfm")
    with pytest.raises(OutputError, match="unknown transform file type"):
        write_transform(AffineTransform.identity(3), tmp_path / "t.json")
    with pytest.raises(InputError, match="does not exist"):
        read_transform(tmp_path / "missing.tfm")
    (tmp_path / "junk.tfm").write_text("not a transform")
    with pytest.raises(InputError, match="cannot be read"):
        read_transform(tmp_path / "junk.tfm")


def test_itk_linear_types_read_as_affines(tmp_path, points3):
    euler = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0))
    versor = sitk.VersorRigid3DTransform((0.1, 0.05, -0.02, 0.99), (1.0, -2.0, 3.0), (10.0, 0.0, 5.0))
    similarity = sitk.Similarity3DTransform(1.1, (0.0, 0.0, 1.0), 0.2, (3.0, 2.0, 1.0), (0.0, 10.0, 0.0))
    translation = sitk.TranslationTransform(3, (1.0, 2.0, 3.0))
    for tx, kind in ((euler, "rigid"), (versor, "rigid"), (similarity, "similarity"), (translation, "translation")):
        path = tmp_path / f"{tx.GetName()}.tfm"
        sitk.WriteTransform(tx, str(path))
        ours = read_transform(path)
        assert ours.kind == kind
        assert np.abs(ours.map_numpy(points3) - sitk_map(tx, points3)).max() < 1e-9


def test_ants_style_matlab_affine(tmp_path, points3):
    """ANTs writes its affines as ITK MATLAB files (``AffineTransform_float_3_3``)."""
    tx = sitk.AffineTransform(3)
    tx.SetMatrix((1.02, 0.01, 0.0, -0.02, 0.98, 0.03, 0.0, 0.01, 1.01))
    tx.SetTranslation((2.0, -3.0, 1.5))
    tx.SetCenter((5.0, 6.0, -7.0))
    path = tmp_path / "ants0GenericAffine.mat"
    sitk.WriteTransform(tx, str(path))
    assert np.abs(read_transform(path).map_numpy(points3) - sitk_map(tx, points3)).max() < 1e-6


ELASTIX_EULER = """(Transform "EulerTransform")
(NumberOfParameters 6)
(TransformParameters 0.05 -0.1 0.02 3.5 -2.0 1.0)
(InitialTransformParametersFileName "NoInitialTransform")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(CenterOfRotationPoint 10.0 -20.0 5.0)
(ComputeZYX "false")
"""

ELASTIX_AFFINE = """(Transform "AffineTransform")
(NumberOfParameters 12)
(TransformParameters 1.01 0.02 0 -0.01 0.99 0.03 0 0.01 1.02 1.0 2.0 -1.0)
(InitialTransformParametersFileName "{initial}")
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(CenterOfRotationPoint 0.0 5.0 -5.0)
"""


def test_elastix_parameter_files(tmp_path, points3):
    euler_path = tmp_path / "TransformParameters.0.txt"
    euler_path.write_text(ELASTIX_EULER)
    entries = parse_elastix_parameters(ELASTIX_EULER)
    assert entries["Transform"] == ["EulerTransform"] and entries["CenterOfRotationPoint"] == [10.0, -20.0, 5.0]
    euler = sitk.Euler3DTransform((10.0, -20.0, 5.0), 0.05, -0.1, 0.02, (3.5, -2.0, 1.0))
    ours = read_transform(euler_path)
    assert np.abs(ours.map_numpy(points3) - sitk_map(euler, points3)).max() < 1e-9
    affine_path = tmp_path / "TransformParameters.1.txt"
    affine_path.write_text(ELASTIX_AFFINE.format(initial=euler_path))
    affine = sitk.AffineTransform(3)
    affine.SetCenter((0.0, 5.0, -5.0))
    affine.SetParameters((1.01, 0.02, 0, -0.01, 0.99, 0.03, 0, 0.01, 1.02, 1.0, 2.0, -1.0))
    chained = read_transform(affine_path)
    # elastix "Compose": the initial transform is applied to the fixed point first
    expected = sitk_map(affine, sitk_map(euler, points3))
    assert np.abs(chained.map_numpy(points3) - expected).max() < 1e-9


def test_transform_from_sitk_composite_order(points3):
    first = sitk.TranslationTransform(3, (10.0, 0.0, 0.0))
    second = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.pi / 2, (0.0, 0.0, 0.0))
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(second)  # ITK applies the last added first: second(first(x))
    composite.AddTransform(first)
    ours = transform_from_sitk(composite)
    assert np.abs(ours.map_numpy(points3) - sitk_map(composite, points3)).max() < 1e-9


def test_grid_geometry_round_trip():
    grid = ImageGrid(np.array([[0.0, -1.5, 0, 20], [2.0, 0, 0, -30], [0, 0, 2.5, -10], [0, 0, 0, 1]]), (5, 6, 7))
    image = image_to_sitk(torch.zeros(grid.shape), grid)
    assert np.allclose(grid_from_sitk(image).affine, grid.affine)
    assert image.GetSize() == (5, 6, 7)
