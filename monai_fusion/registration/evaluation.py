"""Tools to measure registrations: known transforms, moved images and target registration error.

Used by the tests and ``benchmarks/registration.py``; useful to anyone validating a registration
on their own data. Conventions as everywhere in the package: transforms map fixed world points
to moving world points (RAS mm).

A *known* transform ``K`` is applied to a moving image so that the moved image shows at world
point ``x`` what the original showed at ``K(x)`` (:func:`move_image`); registering a fixed image
to the moved image should then give ``K^-1`` composed with whatever registering it to the original
gives. :func:`recovery_error` measures exactly that, which stays meaningful when the original pair
is itself only approximately aligned.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.registration.grid import ImageGrid
from monai_fusion.registration.spatial import AffineTransform, SpatialTransform, as_transform

__all__ = [
    "random_linear_transform",
    "move_image",
    "foreground_points",
    "recovery_error",
    "point_error",
    "downsample",
]


def _rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def random_linear_transform(seed: int, kind: str = "rigid", centre=(0.0, 0.0, 0.0), max_degrees: float = 15.0,
                            max_mm: float = 20.0, max_scale_shear: float = 0.08, dims: int = 3) -> AffineTransform:
    """A random rigid or affine transform about ``centre``: rotation angle uniform in
    ``[max_degrees / 3, max_degrees]`` about a random axis (in 2D, a signed angle), translation of
    length uniform in ``[max_mm / 3, max_mm]`` in a random direction; ``"affine"`` adds scales and
    shears uniform in ``[-max_scale_shear, max_scale_shear]`` (applied before the rotation).
    """
    rng = np.random.default_rng(seed)
    centre = np.asarray(centre, dtype=np.float64)[:dims]
    angle = np.deg2rad(rng.uniform(max_degrees / 3, max_degrees))
    if dims == 3:
        axis = rng.normal(size=3)
        rotation = _rotation_matrix(axis / np.linalg.norm(axis) * angle)
    else:
        angle *= rng.choice([-1.0, 1.0])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    direction = rng.normal(size=dims)
    translation = direction / np.linalg.norm(direction) * rng.uniform(max_mm / 3, max_mm)
    linear = rotation
    if kind == "affine":
        linear = rotation @ (np.eye(dims) + rng.uniform(-max_scale_shear, max_scale_shear, (dims, dims)))
    elif kind != "rigid":
        raise ValueError(f"kind must be 'rigid' or 'affine', not {kind!r}")
    matrix = np.eye(dims + 1)
    matrix[:dims, :dims] = linear
    matrix[:dims, dims] = centre - linear @ centre + translation
    return AffineTransform(matrix, centre, kind)


def move_image(image: MetaTensor, known, pad: int = 0, method: str = "bspline") -> MetaTensor:
    """The image moved by ``known``: at world ``x`` it shows what ``image`` showed at ``known(x)``.

    Args:
        image: channel-first MetaTensor.
        known: the transform (or RAS matrix).
        pad: voxels added on every side of the grid, so that nothing moves out of the field of view.
        method: ``"bspline"`` (cubic B-spline resampling with SimpleITK, zero outside) or
            ``"affine"`` (no resampling: the image keeps its voxels and gets the affine
            ``K^-1 A``; exact, for linear transforms).
    """
    known = as_transform(known, image.ndim - 1)
    affine = torch.as_tensor(image.affine, dtype=torch.float64).numpy()
    dims = image.ndim - 1
    if method == "affine":
        if not known.is_linear:
            raise ValueError("method='affine' needs a linear transform")
        full = np.eye(4)
        inverse = np.linalg.inv(known.linear_part().matrix)
        full[:dims, :dims], full[:dims, 3] = inverse[:dims, :dims], inverse[:dims, dims]
        return MetaTensor(image.as_tensor().clone(), affine=torch.as_tensor(full @ affine), meta={
            k: v for k, v in image.meta.items() if k not in ("affine", "original_affine")})
    if method != "bspline":
        raise ValueError(f"method must be 'bspline' or 'affine', not {method!r}")
    import SimpleITK as sitk

    from monai_fusion.registration.itk_io import grid_from_sitk, image_to_sitk, transform_to_sitk

    grid = ImageGrid.of(image)
    shift = np.eye(dims + 1)
    shift[:dims, dims] = -pad
    target = ImageGrid(grid.affine @ shift, tuple(s + 2 * pad for s in grid.shape))
    reference = image_to_sitk(torch.zeros(target.shape), target)
    source = image_to_sitk(torch.as_tensor(image[0]), grid)
    moved = sitk.Resample(source, reference, transform_to_sitk(known), sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(moved).transpose(*range(dims - 1, -1, -1))
    out_grid = grid_from_sitk(moved)
    full = np.eye(4)
    if dims == 3:
        full = out_grid.affine
    else:
        full[:2, :2], full[:2, 3] = out_grid.affine[:2, :2], out_grid.affine[:2, 2]
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array))[None], affine=torch.as_tensor(full))


def foreground_points(image, threshold: float = 0.3, max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """World coordinates ``(N, D)`` of voxels above ``threshold`` times the image maximum (e.g. brain voxels)."""
    data = torch.as_tensor(image)[0]
    grid = ImageGrid.of(image)
    index = torch.nonzero(data > threshold * float(data.max())).numpy().astype(np.float64)
    if max_points is not None and len(index) > max_points:
        index = index[np.random.default_rng(seed).choice(len(index), max_points, replace=False)]
    return grid.index_to_world(index)


def point_error(transform, reference, points) -> np.ndarray:
    """``|transform(p) - reference(p)|`` (mm) for each point."""
    points = np.asarray(points, dtype=np.float64)
    a = as_transform(transform).map_numpy(points)
    b = as_transform(reference).map_numpy(points)
    return np.linalg.norm(a - b, axis=1)


def recovery_error(found: SpatialTransform, known: SpatialTransform, unmoved: SpatialTransform, points) -> np.ndarray:
    """Target registration error (mm per point) of recovering ``known``.

    ``found`` registers the fixed image to the moved image, ``unmoved`` to the original one; a
    perfect recovery has ``known(found(p)) == unmoved(p)`` for every fixed point ``p``.
    """
    points = np.asarray(points, dtype=np.float64)
    through = as_transform(known).map_numpy(as_transform(found).map_numpy(points))
    return np.linalg.norm(through - as_transform(unmoved).map_numpy(points), axis=1)


def downsample(image: MetaTensor, factor: int) -> MetaTensor:
    """Average-pool an image by an integer factor along every axis (with the matching affine)."""
    dims = image.ndim - 1
    pool = torch.nn.functional.avg_pool3d if dims == 3 else torch.nn.functional.avg_pool2d
    data = pool(image.as_tensor()[None].float(), kernel_size=factor, stride=factor)[0]
    affine = torch.as_tensor(image.affine, dtype=torch.float64).clone()
    step = torch.eye(4, dtype=torch.float64)
    for axis in range(dims):
        step[axis, axis] = factor
        step[axis, 3] = (factor - 1) / 2.0
    return MetaTensor(data, affine=affine @ step, meta={k: v for k, v in image.meta.items()
                                                        if k not in ("affine", "original_affine", "spatial_shape")})
