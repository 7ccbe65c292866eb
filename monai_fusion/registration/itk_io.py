"""ITK transform files and SimpleITK transforms <-> our transforms: LPS/RAS and centres, in one place.

Meaning of a file, for every tool involved:

* An ITK transform file (``.tfm``/``.txt``, ``.mat``, ``.h5``), and so SimpleITK, elastix and ANTs,
  maps points of the **fixed** image to the **moving** image, in **LPS** millimetres: the
  *resampling* direction, in which the moving image is resampled on the fixed grid. Our
  transforms have the same direction in RAS, so the conversion is only the change of basis
  ``F = diag(-1, -1, 1)``: ``A_lps = F A_ras F``, ``b_lps = F b_ras``, vectors ``u_lps = F u_ras``.
  2D transforms flip x and y the same way (as :mod:`monai_fusion.io.geometry` does for 2D images).
* Linear transforms are written as ``AffineTransform_double_D_D``: ITK stores ``y = M (x - c) + c + t``
  with the centre ``c`` as the *fixed parameters*; we write our centre of rotation (in LPS)
  and the translation ``t = A c + b - c`` that makes the mapping exact whatever the centre.
* 3D Slicer reads these files into a transform node as its "transform from parent" (the
  resampling direction) and displays the inverse, "to parent" (the modelling direction, moving to
  fixed): put the *moving* image under the loaded transform and it appears aligned with the
  fixed image. Slicer's matrix display is therefore the inverse of ``affine_ras``.
* Deformable results are a displacement field followed by a linear transform, ``y = L(x + u(x))``.
  In ``.h5`` they are written as an ITK ``CompositeTransform`` (ITK applies the transform added
  *last* first, so the field is added after ``L``). As an image (``.nii.gz``, ``.nrrd``,
  ``.mha``) the whole chain is sampled into one displacement field ``T(x) - x`` on the field's
  grid, vectors in LPS (ITK's convention for displacement-field images; Slicer loads it as a
  grid transform, ANTs uses it as a warp).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from monai_fusion.errors import InputError, OutputError
from monai_fusion.io.atomic import atomic_file, prepare_parent
from monai_fusion.io.geometry import LPS_TO_RAS
from monai_fusion.registration.grid import ImageGrid
from monai_fusion.registration.spatial import AffineTransform, CompositeTransform, DisplacementField, SpatialTransform

__all__ = [
    "transform_to_sitk",
    "transform_from_sitk",
    "write_transform",
    "read_transform",
    "ras_to_lps_matrix",
    "lps_to_ras_matrix",
    "grid_to_sitk_geometry",
    "grid_from_sitk",
    "image_to_sitk",
    "LINEAR_SUFFIXES",
    "FIELD_SUFFIXES",
]

LINEAR_SUFFIXES = (".tfm", ".txt", ".mat")
COMPOSITE_SUFFIXES = (".h5", ".hdf5")
FIELD_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def _flip(dims: int) -> np.ndarray:
    """The LPS<->RAS change of basis for ``dims`` spatial dimensions (homogeneous)."""
    return LPS_TO_RAS if dims == 3 else np.diag([-1.0, -1.0, 1.0])


def ras_to_lps_matrix(matrix: np.ndarray) -> np.ndarray:
    """A homogeneous point transform expressed in LPS instead of RAS (its own inverse operation)."""
    flip = _flip(np.asarray(matrix).shape[0] - 1)
    return flip @ np.asarray(matrix, dtype=np.float64) @ flip


lps_to_ras_matrix = ras_to_lps_matrix


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in (".nii.gz",):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def grid_to_sitk_geometry(grid: ImageGrid) -> tuple[tuple, tuple, tuple]:
    """``(origin, spacing, direction)`` in LPS for a SimpleITK image on ``grid``."""
    lps = _flip(grid.dims) @ grid.affine
    spacing = np.linalg.norm(lps[: grid.dims, : grid.dims], axis=0)
    direction = lps[: grid.dims, : grid.dims] / spacing[None, :]
    return (tuple(float(v) for v in lps[: grid.dims, grid.dims]), tuple(float(v) for v in spacing),
            tuple(float(v) for v in direction.ravel()))


def grid_from_sitk(image) -> ImageGrid:
    """The RAS :class:`ImageGrid` of a SimpleITK image (2D or 3D)."""
    dims = image.GetDimension()
    lps = np.eye(dims + 1)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dims, dims)
    lps[:dims, :dims] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    lps[:dims, dims] = image.GetOrigin()
    return ImageGrid(_flip(dims) @ lps, tuple(image.GetSize()))


def image_to_sitk(data: torch.Tensor, grid: ImageGrid, pixel_type=None):
    """A SimpleITK image (float32 by default) of a ``(*spatial)`` tensor on ``grid``."""
    import SimpleITK as sitk

    array = data.detach().cpu().numpy()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(*range(array.ndim - 1, -1, -1))))
    image = sitk.Cast(image, pixel_type if pixel_type is not None else sitk.sitkFloat32)
    origin, spacing, direction = grid_to_sitk_geometry(grid)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


# ---------------------------------------------------------------------------------------------- to SimpleITK


def _affine_to_sitk(transform: AffineTransform):
    import SimpleITK as sitk

    dims = transform.dims
    lps = ras_to_lps_matrix(transform.matrix)
    centre = (_flip(dims)[:dims, :dims] @ transform.centre)
    linear, offset = lps[:dims, :dims], lps[:dims, dims]
    result = sitk.AffineTransform(dims)
    result.SetMatrix(tuple(float(v) for v in linear.ravel()))
    result.SetCenter(tuple(float(v) for v in centre))
    result.SetTranslation(tuple(float(v) for v in linear @ centre + offset - centre))
    return result


def _field_to_sitk_image(field: torch.Tensor, grid: ImageGrid):
    import SimpleITK as sitk

    dims = grid.dims
    flip = _flip(dims)[:dims, :dims]
    vectors = np.einsum("ij,j...->i...", flip, field.detach().cpu().to(torch.float64).numpy())
    array = np.moveaxis(vectors, 0, -1).transpose(*range(dims - 1, -1, -1), dims)  # (K, J, I, D)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=True)
    origin, spacing, direction = grid_to_sitk_geometry(grid)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def transform_to_sitk(transform: SpatialTransform):
    """A SimpleITK transform with the same meaning (fixed -> moving, LPS)."""
    import SimpleITK as sitk

    if isinstance(transform, AffineTransform):
        return _affine_to_sitk(transform)
    if isinstance(transform, DisplacementField):
        return sitk.DisplacementFieldTransform(sitk.Cast(_field_to_sitk_image(transform.field, transform.grid),
                                                         sitk.sitkVectorFloat64))
    if isinstance(transform, CompositeTransform):
        composite = sitk.CompositeTransform(transform.dims)
        for part in reversed(transform.transforms):  # ITK applies the last added first
            composite.AddTransform(transform_to_sitk(part))
        return composite
    raise InputError(f"cannot convert a {type(transform).__name__} to an ITK transform")


# -------------------------------------------------------------------------------------------- from SimpleITK


def _linear_from_sitk(tx, dims: int) -> AffineTransform:
    """Any linear ITK transform (Euler, versor, similarity, affine, translation, scale...) as an affine."""
    origin = np.asarray(tx.TransformPoint((0.0,) * dims), dtype=np.float64)
    linear = np.stack([np.asarray(tx.TransformPoint(tuple(np.eye(dims)[i])), dtype=np.float64) - origin for i in range(dims)], 1)
    lps = np.eye(dims + 1)
    lps[:dims, :dims] = linear
    lps[:dims, dims] = origin
    centre = np.asarray(tx.GetCenter(), dtype=np.float64) if hasattr(tx, "GetCenter") else np.zeros(dims)
    kind = {"TranslationTransform": "translation", "Euler3DTransform": "rigid", "Euler2DTransform": "rigid",
            "VersorRigid3DTransform": "rigid", "Similarity3DTransform": "similarity",
            "Similarity2DTransform": "similarity"}.get(tx.GetName(), "affine")
    return AffineTransform(lps_to_ras_matrix(lps), _flip(dims)[:dims, :dims] @ centre, kind)


def _field_from_sitk_image(image) -> DisplacementField:
    import SimpleITK as sitk

    dims = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != dims:
        raise InputError(f"a displacement field needs {dims} components per voxel, this image has "
                         f"{image.GetNumberOfComponentsPerPixel()}; give an ITK displacement field")
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # (K, J, I, D)
    vectors = np.moveaxis(array.transpose(*range(dims - 1, -1, -1), dims), -1, 0)  # (D, I, J, K)
    vectors = np.einsum("ij,j...->i...", _flip(dims)[:dims, :dims], vectors)
    return DisplacementField(torch.from_numpy(np.ascontiguousarray(vectors)).to(torch.float32), grid_from_sitk(image))


def transform_from_sitk(tx) -> SpatialTransform:
    """Our transform for a SimpleITK transform (linear types, displacement fields, B-splines, composites)."""
    import SimpleITK as sitk

    if hasattr(tx, "Downcast"):
        tx = tx.Downcast()
    dims = tx.GetDimension()
    name = tx.GetName()
    if name == "CompositeTransform":
        composite = sitk.CompositeTransform(tx)
        parts = [transform_from_sitk(composite.GetNthTransform(i)) for i in range(composite.GetNumberOfTransforms())]
        return parts[0] if len(parts) == 1 else CompositeTransform(list(reversed(parts)))
    if name == "DisplacementFieldTransform":
        return _field_from_sitk_image(sitk.DisplacementFieldTransform(tx).GetDisplacementField())
    if name == "BSplineTransform":
        return _bspline_to_field(sitk.BSplineTransform(tx))
    if tx.IsLinear():
        return _linear_from_sitk(tx, dims)
    raise InputError(f"ITK transform type {name} is not supported; convert it to an affine, displacement field or B-spline")


def _bspline_to_field(tx) -> DisplacementField:
    """A B-spline transform sampled as a displacement field on its domain (4 samples per mesh cell)."""
    import SimpleITK as sitk

    dims = tx.GetDimension()
    mesh = np.asarray(tx.GetTransformDomainMeshSize())
    physical = np.asarray(tx.GetTransformDomainPhysicalDimensions(), dtype=np.float64)
    size = [int(m * 4 + 1) for m in mesh]
    spacing = [float(p / (s - 1)) for p, s in zip(physical, size)]
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    converter.SetSize(size)
    converter.SetOutputOrigin(tx.GetTransformDomainOrigin())
    converter.SetOutputSpacing(spacing)
    converter.SetOutputDirection(tx.GetTransformDomainDirection())
    return _field_from_sitk_image(converter.Execute(tx))


# -------------------------------------------------------------------------------------------------- files


def write_transform(transform, path: str | os.PathLike, reference=None) -> Path:
    """Write ``transform`` (or a registration result's) as an ITK transform file.

    Args:
        transform: a transform or a :class:`~monai_fusion.registration.result.RegistrationResult`.
        path: ``.tfm``/``.txt``/``.mat`` (linear only), ``.h5`` (anything), or ``.nii.gz``,
            ``.nrrd``, ``.mha`` for a displacement-field image.
        reference: for a displacement-field image of a *linear* transform, the grid to sample it on
            (an image, an ``ImageGrid`` or ``(affine, shape)``); deformable transforms use their
            own field grid unless one is given.

    Returns:
        The path written.

    Raises:
        OutputError: a format that cannot hold this transform, or an unwritable path.
    """
    import SimpleITK as sitk

    from monai_fusion.registration.spatial import as_transform

    transform = as_transform(transform)
    path = prepare_parent(path)
    suffix = _suffix(path)
    if suffix in FIELD_SUFFIXES:
        image = _sample_displacement_image(transform, reference)
        with atomic_file(path) as tmp:
            sitk.WriteImage(image, str(tmp))
        return path
    if suffix in LINEAR_SUFFIXES and not transform.is_linear:
        raise OutputError(f"{path.name}: a deformable transform cannot be written as {suffix}; use .h5 or a "
                          "displacement-field image (.nii.gz, .nrrd, .mha)")
    if suffix not in LINEAR_SUFFIXES + COMPOSITE_SUFFIXES:
        raise OutputError(f"{path.name}: unknown transform file type {suffix!r}; use .tfm, .txt, .mat, .h5, .nii.gz, .nrrd or .mha")
    itk_transform = transform_to_sitk(transform.linear_part() if isinstance(transform, CompositeTransform)
                                      and transform.is_linear else transform)
    with atomic_file(path) as tmp:
        try:
            sitk.WriteTransform(itk_transform, str(tmp))
        except RuntimeError as err:
            raise OutputError(f"cannot write {path.name}: {str(err).strip().splitlines()[-1][:200]}") from None
    return path


def _sample_displacement_image(transform: SpatialTransform, reference):
    """``T(x) - x`` sampled on the reference grid (default: the transform's field grid), as an LPS vector image."""
    from monai_fusion.registration.resample import reference_grid
    from monai_fusion.registration.spatial import _grid_points

    if reference is not None:
        grid = reference_grid(reference)
    else:
        fields = [t for t in getattr(transform, "transforms", [transform]) if isinstance(t, DisplacementField)]
        if not fields:
            raise OutputError("a linear transform has no grid of its own: give reference= (the fixed image) "
                              "to write it as a displacement-field image, or write a .tfm")
        grid = fields[0].grid
    points = _grid_points(grid, "cpu", torch.float64)
    displacement = (transform.map_points(points) - points).T.reshape(grid.dims, *grid.shape)
    return _field_to_sitk_image(displacement, grid)


def read_transform(path: str | os.PathLike) -> SpatialTransform:
    """Read an ITK (``.tfm``/``.txt``/``.mat``/``.h5``), ANTs (``.mat``/warp image) or elastix
    (``TransformParameters.*.txt``, linear) transform file, or a displacement-field image.

    Returns:
        The transform in our convention (fixed world -> moving world, RAS).

    Raises:
        InputError: missing, unreadable or unsupported file.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"transform file {path} does not exist; check the path")
    suffix = _suffix(path)
    if suffix in FIELD_SUFFIXES:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise InputError(f"{path.name} cannot be read as a displacement field ({_first_line(err)})") from None
        return _field_from_sitk_image(image)
    if suffix == ".txt" and _is_elastix_parameter_file(path):
        from monai_fusion.registration.elastix_files import read_elastix_transform

        return read_elastix_transform(path)
    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as err:
        raise InputError(f"{path.name} cannot be read as an ITK transform ({_first_line(err)})") from None
    return transform_from_sitk(tx)


def _is_elastix_parameter_file(path: Path) -> bool:
    with open(path, "r", errors="replace") as handle:
        head = handle.read(4096)
    return "(Transform " in head or "(TransformParameters " in head


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:200]
