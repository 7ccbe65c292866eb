"""Orientation search (``orientation_search="axes"``): the multi-start over axis-aligned rotations.

A multimodal phantom pair whose moving image is the fixed object turned by 180 degrees (3D) or 90
degrees (2D) plus a shift: the local optimisation alone ends in a wrong pose; with the search the
known transform is recovered. An unrotated pair keeps exactly the result without the search.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.registration import register, resolve_settings
from monai_fusion.registration.orientation import axis_rotations, describe_rotation


def phantom(shape, seed: int = 0) -> np.ndarray:
    """An asymmetric 'body': an ellipsoid with blobs of several intensities off its axes."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radii = np.array([0.8, 0.6, 0.7][: len(shape)])[:, None]
    body = ((grid.reshape(len(shape), -1) / radii) ** 2).sum(0).reshape(shape) < 1
    image = np.where(body, 40.0, 0.0)
    for centre, value, size in (((0.45, 0.2, 0.3), 120, 0.18), ((-0.3, 0.25, -0.35), 80, 0.22),
                                ((0.1, -0.35, 0.25), 200, 0.12), ((-0.45, -0.1, 0.1), 160, 0.15)):
        offset = grid - np.asarray(centre[: len(shape)]).reshape(-1, *[1] * len(shape))
        image = np.where((offset ** 2).sum(0) < size ** 2, value, image)
    return image + 4.0 * rng.random(shape) * body


def as_other_modality(image: np.ndarray) -> np.ndarray:
    """A non-monotonic intensity mapping (what MI, not correlation, can match)."""
    mapped = np.select([image > 150, image > 100, image > 60, image > 20], [30.0, 220.0, 90.0, 150.0], 0.0)
    return mapped + 3.0 * np.random.default_rng(7).random(image.shape)


def world_motion(rotation: np.ndarray, centre, shift) -> np.ndarray:
    dims = rotation.shape[0]
    motion = np.eye(dims + 1)
    motion[:dims, :dims] = rotation
    motion[:dims, dims] = np.asarray(centre) - rotation @ np.asarray(centre) + np.asarray(shift)
    return motion


def make_pair(dims: int, rotation: np.ndarray, shift):
    """``(fixed, moving, truth)``: ``moving`` shows the fixed object moved by ``truth`` (fixed world -> moving world)."""
    shape = (40, 36, 32)[:dims]
    spacing = np.diag([2.0, 2.0, 2.5][:dims] + [1.0])
    spacing[:dims, dims] = -np.asarray(shape) * np.diag(spacing)[:dims] / 2
    data = phantom(shape)
    truth = world_motion(rotation, np.zeros(dims), shift)
    fixed = MetaTensor(torch.as_tensor(data, dtype=torch.float32)[None], affine=torch.as_tensor(spacing))
    moving = MetaTensor(torch.as_tensor(as_other_modality(data), dtype=torch.float32)[None],
                        affine=torch.as_tensor(truth @ spacing))
    return fixed, moving, truth


def recovery_error_mm(transform, truth: np.ndarray, fixed: MetaTensor) -> float:
    dims = truth.shape[0] - 1
    index = np.argwhere(fixed[0].numpy() > 10)[::7].astype(np.float64)
    affine = fixed.affine.numpy()
    points = index @ affine[:dims, :dims].T + affine[:dims, dims]
    found = transform.map_numpy(points)
    expected = points @ truth[:dims, :dims].T + truth[:dims, dims]
    return float(np.linalg.norm(found - expected, axis=1).mean())


def test_axis_rotations_are_the_proper_axis_permutations():
    for dims, count in ((2, 4), (3, 24)):
        rotations = axis_rotations(dims)
        assert len(rotations) == count
        assert np.allclose(rotations[0], np.eye(dims))
        assert all(np.isclose(np.linalg.det(r), 1.0) and np.allclose(r @ r.T, np.eye(dims)) for r in rotations)
        assert len({r.astype(int).tobytes() for r in rotations}) == count


