"""The QC montage (display orientation, aspect, checkerboard) and the HTML report of the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.workflows.qc import PLANES, QCColumn, checkerboard, plane_grids, render_montage


def _marked_volume(affine: np.ndarray, shape=(30, 34, 26)) -> MetaTensor:
    """Zero volume with one bright cube at world (+30, +30, +20) mm: patient right, anterior, superior."""
    index = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    values = (np.abs(world - np.array([30.0, 30.0, 20.0])) < 6).all(-1).astype(np.float32)
    return MetaTensor(torch.from_numpy(values)[None], affine=torch.as_tensor(affine))


@pytest.mark.parametrize("axis_codes", ["RAS", "LPS", "PIL"])
def test_planes_follow_the_radiological_convention_whatever_the_voxel_order(axis_codes):
    directions = {"R": [1, 0, 0], "L": [-1, 0, 0], "A": [0, 1, 0], "P": [0, -1, 0], "S": [0, 0, 1], "I": [0, 0, -1]}
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([np.asarray(directions[c], float) * s for c, s in zip(axis_codes, (3.0, 2.5, 4.0))])
    affine[:3, 3] = -affine[:3, :3] @ (np.array([30, 34, 26]) / 2)
    image = _marked_volume(affine)
    montage = render_montage({"image": QCColumn(image)}, image, centre=np.array([30.0, 30.0, 20.0]))
    tiles = np.asarray(montage.convert("L")).astype(float)
    rows = [tiles[4 + r * (240 + 20 + 4) + 20: 4 + r * (240 + 20 + 4) + 260, 4:244] for r in range(len(PLANES))]
    for name, tile in zip(PLANES, rows):
        ys, xs = np.nonzero(tile > 128)
        assert len(ys), name
        # patient right on the viewer's left (axial, coronal), anterior on the left (sagittal); anterior/superior up
        assert xs.mean() < 120 and ys.mean() < 120, (name, xs.mean(), ys.mean())


def test_plane_grids_have_square_pixels_through_the_centre():
    image = MetaTensor(torch.zeros(1, 10, 20, 5), affine=torch.diag(torch.tensor([1.0, 0.5, 4.0, 1.0], dtype=torch.float64)))
    for name, (affine, shape) in plane_grids(image, np.array([4.5, 4.75, 8.0])).items():
        sizes = np.linalg.norm(affine[:3, :2], axis=0)
        assert shape == (240, 240, 1) and np.allclose(sizes, sizes[0]), name


def test_checkerboard_alternates_blocks():
    board = checkerboard(np.zeros((8, 8)), np.ones((8, 8)), squares=2)
    assert board[0, 0] == 0 and board[0, 7] == 1 and board[7, 0] == 1 and board[7, 7] == 0


def test_html_report_is_self_contained():
    from PIL import Image

    from monai_fusion.workflows.report import render_html

    report = {"task": "mri-pet", "method": "average", "versions": {"monai-fusion": "0", "monai": "1", "torch": "2"},
              "reference": {"role": "fixed", "modality": "MR", "modality_name": "MRI"}, "seconds": 1.0,
              "contribution_mean": 0.5, "registration": None, "metrics": {"EN": 1.0}, "timings": {"load": 0.1},
              "inputs": {"fixed": {"name": "t1.nii", "shape": [2, 2, 2], "spacing_mm": [1.0, 1.0, 1.0],
                                   "value_range": [0.0, 1.0]}},
              "outputs": {"fused": {"path": "fused.nii.gz", "bytes": 10, "sha256": "0" * 64}},
              "warnings": ["<script>alert(1)</script>"]}
    page = render_html(report, Image.new("RGB", (4, 4)))
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # text is escaped
    assert "src='http" not in page and "href=" not in page  # nothing external


def test_html_report_states_whether_a_deformation_folds():
    from monai_fusion.workflows.report import render_html

    field = {"type": "displacement_field", "max_displacement_mm": 4.2, "mean_displacement_mm": 1.25,
             "min_jacobian_determinant": -0.3, "folded_fraction": 0.012}
    registration = {"converged": False, "reason": "the deformation folds", "model": "rigid+bspline",
                    "transform": {"type": "composite", "transforms": [field, {"type": "affine"}]}}
    report = {"task": "ct-mri", "method": "average", "versions": {"monai-fusion": "0", "monai": "1", "torch": "2"},
              "reference": {"role": "fixed", "modality": "MR", "modality_name": "MRI"}, "seconds": 1.0,
              "contribution_mean": 0.5, "registration": registration, "metrics": {}, "timings": {}, "inputs": {},
              "outputs": {}, "warnings": []}
    page = render_html(report)
    assert "Deformation: up to 4.2 mm (mean 1.25 mm), smallest Jacobian determinant -0.30" in page
    assert "folds in 1.20% of its grid" in page
    smooth = dict(field, min_jacobian_determinant=0.6, folded_fraction=0.0)
    registration["transform"] = smooth
    assert "the field does not fold" in render_html(report)
    registration["transform"] = {"type": "affine"}
    assert "Deformation:" not in render_html(report)
