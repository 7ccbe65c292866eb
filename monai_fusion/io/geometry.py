"""Voxel-to-world geometry, and the one place where LPS and RAS meet.

Conventions (the same as MONAI's):

* Arrays are indexed ``(i, j, k)`` with ``i`` the fastest-varying index on disk. For DICOM,
  ``i`` runs along a row (column index), ``j`` down the columns (row index), ``k`` across slices.
* An *affine* is a 4x4 matrix mapping ``(i, j, k, 1)`` to world millimetres in **RAS+**
  (+x towards the patient's right, +y anterior, +z superior), as in MONAI, nibabel and NIfTI.
* DICOM and ITK store **LPS+** coordinates (+x towards the patient's left, +y posterior): the
  same points with x and y negated. :data:`LPS_TO_RAS` does that flip, and nothing else in
  the package flips axes, so the conversion happens once, at the boundary.

ITK-style geometry is ``(origin, spacing, direction)`` in LPS, with ``direction`` a 3x3 matrix
whose *columns* are the unit vectors of the i, j, k axes. The affine of the same grid is
``[direction * spacing | origin]`` in LPS, flipped to RAS.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "LPS_TO_RAS",
    "affine_from_itk_geometry",
    "itk_geometry_from_affine",
    "affine_from_sitk",
    "copy_affine_to_sitk",
    "spacing_from_affine",
    "orientation_code",
    "affines_match",
]

#: Flips x and y: converts an LPS point or affine to RAS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_itk_geometry(
    origin: Sequence[float], spacing: Sequence[float], direction: np.ndarray | Sequence[float]
) -> np.ndarray:
    """RAS affine of a grid given ITK-style LPS ``origin``, ``spacing`` and ``direction``.

    ``direction`` is a 3x3 matrix (or its 9 row-major values) whose columns are the axis unit
    vectors, as SimpleITK's ``GetDirection()`` returns them.

    Example:
        >>> affine_from_itk_geometry([10, 20, 30], [1, 1, 2], np.eye(3))[:3, 3]
        array([-10., -20.,  30.])
    """
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(spacing, dtype=float)[None, :]
    lps[:3, 3] = np.asarray(origin, dtype=float)
    return LPS_TO_RAS @ lps


def itk_geometry_from_affine(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ITK-style ``(origin, spacing, direction)`` in LPS from a RAS affine.

    Inverse of :func:`affine_from_itk_geometry`. A sheared affine has no exact ITK form:
    its direction columns are returned normalised but not orthogonal.
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing[None, :]
    return lps[:3, 3].copy(), spacing, direction


def affine_from_sitk(image) -> np.ndarray:
    """RAS affine of a SimpleITK image (3D; 2D images are lifted to one slice)."""
    dim = image.GetDimension()
    origin = np.zeros(3)
    spacing = np.ones(3)
    direction = np.eye(3)
    origin[:dim] = image.GetOrigin()
    spacing[:dim] = image.GetSpacing()
    direction[:dim, :dim] = np.asarray(image.GetDirection()).reshape(dim, dim)
    return affine_from_itk_geometry(origin, spacing, direction)


def copy_affine_to_sitk(image, affine: np.ndarray) -> None:
    """Set a 3D SimpleITK image's origin, spacing and direction from a RAS affine."""
    origin, spacing, direction = itk_geometry_from_affine(affine)
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))


def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel size along i, j, k in millimetres (column norms of the linear part)."""
    affine = np.asarray(affine, dtype=float)
    return np.linalg.norm(affine[:3, :3], axis=0)


def orientation_code(affine: np.ndarray) -> str:
    """Three-letter RAS orientation code of the array axes, e.g. ``"LPS"`` or ``"RAS"``.

    Each letter names the world direction the i, j, k axes point to (nibabel's ``aff2axcodes``).
    """
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=float)))


def affines_match(a: np.ndarray, b: np.ndarray, atol: float = 1e-4) -> bool:
    """True when two affines agree to ``atol`` millimetres in every element."""
    return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=atol))