@pytest.mark.parametrize("matrix, words", [
    (np.diag([-1.0, 1.0, -1.0]), "180 degrees about the A-P axis"),
    (np.diag([1.0, -1.0, -1.0]), "180 degrees about the R-L axis"),
    (np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), "+90 degrees about the S-I axis"),
    (np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), "-90 degrees about the S-I axis"),
    (np.eye(3), "none"),
    (np.array([[0.0, -1], [1, 0]]), "+90 degrees in plane"),
])
def test_rotations_are_described_in_words(matrix, words):
    assert describe_rotation(matrix) == words


def test_3d_pair_turned_180_degrees_is_recovered_only_with_the_search():
    rotation = np.diag([-1.0, 1.0, -1.0])  # the MRI-DIR case: 180 degrees about A-P
    fixed, moving, truth = make_pair(3, rotation, shift=(6.0, -4.0, 3.0))
    plain = register(fixed, moving, preset="ct-mr")
    searched = register(fixed, moving, preset="ct-mr", orientation_search="axes")
    assert recovery_error_mm(plain.transform, truth, fixed) > 10.0, "the local optimisation alone should fail here"
    assert recovery_error_mm(searched.transform, truth, fixed) < 1.0
    assert searched.orientation.rotated and searched.orientation.description == "180 degrees about the A-P axis"
    assert searched.converged and searched.metric_final > plain.metric_final
    record = searched.summary()["orientation_search"]
    assert record["rotated"] and record["metric_chosen"] > record["metric_unrotated"]
    assert record["candidates_refined"][0]["rotation"] == "none"


def test_2d_pair_turned_90_degrees_is_recovered():
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    fixed, moving, truth = make_pair(2, rotation, shift=(3.0, 5.0))
    result = register(fixed, moving, preset="ct-mr", orientation_search="axes")
    assert result.orientation.description == "+90 degrees in plane"
    assert recovery_error_mm(result.transform, truth, fixed) < 1.0


def test_an_unrotated_pair_keeps_the_result_without_the_search():
    fixed, moving, truth = make_pair(3, np.eye(3), shift=(5.0, 3.0, -4.0))
    plain = register(fixed, moving, preset="ct-mr")
    searched = register(fixed, moving, preset="ct-mr", orientation_search="axes")
    assert not searched.orientation.rotated and searched.orientation.description == "none"
    np.testing.assert_array_equal(searched.transform.matrix, plain.transform.matrix)
    assert recovery_error_mm(searched.transform, truth, fixed) < 1.0
    assert plain.orientation is None and "orientation_search" not in plain.summary()


def test_an_initial_transform_disables_the_search():
    fixed, moving, _ = make_pair(3, np.diag([-1.0, 1.0, -1.0]), shift=(0.0, 0.0, 0.0))
    result = register(fixed, moving, preset="ct-mr", orientation_search="axes", initial_transform=np.eye(4),
                      iterations=5)
    assert result.orientation is None


def test_the_simpleitk_backend_starts_from_the_searched_pose():
    pytest.importorskip("SimpleITK")
    fixed, moving, truth = make_pair(3, np.diag([-1.0, 1.0, -1.0]), shift=(6.0, -4.0, 3.0))
    result = register(fixed, moving, preset="ct-mr", backend="simpleitk", orientation_search="axes")
    assert result.orientation is not None and result.orientation.rotated
    assert recovery_error_mm(result.transform, truth, fixed) < 2.0


def test_the_elastix_backend_refuses_the_search():
    fixed, moving, _ = make_pair(3, np.eye(3), shift=(0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="elastix backend cannot start from the orientation search"):
        register(fixed, moving, backend="elastix", orientation_search="axes")


@pytest.mark.parametrize("options, message", [
    ({"orientation_search": "all"}, "unknown orientation_search"),
    ({"orientation_candidates": -1}, "must be >= 0"),
])
def test_bad_orientation_options(options, message):
    with pytest.raises(InputError, match=message):
        resolve_settings(**options)
