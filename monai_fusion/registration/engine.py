"""``register``: multi-resolution Mattes-MI registration in pure PyTorch (CPU or GPU, 2D or 3D).

The steps, each in its own module:

1. :mod:`~monai_fusion.registration.inputs` checks the pair and computes the starting transform
   (centres of mass, grid centres or identity);
2. :mod:`~monai_fusion.registration.levels` builds each pyramid level once (smoothing in mm,
   fixed samples, histogram ranges) and evaluates the metric;
3. each stage (``"rigid"``, then e.g. ``"affine"``, then e.g. ``"bspline"``) starts from the
   previous result and is optimised coarse to fine by
   :func:`~monai_fusion.registration.optimise.optimise_level`;
4. the result is scored at full resolution and checked (overlap, metric, degenerate matrices).

The computation follows the fixed image's device; the moving image is moved there.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import numpy as np
import torch

from monai_fusion.errors import InputError
from monai_fusion.registration.deformable import BSplineModel, DenseFieldModel
from monai_fusion.registration.grid import SpatialImage
from monai_fusion.registration.inputs import centre_of_mass, initial_alignment, prepare_pair
from monai_fusion.registration.levels import LevelData, build_level
from monai_fusion.registration.linear import LINEAR_MODELS, LinearModel
from monai_fusion.registration.optimise import finish_stochastic, optimise_level
from monai_fusion.registration.orientation import SEARCH_MIN_SAMPLES, OrientationReport, search_orientation
from monai_fusion.registration.pyramid import LevelSpec, level_specs
from monai_fusion.registration.result import LevelReport, RegistrationResult
from monai_fusion.registration.settings import RegistrationSettings, resolve_settings, stages_of
from monai_fusion.registration.spatial import SpatialTransform, as_transform, deformation_regularity

__all__ = ["register", "register_torch", "evaluate_metric", "adapter_result", "orientation_start", "folding_problem",
           "BACKENDS"]

BACKENDS = ("torch", "simpleitk", "elastix")

#: A linear result whose determinant leaves this range is reported as degenerate.
_DETERMINANT_RANGE = (0.2, 5.0)
#: Default regularisation weights of the deformable models (bending energy / diffusion).
_DEFAULT_REGULARISATION = {"bspline": 0.002, "dense": 0.5, "diffeomorphic": 0.5}
#: First step of the stochastic finish, as a fraction of the finest level's voxel size (0.05 mm at 2 mm).
_FINISH_FIRST_STEP = 0.025


def register(fixed, moving, model=None, metric: str = "mattes", levels=None, *, preset: str | None = None,
             backend: str = "torch", fixed_mask=None, moving_mask=None, initial_transform=None, device=None,
             **options) -> RegistrationResult:
    """Register ``moving`` to ``fixed``: find ``T`` (fixed world -> moving world) maximising Mattes MI.

    Args:
        fixed, moving: channel-first single-channel images ``(1, I, J[, K])``; MetaTensors carry
            their geometry (``.affine``, voxel -> RAS mm); plain tensors/arrays get 1 mm identity
            geometry.
        model: ``"translation"``, ``"rigid"``, ``"similarity"``, ``"affine"``, ``"bspline"``,
            ``"dense"``, ``"diffeomorphic"`` or a sequence run in turn, e.g. ``("rigid", "affine")``.
        metric: ``"mattes"``.
        levels: pyramid shrink factors, coarse to fine (default ``(4, 2, 1)``).
        preset: ``"ct-mr"``, ``"pet-mr"``, ``"spect-mr"`` or ``"mr-mr"``; explicit options override it.
        backend: ``"torch"`` (this engine), ``"simpleitk"`` or ``"elastix"`` (optional extra).
        fixed_mask, moving_mask: restrict the metric to voxels > 0 (same grid as their image).
        initial_transform: a starting linear transform (an ``AffineTransform``, a result, or a RAS
            ``(D+1, D+1)`` matrix); replaces ``init``.
        device: where to compute (default: the fixed image's device).
        options: any field of :class:`~monai_fusion.registration.settings.RegistrationSettings`
            (``bins=48``, ``sampling_fraction=0.1``, ``seed=1``, ``iterations=200``...).

    Returns:
        :class:`~monai_fusion.registration.result.RegistrationResult`.

    Raises:
        InputError: unusable input (2D vs 3D, NaN, constant image, no overlap after initialisation...).

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
        >>> blob = lambda cx: MetaTensor(torch.exp(-((yy - 24) ** 2 + (xx - cx) ** 2) / 60)[None])
        >>> result = register(blob(24), blob(27), model="translation", levels=(2, 1))
        >>> round(float(result.transform.offset[1]), 1)
        3.0
    """
    settings = resolve_settings(preset, model=model, metric=metric, levels=levels, **options)
    orientation, searching = None, time.perf_counter()
    if backend == "elastix" and settings.orientation_search == "axes":
        raise InputError("the elastix backend cannot start from the orientation search's pose (it takes no "
                         "initial_transform); use orientation_search='off' or the torch/simpleitk backends")
    if backend != "torch" and initial_transform is None and settings.orientation_search == "axes":
        initial_transform, orientation = orientation_start(fixed, moving, settings, fixed_mask=fixed_mask,
                                                           moving_mask=moving_mask, device=device)
    searched = time.perf_counter() - searching
    result = _register_with(backend, fixed, moving, settings, fixed_mask, moving_mask, initial_transform, device)
    if orientation is not None:  # the adapter started from the searched pose: its time counts
        result.orientation, result.seconds = orientation, result.seconds + searched
    return result


def _register_with(backend, fixed, moving, settings, fixed_mask, moving_mask, initial_transform, device):
    if backend == "torch":
        return register_torch(fixed, moving, settings, fixed_mask=fixed_mask, moving_mask=moving_mask,
                              initial_transform=initial_transform, device=device)
    if backend == "simpleitk":
        from monai_fusion.registration.sitk_backend import register_simpleitk

        return register_simpleitk(fixed, moving, settings, fixed_mask=fixed_mask, moving_mask=moving_mask,
                                  initial_transform=initial_transform)
    if backend == "elastix":
        from monai_fusion.registration.elastix_backend import register_elastix

        return register_elastix(fixed, moving, settings, fixed_mask=fixed_mask, moving_mask=moving_mask,
                                initial_transform=initial_transform)
    raise InputError(f"unknown registration backend {backend!r}; choose from {BACKENDS}")


class _Pyramid:
    """Levels built on demand and shared by every stage."""

    def __init__(self, fixed, moving, fixed_mask, moving_mask, settings: RegistrationSettings) -> None:
        self.fixed, self.moving = fixed, moving
        self.fixed_mask, self.moving_mask = fixed_mask, moving_mask
        self.settings = settings
        self.base_spacing = float(min(fixed.grid.spacing.min(), moving.grid.spacing.min()))
        if settings.working_spacing_mm is not None:
            self.base_spacing = max(self.base_spacing, float(settings.working_spacing_mm))
        self._levels: dict[tuple[float, float], LevelData] = {}

    def specs(self, shrinks) -> list[LevelSpec]:
        """Specs of ``shrinks``; ``smoothing_mm`` applies to the linear ``levels`` only."""
        same = tuple(float(s) for s in shrinks) == tuple(float(s) for s in self.settings.levels)
        return level_specs(shrinks, self.base_spacing, self.settings.smoothing_mm if same else None)

    def level(self, spec: LevelSpec) -> LevelData:
        key = (spec.shrink, spec.sigma_mm)
        if key not in self._levels:
            seed = self.settings.seed * 1000 + len(self._levels)
            generator = torch.Generator().manual_seed(seed)
            self._levels[key] = build_level(self.fixed, self.moving, self.fixed_mask, self.moving_mask, spec,
                                            self.settings, generator)
        return self._levels[key]

    def scoring_level(self) -> LevelData:
        """Full-resolution, unsmoothed samples with their own seed: the same for every backend."""
        spec = LevelSpec(1.0, self.base_spacing, 0.0)
        generator = torch.Generator().manual_seed(self.settings.seed * 1000 + 999)
        return build_level(self.fixed, self.moving, self.fixed_mask, self.moving_mask, spec,
                           replace(self.settings, sampling="random"), generator)


def _make_model(stage: str, fixed: SpatialImage, centre, radius: float, start: SpatialTransform,
                settings: RegistrationSettings, device):
    if stage in LINEAR_MODELS:
        if not start.is_linear:
            raise InputError(f"a linear stage ({stage!r}) cannot follow a deformable one; put deformable models last")
        return LinearModel(stage, fixed.dims, centre, radius, start.linear_part(), device)
    if not start.is_linear:
        raise InputError("only one deformable stage is supported; put a single deformable model last")
    linear = start.linear_part()
    if stage == "bspline":
        return BSplineModel(fixed, settings.bspline_spacing_mm, linear, device)
    return DenseFieldModel(fixed, settings.field_spacing_mm, linear, diffeomorphic=stage == "diffeomorphic", device=device)


def _iterations_at(settings: RegistrationSettings, position: int, count: int) -> int:
    iterations = settings.iterations
    if isinstance(iterations, (int, np.integer)):
        return int(iterations)
    iterations = tuple(iterations)
    return int(iterations[min(position, len(iterations) - 1)] if len(iterations) != count else iterations[position])


def register_torch(fixed, moving, settings: RegistrationSettings, *, fixed_mask=None, moving_mask=None,
                   initial_transform=None, device=None) -> RegistrationResult:
    """The torch engine with resolved settings (see :func:`register`)."""
    started = time.perf_counter()
    fixed_img, moving_img, fixed_mask_t, moving_mask_t = prepare_pair(fixed, moving, fixed_mask, moving_mask, device)
    device = fixed_img.data.device
    stages = stages_of(settings.model)
    if initial_transform is not None:
        start: SpatialTransform = as_transform(initial_transform, fixed_img.dims)
        if not start.is_linear or start.dims != fixed_img.dims:
            raise InputError("initial_transform must be a linear transform of the images' dimension")
    else:
        start = initial_alignment(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings.init)
    pyramid = _Pyramid(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings)
    linear_specs = pyramid.specs(settings.levels)
    coarsest = pyramid.level(linear_specs[0])
    _check_initial_overlap(coarsest, start, settings)
    centre = centre_of_mass(fixed_img, fixed_mask_t)
    radius = _parameter_radius(coarsest, centre)
    reports: list[LevelReport] = []
    orientation = None
    with _intra_op_threads(settings.cpu_threads if device.type == "cpu" else None):
        first = start
        if initial_transform is None and settings.orientation_search == "axes":
            first, orientation, searched = _search(pyramid, linear_specs, start, centre, settings, device)
            if orientation.rotated:  # coarser levels than the search trusted could pull the new pose away again
                linear_specs = linear_specs[searched:]
        transform = _run_stages(stages, fixed_img, centre, radius, first, pyramid, linear_specs, settings, device, reports)
    seconds = time.perf_counter() - started
    scoring = pyramid.scoring_level()
    metric_initial = score(scoring, start)
    metric_final = score(scoring, transform)
    converged, reason = _judge(reports, transform, metric_initial, metric_final)
    return RegistrationResult(
        transform=transform, metric_initial=metric_initial, metric_final=metric_final,
        iterations=tuple(r.iterations for r in reports), converged=converged, reason=reason, seconds=seconds,
        backend="torch", model="+".join(stages), levels=tuple(reports), orientation=orientation,
    )


def _parameter_radius(level: LevelData, centre) -> float:
    """RMS distance (mm) of the level's fixed samples from ``centre``: the linear models' parameter scale."""
    offsets = level.points - torch.as_tensor(centre, dtype=torch.float32, device=level.points.device)
    return float(torch.sqrt((offsets ** 2).sum(dim=1).mean()))


def orientation_start(fixed, moving, settings: RegistrationSettings, *, fixed_mask=None, moving_mask=None,
                      device=None) -> tuple[SpatialTransform, OrientationReport]:
    """The initial alignment after the orientation search, for backends that take an ``initial_transform``."""
    fixed_img, moving_img, fixed_mask_t, moving_mask_t = prepare_pair(fixed, moving, fixed_mask, moving_mask, device)
    start = initial_alignment(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings.init)
    pyramid = _Pyramid(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings)
    specs = pyramid.specs(settings.levels)
    _check_initial_overlap(pyramid.level(specs[0]), start, settings)
    centre = centre_of_mass(fixed_img, fixed_mask_t)
    with _intra_op_threads(settings.cpu_threads if fixed_img.data.device.type == "cpu" else None):
        return _search(pyramid, specs, start, centre, settings, fixed_img.data.device)[:2]


def _search(pyramid: _Pyramid, specs, start, centre, settings: RegistrationSettings, device):
    """``(start, report, level index)``: the orientation search on the coarsest level with enough samples."""
    for index, spec in enumerate(specs):  # coarse to fine, the order the stages build them in (same sample seeds)
        level = pyramid.level(spec)
        if level.n_samples >= SEARCH_MIN_SAMPLES:
            break
    transform, report = search_orientation(level, start, centre, _parameter_radius(level, centre),
                                           candidates=settings.orientation_candidates,
                                           margin=settings.orientation_margin, min_overlap=settings.min_overlap,
                                           device=device)
    return transform, report, index


@contextlib.contextmanager
def _intra_op_threads(threads: int | None):
    """Run the block with ``threads`` intra-op CPU threads (then restore torch's setting).

    The optimisation works on tensors of a few ten thousand samples: a second thread gains little
    there, and on a loaded machine OpenMP threads waiting for each other make every operation many
    times slower (measured 6x on a busy 2-core machine). ``None`` leaves torch's setting alone.
    """
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_stages(stages, fixed_img, centre, radius, start, pyramid, linear_specs, settings, device, reports):
    transform = start
    for stage in stages:
        model = _make_model(stage, fixed_img, centre, radius, transform, settings, device)
        deformable = stage not in LINEAR_MODELS
        specs = pyramid.specs(settings.deformable_levels) if deformable else linear_specs
        weight = settings.regularisation if settings.regularisation is not None else _DEFAULT_REGULARISATION.get(stage, 0.0)
        for position, spec in enumerate(specs):
            level = pyramid.level(spec)
            if hasattr(model, "prepare"):
                model.prepare(level.points)
            finest = position == len(specs) - 1
            report = optimise_level(
                model, level, model_name=stage,
                iterations=settings.deformable_iterations if deformable else _iterations_at(settings, position, len(specs)),
                first_step=(settings.step_fraction if position == 0 else settings.refine_step_fraction) * spec.spacing_mm,
                min_step=max(settings.min_step_mm,
                             (settings.min_step_fraction if finest else settings.coarse_min_step_fraction) * spec.spacing_mm),
                optimizer=settings.deformable_optimizer if deformable else settings.optimizer,
                min_overlap=settings.min_overlap,
                regularisation=weight if deformable else 0.0,
                fold_penalty=settings.fold_penalty if stage == "bspline" else 0.0,
            )
            reports.append(report)
            if report.stop not in ("converged", "max_iterations"):
                break
        if not deformable and settings.finishing == "stochastic" and reports[-1].stop in ("converged", "max_iterations"):
            finest = specs[-1]
            reports.append(finish_stochastic(
                model, pyramid.level(finest), model_name=stage, iterations=settings.finishing_iterations,
                batch=settings.finishing_samples, first_step=_FINISH_FIRST_STEP * finest.spacing_mm,
                last_step=settings.min_step_mm / 2, min_overlap=settings.min_overlap,
                generator=torch.Generator().manual_seed(settings.seed * 1000 + 500 + stages.index(stage)),
            ))
        transform = model.result()
        if reports[-1].stop not in ("converged", "max_iterations"):
            break
    return transform


def _check_initial_overlap(level: LevelData, start: SpatialTransform, settings: RegistrationSettings) -> None:
    with torch.no_grad():
        _, overlap = level.evaluate(start.map_points(level.points))
    if float(overlap) < settings.min_overlap:
        raise InputError(
            f"the images do not overlap after initialisation (init={settings.init!r}): only {float(overlap):.0%} of the "
            "fixed samples fall inside the moving image; check that both carry correct world geometry, or use "
            "init='moments' or an initial_transform"
        )


def score(level: LevelData, transform: SpatialTransform) -> float:
    """Mattes MI (nats) of ``level``'s samples under ``transform`` (0 where nothing overlaps)."""
    with torch.no_grad():
        mi, overlap = level.evaluate(transform.map_points(level.points))
    return float(mi) if float(overlap) > 0 else 0.0


def evaluate_metric(fixed, moving, transform, *, fixed_mask=None, moving_mask=None, preset: str | None = None,
                    device=None, **options) -> float:
    """Mattes MI (nats) of ``moving`` mapped by ``transform`` against ``fixed``, at full resolution.

    The same scoring :func:`register` reports as ``metric_initial``/``metric_final`` for every
    backend; ``transform`` is a transform, a result or a RAS matrix.
    """
    settings = resolve_settings(preset, **options)
    fixed_img, moving_img, fixed_mask_t, moving_mask_t = prepare_pair(fixed, moving, fixed_mask, moving_mask, device)
    pyramid = _Pyramid(fixed_img, moving_img, fixed_mask_t, moving_mask_t, settings)
    return score(pyramid.scoring_level(), as_transform(transform, fixed_img.dims))


def _judge(reports: list[LevelReport], transform: SpatialTransform, metric_initial: float,
           metric_final: float) -> tuple[bool, str]:
    for report in reports:
        if report.stop not in ("converged", "max_iterations"):
            return False, f"{report.model} at shrink {report.shrink:g}: {report.stop}"
    if not np.isfinite(metric_final):
        return False, "the final metric is not finite"
    determinant = float(np.linalg.det(transform.linear_part().linear))
    if not (_DETERMINANT_RANGE[0] <= abs(determinant) <= _DETERMINANT_RANGE[1]) or determinant < 0:
        return False, f"degenerate transform (determinant {determinant:.3g} of its linear part)"
    folding = folding_problem(transform)
    if folding:
        return False, folding
    if metric_final < metric_initial - 1e-3:
        return False, f"the metric got worse ({metric_initial:.4f} -> {metric_final:.4f} nats)"
    last = [r for r in reports if not r.model.endswith("(stochastic finish)")][-1]  # the finish has a fixed budget
    if last.stop == "max_iterations":
        return False, (f"{last.model} did not converge at the finest level within {last.iterations} iterations "
                       "(raise iterations, or check the result)")
    return True, "converged"


def folding_problem(transform: SpatialTransform) -> str:
    """Why a deformable result folds (its displacement's Jacobian determinant reaches 0 somewhere), or ``""``.

    A folded map sends two places to one and turns space inside out between them: the resampled
    image looks plausible and is wrong there, so such a result is not reported as converged.
    """
    smallest, folded = deformation_regularity(transform)
    if folded > 0:
        return (f"the deformation folds in {folded:.2%} of its grid (Jacobian determinant down to {smallest:.2f}); "
                "raise the regularisation or use a coarser control grid")
    return ""


def adapter_result(fixed_img: SpatialImage, moving_img: SpatialImage, fixed_mask, moving_mask, settings: RegistrationSettings,
                   start: SpatialTransform, transform: SpatialTransform, *, seconds: float, backend: str,
                   iterations: tuple[int, ...], problem: str | None = None) -> RegistrationResult:
    """A :class:`RegistrationResult` for another backend's transform, scored and checked like ours.

    ``problem`` is the backend's own reason not to trust its result (e.g. an optimiser failure).
    """
    pyramid = _Pyramid(fixed_img, moving_img, fixed_mask, moving_mask, settings)
    scoring = pyramid.scoring_level()
    metric_initial, metric_final = score(scoring, start), score(scoring, transform)
    converged, reason = False, problem or ""
    if problem is None:
        determinant = float(np.linalg.det(transform.linear_part().linear))
        if not np.isfinite(metric_final):
            reason = "the final metric is not finite"
        elif not (_DETERMINANT_RANGE[0] <= determinant <= _DETERMINANT_RANGE[1]):
            reason = f"degenerate transform (determinant {determinant:.3g} of its linear part)"
        elif folding := folding_problem(transform):
            reason = folding
        elif metric_final < metric_initial - 1e-3:
            reason = f"the metric got worse ({metric_initial:.4f} -> {metric_final:.4f} nats)"
        else:
            converged, reason = True, "converged"
    return RegistrationResult(
        transform=transform, metric_initial=metric_initial, metric_final=metric_final, iterations=tuple(iterations),
        converged=converged, reason=reason, seconds=seconds, backend=backend, model="+".join(stages_of(settings.model)),
    )
