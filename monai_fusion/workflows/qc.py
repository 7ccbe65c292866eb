"""Quality-control montage of a fusion run, composed with numpy and Pillow (no matplotlib).

Rows are the axial, coronal and sagittal planes through the centre of the reference image's
foreground; columns show the reference, the moving image on the reference grid *before*
registration (its world coordinates trusted), the moving image *after* registration, a
checkerboard of reference and registered image (edges continuing across the squares mean good
alignment) and the fused image (in colour for PET/SPECT).

Each plane is sampled directly in world space (RAS mm) on a square-pixel grid, so the pictures
have the right aspect whatever the voxel spacing, and each image goes through its own transform:
only three planes per image are resampled, which keeps the "before" column cheap on large
volumes. Display follows the radiological convention: patient right on the viewer's left,
anterior (axial) or superior (coronal, sagittal) at the top; sagittal planes have anterior on
the left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from monai_fusion.registration import resample
from monai_fusion.registration.spatial import AffineTransform

__all__ = ["PLANES", "QCColumn", "plane_grids", "checkerboard", "render_montage"]

PLANES = ("axial", "coronal", "sagittal")
_TILE = 240  # tile side in pixels
_LABEL = 20  # height of the label strip
# Display axes of each plane in RAS world: (column direction, row direction, normal).
_PLANE_AXES = {
    "axial": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),      # columns toward patient left, rows toward posterior
    "coronal": ((-1, 0, 0), (0, 0, -1), (0, 1, 0)),    # columns toward patient left, rows toward inferior
    "sagittal": ((0, -1, 0), (0, 0, -1), (1, 0, 0)),   # columns toward posterior, rows toward inferior
}


@dataclass
class QCColumn:
    """One column: an image, the transform from reference world to its world, and a display scaling to 0..1."""

    image: torch.Tensor  # (C, I, J, K) MetaTensor, C = 1 (grey) or 3 (RGB)
    transform: object = None  # SpatialTransform / matrix; None = identity
    to_unit: Callable[[np.ndarray], np.ndarray] | None = None


def _world_box(image) -> tuple[np.ndarray, np.ndarray]:
    affine = np.asarray(torch.as_tensor(image.affine, dtype=torch.float64))
    shape = np.asarray(image.shape[1:]) - 1
    corners = np.array([[i, j, k] for i in (0, shape[0]) for j in (0, shape[1]) for k in (0, shape[2])], float)
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def foreground_centre(unit_image) -> np.ndarray:
    """World point (RAS mm) at the centre of the voxels above 10 % of a 0..1 image's robust maximum."""
    data = unit_image[0].detach().cpu().float()
    step = max(1, int(round((data.numel() / 2e6) ** (1 / 3))))
    small = data[::step, ::step, ::step]
    high = float(torch.quantile(small.flatten()[:: max(1, small.numel() // 200000)], 0.995))
    mask = small > 0.1 * high if high > 0 else torch.ones_like(small, dtype=torch.bool)
    index = torch.nonzero(mask).double().mean(0).numpy() * step if mask.any() else (np.asarray(data.shape) - 1) / 2
    affine = np.asarray(torch.as_tensor(unit_image.affine, dtype=torch.float64))
    return affine[:3, :3] @ index + affine[:3, 3]


def plane_grids(reference, centre: np.ndarray, pixels: int = _TILE) -> dict[str, tuple[np.ndarray, tuple[int, int, int]]]:
    """``(affine, shape)`` of each display plane through ``centre``, covering the reference's field of view."""
    low, high = _world_box(reference)
    size = float(np.max(high - low))
    pixel_mm = size / pixels
    grids = {}
    for name, (col, row, normal) in _PLANE_AXES.items():
        col, row, normal = (np.asarray(v, float) for v in (col, row, normal))
        start = np.asarray(centre, float).copy()
        for direction in (col, row):  # in-plane: centred on the field of view; across: through ``centre``
            axis = int(np.argmax(np.abs(direction)))
            start[axis] = (low[axis] + high[axis]) / 2
        start = start - (col + row) * (size - pixel_mm) / 2
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = col * pixel_mm, row * pixel_mm, normal * pixel_mm, start
        grids[name] = (affine, (pixels, pixels, 1))
    return grids


def checkerboard(a: np.ndarray, b: np.ndarray, squares: int = 8) -> np.ndarray:
    """Alternate ``squares`` x ``squares`` blocks of two same-shape 2D (or 2D + colour) images."""
    rows, cols = a.shape[:2]
    r = (np.arange(rows) * squares // max(rows, 1))[:, None]
    c = (np.arange(cols) * squares // max(cols, 1))[None, :]
    pick = ((r + c) % 2).astype(bool)
    if a.ndim == 3:
        pick = pick[..., None]
    return np.where(pick, b, a)


def _sample_plane(column: QCColumn, grid) -> np.ndarray:
    transform = column.transform if column.transform is not None else AffineTransform.identity(3)
    plane = resample(column.image.float(), transform, grid).as_tensor()[..., 0].numpy()  # (C, cols, rows)
    plane = np.moveaxis(plane, 0, -1).swapaxes(0, 1)  # (rows, cols, C)
    plane = plane[..., 0] if plane.shape[-1] == 1 else plane
    return column.to_unit(plane) if column.to_unit is not None else plane


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(plane) * 255.0), 0, 255).astype(np.uint8)


def _font():
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _tile(plane: np.ndarray, label: str, font) -> Image.Image:
    array = _to_uint8(plane)
    image = Image.fromarray(array, "RGB" if array.ndim == 3 else "L").convert("RGB")
    tile = Image.new("RGB", (image.width, image.height + _LABEL), (0, 0, 0))
    tile.paste(image, (0, _LABEL))
    ImageDraw.Draw(tile).text((4, 3), label, fill=(255, 255, 255), font=font)
    return tile


def render_montage(columns: dict[str, QCColumn], reference, checker: tuple[str, str] | None = None,
                   centre: np.ndarray | None = None, gap: int = 4) -> Image.Image:
    """The planes x columns montage (a Pillow image).

    Args:
        columns: title -> :class:`QCColumn`, in display order.
        reference: the reference image (its field of view sets the planes).
        checker: titles of two grey columns to show as a checkerboard after the column of the second.
        centre: world point the planes pass through (default: the reference's centre of field of view).
    """
    if centre is None:
        low, high = _world_box(reference)
        centre = (low + high) / 2
    grids = plane_grids(reference, np.asarray(centre, float))
    planes = {title: {name: _sample_plane(column, grid) for name, grid in grids.items()} for title, column in columns.items()}
    titles = list(planes)
    if checker is not None:
        first, second = checker
        planes_checker = {name: checkerboard(planes[first][name], planes[second][name]) for name in PLANES}
        titles.insert(titles.index(second) + 1, "checkerboard")
        planes["checkerboard"] = planes_checker
    font = _font()
    width = len(titles) * (_TILE + gap) + gap
    height = len(PLANES) * (_TILE + _LABEL + gap) + gap
    montage = Image.new("RGB", (width, height), (40, 40, 40))
    for c, title in enumerate(titles):
        for r, name in enumerate(PLANES):
            tile = _tile(planes[title][name], f"{title} ({name})", font)
            montage.paste(tile, (gap + c * (_TILE + gap), gap + r * (_TILE + _LABEL + gap)))
    return montage
