"""Orientation search: a multi-start over the axis-aligned rotations before the local optimisation.

Mattes-MI registration is a local optimisation from the initial alignment (centres of mass). When
the two images show the object in different poses (a phantom scanned in two positions, a patient
prone on one scanner and supine on the other, a series with a wrong orientation tag), the nearest
optimum is a wrong one, and it can even be reported as converged with a better metric than the
start. The TCIA MRI-DIR phantom is such a case: its CT and MR are 180 degrees apart around the
anterior-posterior axis; from the centres of mass the rigid registration settles at Mattes MI 0.46
(a wrong pose, the QC page shows bone at opposite ends), from the flipped start at 0.61.

The search (``orientation_search="axes"``):

1. every rotation that maps the image axes onto each other (24 in 3D, 4 in 2D), applied about the
   fixed centre of mass after the initial alignment, is scored on the coarsest pyramid level with
   enough samples (:data:`SEARCH_MIN_SAMPLES`);
2. the ``orientation_candidates`` best of them, and always the unrotated start, are each refined by
   a short rigid optimisation on that level;
3. the best refined candidate becomes the start of the registration, but only when its metric
   beats the refined unrotated start by ``orientation_margin`` (relative): a near tie keeps the
   pose the scanners recorded, which is right for almost every clinical pair. A rotated pose is a
   strong claim, so it is reported (:attr:`OrientationReport.rotated`) and the pipeline warns.

Cost: 24 metric evaluations plus a few short coarse optimisations, about a second on 512x512
slices with one thread (``benchmarks/registration.py``). Rotations by other angles (45 degrees)
are within the capture range of the local optimisation from the nearest axis-aligned start.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from monai_fusion.registration.levels import LevelData
from monai_fusion.registration.linear import LinearModel
from monai_fusion.registration.optimise import optimise_level
from monai_fusion.registration.spatial import AffineTransform

__all__ = ["SEARCH_MIN_SAMPLES", "OrientationReport", "axis_rotations", "describe_rotation", "search_orientation"]

#: The search runs on the coarsest linear level holding at least this many fixed samples (or the
#: finest): on fewer, coarse mutual information is too noisy to rank poses.
SEARCH_MIN_SAMPLES = 2000


def axis_rotations(dims: int) -> list[np.ndarray]:
    """The proper rotations that permute and flip the axes (identity first): 24 in 3D, 4 in 2D."""
    rotations = []
    for permutation in itertools.permutations(range(dims)):
        for signs in itertools.product((1, -1), repeat=dims):
            matrix = np.zeros((dims, dims))
            for row, (column, sign) in enumerate(zip(permutation, signs)):
                matrix[row, column] = sign
            if np.linalg.det(matrix) > 0:
                rotations.append(matrix)
    rotations.sort(key=lambda m: not np.allclose(m, np.eye(dims)))
    return rotations


def describe_rotation(matrix: np.ndarray) -> str:
    """Words for an axis-aligned rotation (RAS world), e.g. ``"180 degrees about the A-P axis"``.

    Angles other than 180 degrees carry their sense: positive counter-clockwise looking down the
    named axis from its positive end (right-hand rule about +R, +A or +S).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    dims = matrix.shape[0]
    if np.allclose(matrix, np.eye(dims)):
        return "none"
    if dims == 2:
        angle = round(float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))))
        return f"{angle:+d} degrees in plane" if abs(angle) != 180 else "180 degrees in plane"
    skew = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]]) / 2
    angle = float(np.degrees(np.arctan2(np.linalg.norm(skew), (np.trace(matrix) - 1) / 2)))
    if np.linalg.norm(skew) > 1e-6:
        axis = skew / np.linalg.norm(skew)
    else:  # 180 degrees: the axis is the eigenvector of eigenvalue 1, its sign irrelevant
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        axis = vectors[:, int(np.argmin(np.abs(values - 1)))]
    main = int(np.argmax(np.abs(axis)))
    if axis[main] < 0:
        axis, angle = -axis, -angle
    words = "180" if round(abs(angle)) == 180 else f"{round(angle):+d}"
    if np.isclose(abs(axis[main]), 1.0):
        return f"{words} degrees about the {('R-L', 'A-P', 'S-I')[main]} axis"
    return f"{words} degrees about ({', '.join(f'{v:+.2f}' for v in axis)}) (RAS)"


