"""DisplacementField's Jacobian determinant (local volume change, folding), its summary, and the
regularity check that keeps a folded registration from being reported as converged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_fusion.registration import ImageGrid
from monai_fusion.registration.spatial import DisplacementField, deformation_regularity


def oblique_grid(shape, spacing=(2.0, 1.5, 3.0)) -> ImageGrid:
    """A flipped, rotated, anisotropic grid: the determinant must not depend on how the grid is laid out."""
    angle = np.deg2rad(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, 1.0, 1.0]) @ np.diag(spacing)
    affine[:3, 3] = (10.0, -20.0, 5.0)
    return ImageGrid(affine, shape)


def world_coordinates(grid: ImageGrid) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    return index @ grid.affine[:3, :3].T + grid.affine[:3, 3]  # (*shape, 3)


def field_of(grid: ImageGrid, displacement: np.ndarray) -> DisplacementField:
    return DisplacementField(torch.as_tensor(np.moveaxis(displacement, -1, 0), dtype=torch.float32), grid)


def test_zero_field_preserves_volume_everywhere():
    grid = oblique_grid((6, 7, 5))
    determinant = field_of(grid, np.zeros((6, 7, 5, 3))).jacobian_determinant()
    assert determinant.shape == (6, 7, 5)
    assert torch.allclose(determinant, torch.ones_like(determinant))


@pytest.mark.parametrize("matrix", [np.diag([1.1, 0.9, 1.2]), np.array([[1.0, 0.2, 0.0], [0.0, 1.0, -0.1], [0.05, 0.0, 0.95]])])
def test_linear_field_gives_the_matrix_determinant_on_an_oblique_grid(matrix):
    """u(x) = (M - I) x: x + u = M x, so the determinant is det(M) at every voxel, faces included."""
    grid = oblique_grid((6, 7, 5))
    world = world_coordinates(grid)
    determinant = field_of(grid, world @ (matrix - np.eye(3)).T).jacobian_determinant()
    assert torch.allclose(determinant, torch.full_like(determinant, np.linalg.det(matrix)), atol=1e-4)


def test_folding_field_is_reported_in_the_summary():
    """A displacement that reverses the order of points along one axis in the middle of the grid."""
    grid = ImageGrid(np.diag([2.0, 2.0, 2.0, 1.0]), (12, 6, 6))
    world = world_coordinates(grid)
    x = world[..., 0]
    displacement = np.zeros_like(world)
    displacement[..., 0] = -1.6 * (x - 11.0) * (np.abs(x - 11.0) < 4.0)  # slope -1.6: 1 - 1.6 < 0 there
    field = field_of(grid, displacement)
    determinant = field.jacobian_determinant()
    assert float(determinant.min()) < 0 and float(determinant.max()) >= 1.0
    summary = field.summary()
    assert summary["min_jacobian_determinant"] == pytest.approx(float(determinant.min()))
    assert 0 < summary["folded_fraction"] < 0.5


def test_2d_field():
    grid = ImageGrid(np.diag([1.5, 1.0, 1.0]), (8, 9))
    index = np.stack(np.meshgrid(np.arange(8), np.arange(9), indexing="ij"), -1)
    world = index @ grid.affine[:2, :2].T
    determinant = field_of(grid, world @ np.array([[0.1, 0.0], [0.0, -0.2]]).T).jacobian_determinant()
    assert torch.allclose(determinant, torch.full_like(determinant, 1.1 * 0.8), atol=1e-5)


def test_a_folding_deformation_is_not_reported_as_converged():
    from monai_fusion.registration import AffineTransform
    from monai_fusion.registration.engine import _judge, folding_problem
    from monai_fusion.registration.result import LevelReport
    from monai_fusion.registration.spatial import CompositeTransform

    grid = ImageGrid(np.diag([2.0, 2.0, 2.0, 1.0]), (12, 6, 6))
    x = world_coordinates(grid)[..., 0]
    folded = np.zeros((12, 6, 6, 3))
    folded[..., 0] = -1.6 * (x - 11.0) * (np.abs(x - 11.0) < 4.0)
    smooth = np.zeros((12, 6, 6, 3))
    smooth[..., 0] = 0.5 * np.sin(x / 6.0)  # slope at most 1/12: no folding
    linear = AffineTransform.identity(3)
    reports = [LevelReport("bspline", 1.0, 40, 0.5, 0.6, 4000, "converged")]
    assert folding_problem(CompositeTransform([field_of(grid, smooth), linear])) == ""
    assert _judge(reports, CompositeTransform([field_of(grid, smooth), linear]), 0.5, 0.6) == (True, "converged")
    smallest, share = deformation_regularity(CompositeTransform([linear, field_of(grid, folded)]))
    assert smallest < 0 and 0 < share < 0.5
    assert deformation_regularity(linear) == (1.0, 0.0)
    reason = folding_problem(CompositeTransform([field_of(grid, folded), linear]))
    assert reason.startswith("the deformation folds in ") and "regularisation" in reason
    assert _judge(reports, CompositeTransform([field_of(grid, folded), linear]), 0.5, 0.6) == (False, reason)
    assert folding_problem(linear) == ""


def test_slabs_give_the_same_determinant_as_one_pass(monkeypatch):
    """Large fields are processed in slabs of the first axis; the slab borders must not show."""
    import monai_fusion.registration.spatial as spatial

    grid = oblique_grid((9, 7, 6))
    rng = np.random.default_rng(0)
    displacement = rng.normal(size=(9, 7, 6, 3)) * 0.6
    whole = field_of(grid, displacement).jacobian_determinant()
    monkeypatch.setattr(spatial, "_DETERMINANT_SLAB_VOXELS", 7 * 6 * 2)  # two rows per slab
    sliced = field_of(grid, displacement).jacobian_determinant()
    assert torch.allclose(whole, sliced, atol=1e-6)
    assert float(whole.min()) < 1.0 < float(whole.max())  # a rough field: the values vary
