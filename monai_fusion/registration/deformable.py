"""Deformable models: a cubic B-spline control-point grid, a dense displacement field, and a
diffeomorphic field (stationary velocity integrated by scaling and squaring).

Each deformable stage sits on top of the linear result ``L`` of the earlier stages, which it does
not change: ``T(x) = L(x + u(x))`` with ``u`` a displacement in the fixed world (mm, RAS). The
grids are aligned with the fixed image's voxel axes and cover its whole field of view.

* :class:`BSplineModel`: ``u(x) = sum_k c_k B((x - p_k) / h)`` with cubic B-splines ``B`` and
  control points every ``h`` mm; regulariser: the bending energy (squared second derivatives),
  computed exactly at the control points from 3-tap kernels.
* :class:`DenseFieldModel`: ``u`` on a grid every ``field_spacing_mm`` mm, linearly interpolated;
  regulariser: diffusion (squared first differences). With ``diffeomorphic=True`` the grid holds
  a velocity ``v`` and ``u = exp(v)`` (scaling and squaring), invertible by ``exp(-v)``.

Models expose what :func:`~monai_fusion.registration.optimise.optimise_level` needs:
``parameters``, ``prepare(points)`` (per-level precomputation for the sample points),
``map_points(points)``, ``regulariser()`` and ``result()``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from monai_fusion.registration.grid import ImageGrid, SpatialImage
from monai_fusion.registration.interpolation import sample_linear
from monai_fusion.registration.mattes import cubic_window_weights
from monai_fusion.registration.pyramid import pool_factors
from monai_fusion.registration.spatial import AffineTransform, CompositeTransform, DisplacementField

__all__ = ["BSplineModel", "DenseFieldModel", "exponentiate_velocity", "SQUARING_STEPS", "FOLD_MARGIN"]

#: Scaling-and-squaring steps: the velocity is divided by 2**7 before being composed with itself.
SQUARING_STEPS = 7

#: Jacobian determinant below which :meth:`BSplineModel.fold_penalty` starts to count (1 = volume kept).
FOLD_MARGIN = 0.5


def _cubic(u: np.ndarray) -> np.ndarray:
    a = np.abs(u)
    return np.where(a < 1, (4 - 6 * a**2 + 3 * a**3) / 6, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def _cubic_slope(u: np.ndarray) -> np.ndarray:
    """Derivative of :func:`_cubic`."""
    a = np.abs(u)
    return np.sign(u) * np.where(a < 1, (-12 * a + 9 * a**2) / 6, np.where(a < 2, -((2 - a) ** 2) / 2, 0.0))


def _world_to_index(grid: ImageGrid, points: torch.Tensor) -> torch.Tensor:
    inverse = torch.as_tensor(grid.inverse_affine, dtype=points.dtype, device=points.device)
    return points @ inverse[: grid.dims, : grid.dims].T + inverse[: grid.dims, grid.dims]


def _apply_linear(linear: AffineTransform, points: torch.Tensor) -> torch.Tensor:
    return linear.map_points(points)


class BSplineModel:
    """Cubic B-spline free-form deformation on top of a fixed linear transform (see module docstring)."""

    name = "bspline"

    def __init__(self, fixed: SpatialImage, spacing_mm: float, linear: AffineTransform, device=None) -> None:
        self.grid = fixed.grid
        self.linear = linear
        self.spacing_mm = float(spacing_mm)
        self.knot_step = self.spacing_mm / self.grid.spacing  # control spacing in fixed voxels, per axis
        self.n_control = tuple(int(math.floor((s - 1) / h)) + 4 for s, h in zip(self.grid.shape, self.knot_step))
        self.coefficients = torch.zeros((self.grid.dims, *self.n_control), device=device, requires_grad=True)
        self._prepared = None
        self._lattice = None  # see _lattice_bases

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.coefficients]

    def _control_coordinates(self, index: torch.Tensor) -> torch.Tensor:
        step = torch.as_tensor(self.knot_step, dtype=index.dtype, device=index.device)
        return index / step + 1.0  # control point k sits at fixed index (k - 1) * step

    def prepare(self, points: torch.Tensor) -> None:
        """Per-sample control-point indices and tensor-product weights ``(N, 4**D)``."""
        dims = self.grid.dims
        u = self._control_coordinates(_world_to_index(self.grid, points))
        upper = torch.tensor([n - 1 for n in self.n_control], device=points.device)
        weights, flat = None, None
        strides = [int(np.prod(self.n_control[a + 1:])) for a in range(dims)]
        for axis in range(dims):
            first, w = cubic_window_weights(u[:, axis])
            w = w.T  # (N, 4)
            idx = (first[:, None] + torch.arange(4, device=points.device)).clamp(0, int(upper[axis])) * strides[axis]
            if weights is None:
                weights, flat = w, idx
            else:
                weights = (weights[:, :, None] * w[:, None, :]).reshape(points.shape[0], -1)
                flat = (flat[:, :, None] + idx[:, None, :]).reshape(points.shape[0], -1)
        self._prepared = (points, weights.detach(), flat)

    def displacement(self, points: torch.Tensor) -> torch.Tensor:
        if self._prepared is None or self._prepared[0] is not points:
            self.prepare(points)
        _, weights, flat = self._prepared
        coefficients = self.coefficients.reshape(self.grid.dims, -1)
        return (coefficients[:, flat] * weights).sum(dim=-1).T

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        return _apply_linear(self.linear, points + self.displacement(points))

    def regulariser(self) -> torch.Tensor:
        """Bending energy at the control points, with derivatives per control spacing (mm)."""
        return bending_energy(self.coefficients)

    def _lattice_bases(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Cubic B-spline values and index derivatives at every knot and half-knot inside the grid, per axis,
        and the matrix from fixed-index to world derivatives."""
        if self._lattice is None:
            values, slopes = [], []
            for axis in range(self.grid.dims):
                step = float(self.knot_step[axis])
                positions = np.arange(0.0, self.grid.shape[axis] - 1 + 1e-9, step / 2.0)  # fixed voxel indices
                u = positions[:, None] / step + 1.0 - np.arange(self.n_control[axis])[None, :]
                values.append(torch.as_tensor(_cubic(u), dtype=torch.float32, device=self.coefficients.device))
                slopes.append(torch.as_tensor(_cubic_slope(u) / step, dtype=torch.float32, device=self.coefficients.device))
            to_world = np.linalg.inv(self.grid.affine[: self.grid.dims, : self.grid.dims])  # d index / d world
            self._lattice = (values, slopes, torch.as_tensor(to_world, dtype=torch.float32, device=self.coefficients.device))
        return self._lattice

    def lattice_jacobian_determinant(self) -> torch.Tensor:
        """``det(I + du/dx)`` at every knot and half-knot of the control grid inside the image (differentiable).

        A B-spline field is smooth between knots, so its determinant on this lattice (half the control
        spacing) tracks its extremes closely at a cost of a few thousand points instead of the voxels.
        """
        values, slopes, to_world = self._lattice_bases()
        dims = self.grid.dims
        columns = []
        for derivative_axis in range(dims):  # d u / d index_a, all components at once
            field = self.coefficients
            for axis in range(dims):
                basis = slopes[axis] if axis == derivative_axis else values[axis]
                field = torch.movedim(torch.tensordot(field, basis, dims=([axis + 1], [1])), -1, axis + 1)
            columns.append(field.reshape(dims, -1))
        by_index = torch.stack(columns, dim=-1)  # (D components, P points, D index axes)
        by_world = torch.einsum("cpa,aw->pcw", by_index, to_world)
        return torch.linalg.det(torch.eye(dims, device=by_world.device) + by_world)

    def fold_penalty(self) -> torch.Tensor:
        """Mean of ``relu(FOLD_MARGIN - det J)**2`` over :meth:`lattice_jacobian_determinant`'s lattice: zero for a
        field whose local volume change stays above the margin, growing as it approaches folding (det <= 0)."""
        return torch.relu(FOLD_MARGIN - self.lattice_jacobian_determinant()).pow(2).mean()

    def dense_field(self, grid: ImageGrid) -> torch.Tensor:
        """``u`` sampled at the voxels of ``grid`` (a pooled version of the fixed grid), ``(D, *grid.shape)``."""
        inverse = np.linalg.inv(self.grid.affine) @ grid.affine  # grid index -> fixed index (axis-aligned)
        field = self.coefficients.detach()
        for axis in range(self.grid.dims):
            positions = inverse[axis, axis] * np.arange(grid.shape[axis]) + inverse[axis, -1]
            u = positions / self.knot_step[axis] + 1.0
            basis = _cubic(u[:, None] - np.arange(self.n_control[axis])[None, :])
            basis_t = torch.as_tensor(basis, dtype=field.dtype, device=field.device)
            field = torch.movedim(torch.tensordot(field, basis_t, dims=([axis + 1], [1])), -1, axis + 1)
        return field

    def result(self) -> CompositeTransform:
        factors = pool_factors(self.grid, self.spacing_mm / 5.0)
        grid = self.grid.shrunk(factors) if any(f > 1 for f in factors) else self.grid
        return CompositeTransform([DisplacementField(self.dense_field(grid).contiguous(), grid), self.linear])


