"""Spatial transforms in physical space: what a registration returns and what transform files hold.

Direction, the one convention of this package: a transform maps points of the **fixed** (reference)
image's world to points of the **moving** image's world, both in RAS millimetres. That is the
*resampling* direction: the moving image resampled on the fixed grid takes, at fixed point ``x``,
the moving value at ``T(x)``. ITK, SimpleITK, elastix and ANTs use the same direction (in LPS);
:mod:`monai_fusion.registration.itk_io` converts.

* :class:`AffineTransform` ``y = A x + b`` (translation, rigid, similarity and affine results),
  with the centre of rotation kept for ITK's fixed parameters (it does not change the mapping);
* :class:`DisplacementField` ``y = x + u(x)``, ``u`` sampled on a grid (linear interpolation,
  zero displacement outside the grid, as ITK's ``DisplacementFieldTransform``);
* :class:`CompositeTransform`, transforms applied first to last.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field

import numpy as np
import torch

from monai_fusion.registration.grid import ImageGrid
from monai_fusion.registration.interpolation import grid_sample_points

__all__ = [
    "SpatialTransform", "AffineTransform", "DisplacementField", "CompositeTransform", "as_transform",
    "transform_to_record", "transform_from_record", "deformation_regularity",
]


class SpatialTransform:
    """Base class: ``map_points`` takes fixed-world RAS points ``(N, D)`` to moving-world RAS points."""

    dims: int

    @property
    def is_linear(self) -> bool:
        return False

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self) -> "SpatialTransform":
        raise NotImplementedError

    def linear_part(self) -> "AffineTransform":
        """The affine closest to the start of the chain (for metadata summaries)."""
        raise NotImplementedError

    def summary(self) -> dict:
        """A JSON-friendly description for image metadata."""
        raise NotImplementedError

    def map_numpy(self, points) -> np.ndarray:
        """:meth:`map_points` for float64 numpy points ``(N, D)``."""
        return self.map_points(torch.as_tensor(np.asarray(points, dtype=np.float64))).cpu().numpy()


@dataclass
class AffineTransform(SpatialTransform):
    """``y = A x + b`` as a ``(D+1, D+1)`` homogeneous RAS matrix (float64), fixed world to moving world.

    Args:
        matrix: the homogeneous matrix.
        centre: centre of rotation (ITK's fixed parameters). Only the ITK file form uses it;
            the mapping is the matrix alone. Defaults to the origin.
        kind: the model that produced it (``"translation"``, ``"rigid"``, ``"similarity"``,
            ``"affine"``).

    Example:
        >>> t = AffineTransform.from_translation([1.0, 2.0, 3.0])
        >>> t.map_numpy([[0.0, 0.0, 0.0]]).tolist()
        [[1.0, 2.0, 3.0]]
    """

    matrix: np.ndarray
    centre: np.ndarray | None = None
    kind: str = "affine"

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        dims = self.matrix.shape[0] - 1
        if self.matrix.shape != (dims + 1, dims + 1) or dims not in (2, 3):
            raise ValueError(f"an affine transform needs a 3x3 (2D) or 4x4 (3D) matrix, got {self.matrix.shape}")
        self.centre = np.zeros(dims) if self.centre is None else np.asarray(self.centre, dtype=np.float64).reshape(dims)
        self.dims = dims

    @classmethod
    def identity(cls, dims: int) -> "AffineTransform":
        return cls(np.eye(dims + 1), kind="translation")

    @classmethod
    def from_translation(cls, offset) -> "AffineTransform":
        offset = np.asarray(offset, dtype=np.float64)
        matrix = np.eye(offset.size + 1)
        matrix[:-1, -1] = offset
        return cls(matrix, kind="translation")

    @property
    def is_linear(self) -> bool:
        return True

    @property
    def linear(self) -> np.ndarray:
        return self.matrix[: self.dims, : self.dims]

    @property
    def offset(self) -> np.ndarray:
        return self.matrix[: self.dims, self.dims]

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        matrix = torch.as_tensor(self.matrix, dtype=points.dtype, device=points.device)
        return points @ matrix[: self.dims, : self.dims].T + matrix[: self.dims, self.dims]

    def inverse(self) -> "AffineTransform":
        """The inverse, centred on the image of this transform's centre."""
        inverse = np.linalg.inv(self.matrix)
        return AffineTransform(inverse, self.matrix[: self.dims, : self.dims] @ self.centre + self.offset, self.kind)

    def compose(self, first: "AffineTransform") -> "AffineTransform":
        """``self`` after ``first``: ``x -> self(first(x))``, keeping ``first``'s centre."""
        kinds = ("translation", "rigid", "similarity", "affine")
        kind = kinds[max(kinds.index(self.kind) if self.kind in kinds else 3, kinds.index(first.kind) if first.kind in kinds else 3)]
        return AffineTransform(self.matrix @ first.matrix, first.centre, kind)

    def linear_part(self) -> "AffineTransform":
        return self

    def summary(self) -> dict:
        return {"type": "affine", "kind": self.kind, "affine_ras": self.matrix.tolist(), "centre_ras": self.centre.tolist()}


#: Voxels per slab of :meth:`DisplacementField.jacobian_determinant` (about 80 MB of float64 temporaries).
_DETERMINANT_SLAB_VOXELS = 1_000_000


@dataclass
class DisplacementField(SpatialTransform):
    """``y = x + u(x)``: ``field`` ``(D, *grid.shape)`` holds RAS displacements in mm at the voxels of ``grid``.

    Between voxels ``u`` is interpolated linearly; outside the grid (beyond half a voxel) it is zero,
    as in ITK's ``DisplacementFieldTransform``.
    """

    field: torch.Tensor
    grid: ImageGrid
    velocity: torch.Tensor | None = dataclass_field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dims = self.grid.dims
        if tuple(self.field.shape) != (self.dims, *self.grid.shape):
            raise ValueError(f"field shape {tuple(self.field.shape)} does not match grid {(self.dims, *self.grid.shape)}")

    def displacement(self, points: torch.Tensor) -> torch.Tensor:
        to_norm = torch.as_tensor(self.grid.world_to_normalised(), dtype=points.dtype, device=points.device)
        normalised = points @ to_norm[: self.dims, : self.dims].T + to_norm[: self.dims, self.dims]
        field = self.field.to(device=points.device, dtype=points.dtype)
        values = grid_sample_points(field, normalised, padding_mode="border").T
        half_voxel = 1.0 / torch.tensor([max(s - 1, 1) for s in self.grid.shape[::-1]], device=points.device, dtype=points.dtype)
        inside = (normalised.abs() <= 1 + half_voxel).all(dim=1, keepdim=True)
        return values * inside

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        return points + self.displacement(points)

    def inverse(self, iterations: int = 30) -> "DisplacementField":
        """Inverse field on the same grid: the exact ``exp(-v)`` for a velocity field, else a fixed-point solve.

        The fixed point ``v(y) = -u(y + v(y))`` converges for fields whose Jacobian stays away
        from folding (``|grad u| < 1``), which the regularised registrations produce.
        """
        if self.velocity is not None:
            from monai_fusion.registration.deformable import exponentiate_velocity

            return DisplacementField(exponentiate_velocity(-self.velocity, self.grid), self.grid, -self.velocity)
        points = _grid_points(self.grid, self.field.device, torch.float32)
        inverse = torch.zeros_like(points)
        for _ in range(iterations):
            inverse = -self.displacement(points + inverse)
        field = inverse.T.reshape(self.dims, *self.grid.shape)
        return DisplacementField(field, self.grid)

    def linear_part(self) -> AffineTransform:
        return AffineTransform.identity(self.dims)

    def jacobian_determinant(self) -> torch.Tensor:
        """``det(I + du/dx)`` at the voxels of ``grid`` (float32, ``grid.shape``, on the CPU): the local
        volume change of ``x -> x + u(x)``; at or below 0 the map folds (space turns inside out there).

        Derivatives along the grid axes by central differences (one-sided on the faces), turned into
        world derivatives with the grid's affine, so oblique and flipped grids give the same values.
        Computed in float64 in slabs of the first axis, so a full-resolution field (an adapter's, on a
        512x512x100 grid) needs tens of MB, not gigabytes. The result is kept: a field is not
        modified after it is made, and the convergence check and the summary both ask for it.
        """
        cached = getattr(self, "_determinant", None)
        if cached is not None:
            return cached
        dims, shape = self.dims, self.grid.shape
        field = self.field.detach().to(device="cpu")
        index_per_mm = torch.as_tensor(np.linalg.inv(np.asarray(self.grid.affine, dtype=np.float64)[:dims, :dims]))
        out = torch.empty(shape, dtype=torch.float32)
        slab = max(1, _DETERMINANT_SLAB_VOXELS // max(1, int(np.prod(shape[1:]))))
        for start in range(0, shape[0], slab):
            stop = min(start + slab, shape[0])
            lo, hi = max(start - 1, 0), min(stop + 1, shape[0])  # one neighbour each side for the axis-0 differences
            part = field[:, lo:hi].to(torch.float64)
            by_index = torch.zeros((*part.shape[1:], dims, dims), dtype=torch.float64)  # d u_i / d index_j
            for j in range(dims):
                if part.shape[j + 1] > 1:
                    by_index[..., :, j] = torch.stack([torch.gradient(c, dim=j)[0] for c in part], dim=-1)
            jacobian = torch.eye(dims, dtype=torch.float64) + by_index[start - lo: start - lo + stop - start] @ index_per_mm
            out[start:stop] = torch.linalg.det(jacobian).to(torch.float32)
        self._determinant = out
        return out

    def summary(self) -> dict:
        field = self.field.detach()
        magnitude = torch.sqrt(sum(component * component for component in field))  # norm(dim=0) is slow on CPU
        smallest, folded = deformation_regularity(self)
        return {"type": "displacement_field", "grid_shape": list(self.grid.shape), "grid_affine_ras": self.grid.affine.tolist(),
                "max_displacement_mm": float(magnitude.max()), "mean_displacement_mm": float(magnitude.mean()),
                "min_jacobian_determinant": smallest, "folded_fraction": folded}


def deformation_regularity(transform: SpatialTransform) -> tuple[float, float]:
    """``(smallest Jacobian determinant, folded share)`` over the displacement fields of ``transform``
    (:meth:`DisplacementField.jacobian_determinant` on each field's grid; ``(1.0, 0.0)`` for a linear one)."""
    fields = [t for t in getattr(transform, "transforms", [transform]) if isinstance(t, DisplacementField)]
    if not fields:
        return 1.0, 0.0
    determinants = [field.jacobian_determinant() for field in fields]
    return (min(float(d.min()) for d in determinants),
            max(float((d <= 0).to(torch.float64).mean()) for d in determinants))


@dataclass
class CompositeTransform(SpatialTransform):
    """Transforms applied in order: ``x -> transforms[-1](... transforms[0](x))``."""

    transforms: list

    def __post_init__(self) -> None:
        flat = []
        for t in self.transforms:
            flat.extend(t.transforms if isinstance(t, CompositeTransform) else [t])
        if not flat:
            raise ValueError("a composite transform needs at least one transform")
        self.transforms = flat
        self.dims = flat[0].dims

    @property
    def is_linear(self) -> bool:
        return all(t.is_linear for t in self.transforms)

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            points = t.map_points(points)
        return points

    def inverse(self) -> "CompositeTransform":
        return CompositeTransform([t.inverse() for t in reversed(self.transforms)])

    def linear_part(self) -> AffineTransform:
        linear = [t for t in self.transforms if t.is_linear]
        result = AffineTransform.identity(self.dims)
        for t in linear:
            result = t.compose(result)
        return result

    def summary(self) -> dict:
        return {"type": "composite", "transforms": [t.summary() for t in self.transforms]}


def _grid_points(grid: ImageGrid, device, dtype) -> torch.Tensor:
    axes = [torch.arange(s, device=device, dtype=torch.float64) for s in grid.shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, grid.dims)
    affine = torch.as_tensor(grid.affine, device=device)
    return (index @ affine[: grid.dims, : grid.dims].T + affine[: grid.dims, grid.dims]).to(dtype)


def as_transform(value, dims: int | None = None) -> SpatialTransform:
    """A :class:`SpatialTransform` from a transform, a result object or a ``(D+1, D+1)`` RAS matrix."""
    if isinstance(value, SpatialTransform):
        return value
    if hasattr(value, "transform") and isinstance(value.transform, SpatialTransform):
        return value.transform
    matrix = np.asarray(torch.as_tensor(value, dtype=torch.float64).cpu().numpy() if isinstance(value, torch.Tensor) else value,
                        dtype=np.float64)
    if dims is not None and matrix.shape == (4, 4) and dims == 2:
        matrix = matrix[np.ix_([0, 1, 3], [0, 1, 3])]
    return AffineTransform(matrix)


def transform_to_record(transform: SpatialTransform) -> list[dict]:
    """The transform as a list of plain records (tensors and strings), for MONAI's transform trace.

    Each record is ``{"affine": (D+1, D+1) tensor}`` or ``{"field": (D, ...) tensor,
    "field_affine": tensor[, "velocity": tensor]}``, in the order the parts are applied.
    """
    parts = transform.transforms if isinstance(transform, CompositeTransform) else [transform]
    records = []
    for part in parts:
        if isinstance(part, AffineTransform):
            records.append({"affine": torch.as_tensor(part.matrix), "centre": torch.as_tensor(part.centre), "kind": part.kind})
        elif isinstance(part, DisplacementField):
            record = {"field": part.field.detach().cpu(), "field_affine": torch.as_tensor(part.grid.affine)}
            if part.velocity is not None:
                record["velocity"] = part.velocity.detach().cpu()
            records.append(record)
        else:
            raise TypeError(f"cannot record a {type(part).__name__}")
    return records


def transform_from_record(records: list[dict]) -> SpatialTransform:
    """Inverse of :func:`transform_to_record`."""
    parts: list[SpatialTransform] = []
    for record in records:
        if "affine" in record:
            parts.append(AffineTransform(np.asarray(torch.as_tensor(record["affine"]).cpu().numpy(), dtype=np.float64),
                                         np.asarray(torch.as_tensor(record["centre"]).cpu().numpy()), str(record.get("kind", "affine"))))
        else:
            field = torch.as_tensor(record["field"])
            affine = np.asarray(torch.as_tensor(record["field_affine"]).cpu().numpy(), dtype=np.float64)
            grid = ImageGrid(affine, tuple(field.shape[1:]))
            velocity = record.get("velocity")
            parts.append(DisplacementField(field, grid, None if velocity is None else torch.as_tensor(velocity)))
    return parts[0] if len(parts) == 1 else CompositeTransform(parts)