@dataclass(frozen=True)
class OrientationReport:
    """What the orientation search tried and chose.

    Attributes:
        rotation: the chosen rotation (RAS, about the fixed centre of mass), identity when kept.
        description: ``rotation`` in words.
        metric_unrotated: coarse-level MI of the refined unrotated start.
        metric_chosen: coarse-level MI of the refined chosen start.
        candidates: ``(description, coarse MI before refinement, after refinement or None)`` per rotation.
    """

    rotation: np.ndarray
    description: str
    metric_unrotated: float
    metric_chosen: float
    candidates: tuple[tuple[str, float, float | None], ...] = field(default_factory=tuple)

    @property
    def rotated(self) -> bool:
        return not np.allclose(self.rotation, np.eye(self.rotation.shape[0]))

    def summary(self) -> dict:
        """JSON-friendly record (a start that lost the overlap has metric ``None``)."""
        return {
            "rotated": self.rotated,
            "rotation": self.description,
            "rotation_matrix_ras": self.rotation.tolist(),
            "metric_unrotated": _finite_or_none(self.metric_unrotated),
            "metric_chosen": _finite_or_none(self.metric_chosen),
            "candidates_refined": [
                {"rotation": name, "metric_start": _finite_or_none(start), "metric_refined": _finite_or_none(refined)}
                for name, start, refined in self.candidates if refined is not None
            ],
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _rotated_start(start: AffineTransform, rotation: np.ndarray, centre: np.ndarray) -> AffineTransform:
    """``start`` after rotating the fixed world by ``rotation`` about ``centre``."""
    dims = rotation.shape[0]
    about = np.eye(dims + 1)
    about[:dims, :dims] = rotation
    about[:dims, dims] = centre - rotation @ centre
    return AffineTransform(start.matrix @ about, centre, "rigid")


def _coarse_metric(level: LevelData, transform: AffineTransform, min_overlap: float) -> float:
    matrix = torch.as_tensor(transform.matrix, dtype=torch.float32, device=level.points.device)
    dims = transform.dims
    with torch.no_grad():
        mi, overlap = level.evaluate_affine(matrix[:dims, :dims], matrix[:dims, dims])
    return float(mi) if float(overlap) >= min_overlap and np.isfinite(float(mi)) else -np.inf


def search_orientation(level: LevelData, start: AffineTransform, centre, radius: float, *, candidates: int = 3,
                       margin: float = 0.05, iterations: int = 40, min_overlap: float = 0.1,
                       device=None) -> tuple[AffineTransform, OrientationReport]:
    """The best axis-aligned starting pose on ``level`` (see the module docstring).

    Args:
        level: the pyramid level to search on (see :data:`SEARCH_MIN_SAMPLES`).
        start: the initial alignment (a linear transform, fixed world -> moving world).
        centre: centre of rotation (fixed world, mm): the fixed centre of mass.
        radius: the rigid model's parameter scale (mm).
        candidates: how many rotated starts (best coarse MI first) are refined besides the unrotated one.
        margin: relative MI gain a rotated start needs over the unrotated one to be chosen.
        iterations: rigid iterations of each refinement.
        min_overlap: starts leaving less overlap than this are not considered.

    Returns:
        ``(transform, report)``: the refined rotated start, or ``start`` itself when the pose is kept
        (then the registration is exactly the one without the search).
    """
    centre = np.asarray(centre, dtype=np.float64)
    rotations = axis_rotations(start.dims)
    starts = [_rotated_start(start, rotation, centre) for rotation in rotations]
    coarse = [_coarse_metric(level, s, min_overlap) for s in starts]
    ranked = sorted(range(1, len(rotations)), key=lambda i: -coarse[i])
    chosen_ids = [0] + [i for i in ranked[:candidates] if np.isfinite(coarse[i])]
    refined: dict[int, tuple[float, AffineTransform]] = {}
    step = 0.5 * level.spec.spacing_mm
    for index in chosen_ids:
        model = LinearModel("rigid", start.dims, centre, radius, starts[index], device)
        report = optimise_level(model, level, model_name="rigid", iterations=iterations, first_step=step,
                                min_step=0.1 * step, optimizer="rprop", min_overlap=min_overlap)
        transform = model.result()
        metric = _coarse_metric(level, transform, min_overlap)
        refined[index] = (metric if report.stop in ("converged", "max_iterations") else -np.inf, transform)
    unrotated_metric = refined[0][0]
    best = max(refined, key=lambda i: refined[i][0])
    best_metric = refined[best][0]
    keep = best == 0 or not np.isfinite(best_metric) or (
        np.isfinite(unrotated_metric) and best_metric <= unrotated_metric + margin * abs(unrotated_metric))
    index = 0 if keep else best
    report = OrientationReport(
        rotation=rotations[index], description=describe_rotation(rotations[index]),
        metric_unrotated=unrotated_metric, metric_chosen=refined[index][0],
        candidates=tuple((describe_rotation(r), coarse[i], refined[i][0] if i in refined else None)
                         for i, r in enumerate(rotations)),
    )
    return (start if keep else refined[index][1]), report