def bending_energy(coefficients: torch.Tensor) -> torch.Tensor:
    """Mean squared Hessian (Frobenius) of a cubic B-spline at its interior control points."""
    dims = coefficients.ndim - 1
    value = torch.tensor([1.0, 4.0, 1.0]) / 6.0
    first = torch.tensor([-0.5, 0.0, 0.5])
    second = torch.tensor([1.0, -2.0, 1.0])
    conv = F.conv3d if dims == 3 else F.conv2d
    x = coefficients[:, None]
    total = torch.zeros((), device=coefficients.device)
    for a, b in itertools.combinations_with_replacement(range(dims), 2):
        kernels = [value] * dims
        if a == b:
            kernels[a] = second
        else:
            kernels[a], kernels[b] = first, first
        kernel = kernels[0]
        for k in kernels[1:]:
            kernel = kernel[..., None] * k
        kernel = kernel.to(coefficients.device)[None, None]
        term = conv(x, kernel).pow(2).mean() * dims
        total = total + (term if a == b else 2 * term)
    return total


class DenseFieldModel:
    """A displacement (or, ``diffeomorphic=True``, velocity) field on a grid every ``field_spacing_mm`` mm."""

    def __init__(self, fixed: SpatialImage, field_spacing_mm: float, linear: AffineTransform, diffeomorphic: bool = False,
                 device=None) -> None:
        factors = pool_factors(fixed.grid, field_spacing_mm)
        self.grid = fixed.grid.shrunk(factors) if any(f > 1 for f in factors) else fixed.grid
        self.linear = linear
        self.diffeomorphic = diffeomorphic
        self.name = "diffeomorphic" if diffeomorphic else "dense"
        self.field = torch.zeros((self.grid.dims, *self.grid.shape), device=device, requires_grad=True)
        self._prepared = None

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.field]

    def prepare(self, points: torch.Tensor) -> None:
        self._prepared = (points, _world_to_index(self.grid, points))

    def displacement_field(self) -> torch.Tensor:
        return exponentiate_velocity(self.field, self.grid) if self.diffeomorphic else self.field

    def displacement(self, points: torch.Tensor) -> torch.Tensor:
        if self._prepared is None or self._prepared[0] is not points:
            self.prepare(points)
        index = self._prepared[1]
        field = self.displacement_field()
        return torch.stack([sample_linear(component, index) for component in field], dim=1)

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        return _apply_linear(self.linear, points + self.displacement(points))

    def regulariser(self) -> torch.Tensor:
        """Diffusion: mean squared first differences of the field between neighbours, per grid step (mm^2 / step^2)."""
        total = torch.zeros((), device=self.field.device)
        for axis in range(1, self.field.ndim):
            total = total + torch.diff(self.field, dim=axis).pow(2).mean()
        return total

    def result(self) -> CompositeTransform:
        with torch.no_grad():
            displacement = self.displacement_field().detach().contiguous()
        velocity = self.field.detach().clone() if self.diffeomorphic else None
        return CompositeTransform([DisplacementField(displacement, self.grid, velocity), self.linear])


def exponentiate_velocity(velocity: torch.Tensor, grid: ImageGrid, steps: int = SQUARING_STEPS) -> torch.Tensor:
    """Displacement ``exp(v) - id`` of a stationary velocity field (mm on ``grid``) by scaling and squaring."""
    dims = grid.dims
    axes = [torch.arange(s, device=velocity.device, dtype=velocity.dtype) for s in grid.shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, dims)
    to_index = torch.as_tensor(grid.inverse_affine[:dims, :dims], dtype=velocity.dtype, device=velocity.device)
    field = velocity / (2**steps)
    for _ in range(steps):
        flat = field.reshape(dims, -1).T
        moved = index + flat @ to_index.T  # displacements in mm -> index offsets
        field = field + torch.stack([sample_linear(component, moved) for component in field], dim=1).T.reshape(field.shape)
    return field
