"""The B-spline model's Jacobian determinant on its knot lattice and the fold penalty built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_fusion.errors import InputError
from monai_fusion.registration import AffineTransform, register, resample, resolve_settings
from monai_fusion.registration.deformable import FOLD_MARGIN, BSplineModel
from monai_fusion.registration.grid import ImageGrid, SpatialImage
from monai_fusion.registration.spatial import DisplacementField, deformation_regularity
from tests.test_registration_engine import as_metatensor, phantom_2d


def oblique_grid(shape=(41, 46, 36), spacing=2.0) -> ImageGrid:
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation * spacing
    affine[:3, 3] = [90.0, -100.0, -60.0]
    return ImageGrid(affine, shape)


def model_on(grid: ImageGrid, spacing_mm: float = 20.0) -> BSplineModel:
    return BSplineModel(SpatialImage(torch.zeros(grid.shape), grid), spacing_mm, AffineTransform.identity(grid.dims))


def test_a_linear_field_has_its_constant_determinant_everywhere_on_an_oblique_grid():
    grid = oblique_grid()
    model = model_on(grid)
    gradient = np.array([[0.10, -0.05, 0.02], [0.03, -0.20, 0.04], [0.00, 0.06, 0.15]])
    # knot k sits at fixed index (k - 1) * knot_step; cubic B-splines reproduce a field linear in the knots' world positions
    knots = np.stack(np.meshgrid(*[(np.arange(n) - 1.0) * step for n, step in zip(model.n_control, model.knot_step)],
                                 indexing="ij"), -1).reshape(-1, 3)
    coefficients = (grid.index_to_world(knots) @ gradient.T).T.reshape(3, *model.n_control)
    with torch.no_grad():
        model.coefficients.copy_(torch.as_tensor(coefficients, dtype=torch.float32))
    determinant = model.lattice_jacobian_determinant()
    assert determinant.numel() > 100
    np.testing.assert_allclose(determinant.detach().numpy(), np.linalg.det(np.eye(3) + gradient), atol=1e-4)


def test_lattice_determinant_agrees_with_the_dense_field_at_the_same_points():
    grid = oblique_grid()
    model = model_on(grid)  # knots every 10 voxels: the half-knot lattice is every 5th voxel
    with torch.no_grad():
        model.coefficients.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(1))
    lattice = model.lattice_jacobian_determinant().detach()
    dense = DisplacementField(model.dense_field(grid).contiguous(), grid).jacobian_determinant()
    on_lattice = dense[::5, ::5, ::5].reshape(-1)  # finite differences on 2 mm voxels: close, not equal
    assert lattice.shape == on_lattice.shape
    assert float((lattice - on_lattice).abs().max()) < 0.05
    assert float(lattice.min()) < 0.9  # the field is not trivially near the identity


def test_fold_penalty_is_zero_for_regular_fields_and_its_gradient_unfolds():
    grid = oblique_grid((31, 31, 31))
    model = model_on(grid)
    assert float(model.fold_penalty().detach()) == 0.0  # identity: det 1 everywhere
    with torch.no_grad():
        model.coefficients.normal_(0.0, 25.0, generator=torch.Generator().manual_seed(3))  # strong enough to fold
    start = float(model.lattice_jacobian_determinant().detach().min())
    assert start < 0 and float(model.fold_penalty().detach()) > 0
    optimiser = torch.optim.Adam(model.parameters, lr=0.2)
    for _ in range(200):
        optimiser.zero_grad()
        model.fold_penalty().backward()
        optimiser.step()
    assert float(model.lattice_jacobian_determinant().detach().min()) > FOLD_MARGIN - 0.1


def test_registration_with_a_fold_penalty_keeps_a_weakly_regularised_field_regular():
    fixed = as_metatensor(phantom_2d(64, seed=2))
    grid = ImageGrid.of(fixed)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    field = torch.stack((6.0 * torch.sin(xx / 64 * 4 * np.pi), 6.0 * torch.cos(yy / 64 * 4 * np.pi)))
    moving = resample(fixed, DisplacementField(field, grid), fixed)
    options = dict(model=("translation", "bspline"), levels=(2, 1), bspline_spacing_mm=6, regularisation=1e-6,
                   deformable_iterations=150)
    loose = register(fixed, moving, **options)
    held = register(fixed, moving, fold_penalty=50.0, **options)
    assert held.metric_final > held.metric_initial
    assert deformation_regularity(loose.transform)[1] > 0  # without the penalty this field folds (5 % of its grid)
    smallest, folded = deformation_regularity(held.transform)
    assert folded == 0.0 and smallest > 0.1, (smallest, folded)


def test_fold_penalty_settings_are_checked():
    assert resolve_settings("mr-mr", fold_penalty=10).fold_penalty == 10
    with pytest.raises(InputError, match="fold_penalty must be >= 0"):
        resolve_settings(None, fold_penalty=-1)
    with pytest.raises(InputError, match="bspline"):
        resolve_settings(None, model=("rigid", "dense"), fold_penalty=1)
