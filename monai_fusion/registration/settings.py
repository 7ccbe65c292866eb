"""Registration settings and the modality presets.

:class:`RegistrationSettings` holds every option of the engine with its default. A preset is a
named set of overrides; :func:`resolve_settings` applies, in order, the defaults, the preset and
the caller's explicit options, and validates the result, so a typo in an option name is an
error rather than a silently ignored keyword.

How the presets were chosen is in ``docs/registration.md`` (measured with
``benchmarks/registration.py`` on the SPM/MNI templates).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from monai_fusion.errors import InputError
from monai_fusion.registration.linear import LINEAR_MODELS

__all__ = ["RegistrationSettings", "PRESETS", "DEFORMABLE_MODELS", "resolve_settings", "stages_of"]

DEFORMABLE_MODELS = ("bspline", "dense", "diffeomorphic")
INITIALISERS = ("moments", "geometry", "identity")
SAMPLINGS = ("random", "regular", "full")
OPTIMIZERS = ("rprop", "adam")
FINISHINGS = ("off", "stochastic")
ORIENTATION_SEARCHES = ("off", "axes")


@dataclass(frozen=True)
class RegistrationSettings:
    """Options of :func:`~monai_fusion.registration.register` (torch backend; adapters map what they can).

    Attributes:
        model: a model or a sequence run in turn, each starting from the last result:
            ``"translation"``, ``"rigid"``, ``"similarity"``, ``"affine"``, ``"bspline"``,
            ``"dense"`` or ``"diffeomorphic"`` (e.g. ``("rigid", "affine", "bspline")``).
        metric: ``"mattes"`` (Mattes mutual information; the only one).
        levels: pyramid shrink factors, coarse to fine; level ``s`` has voxels of about ``s``
            times the finer image's smallest spacing.
        deformable_levels: shrink factors for deformable stages (they need less of the coarse end).
        smoothing_mm: Gaussian sigma (mm) per level; default half the level's voxel size, and at
            least one voxel of the finest level.
        working_spacing_mm: finest voxel size the pyramid goes down to; ``None``: the images' own
            finest voxel size. A 1 mm MRI registered at 2 mm costs an eighth of the time.
        bins: histogram bins.
        fixed_parzen_order: 3 (cubic window, as for the moving value: a smoother histogram) or 0
            (the fixed value in one bin, as ITK/elastix).
        sampling: ``"random"`` (random voxels of the fixed image, jittered inside the voxel),
            ``"regular"`` (a strided lattice with a random offset) or ``"full"``.
        sampling_fraction: fraction of fixed voxels (inside the fixed mask) sampled per level,
            clipped to ``[min_samples, max_samples]``.
        intensity_percentiles: intensity range mapped onto the histogram (robust to outliers).
        init: ``"moments"`` (align intensity centres of mass), ``"geometry"`` (align grid
            centres) or ``"identity"`` (trust the world coordinates); ignored when an
            ``initial_transform`` is given.
        orientation_search: ``"off"`` or ``"axes"``: before optimising, try the 24 axis-aligned
            rotations (4 in 2D) about the fixed centre of mass and start from a rotated pose when it
            is clearly better (:mod:`~monai_fusion.registration.orientation`): for pairs scanned
            in different positions. Linear starts only; ignored when ``initial_transform`` is given.
        orientation_candidates: rotated starts refined by the search (best coarse metric first).
        orientation_margin: relative metric gain a rotated start needs over the unrotated one.
        optimizer: ``"rprop"`` (sign-based steps in mm, per parameter, halved when the gradient
            changes sign; robust and deterministic) or ``"adam"``.
        deformable_optimizer: the optimiser of deformable stages: ``"adam"`` (default) or
            ``"rprop"``. Thousands of B-spline coefficients with noisy per-coefficient gradient
            signs make Rprop crawl to its iteration limit; Adam reaches the same optimum about three
            times sooner (measured on the templates, ``docs/registration.md``).
        finishing: ``"off"`` or ``"stochastic"``: after each linear stage's finest level, polish the
            result on fresh sample batches (Adam, averaged; :func:`~monai_fusion.registration.optimise.finish_stochastic`).
            More consistent results (recovery error of known motions on the 2 mm templates: rigid
            0.052-0.088 -> 0.024-0.064 mm, affine 0.092-0.165 -> 0.065-0.115 mm; a result's spread
            between sample seeds 0.06-0.30 -> 0.04-0.15 mm) for about 0.3 s
            more per linear stage there. Torch backend only (the adapters ignore it).
        finishing_iterations: iterations of the stochastic finish.
        finishing_samples: fixed samples per iteration of the stochastic finish.
        iterations: maximum iterations per level of linear stages (one value, or one per level).
        deformable_iterations: maximum iterations per level of a deformable stage.
        step_fraction: first step of the coarsest level as a fraction of its voxel size.
        refine_step_fraction: first step of every finer level, as a fraction of its voxel size
            (the level starts from the coarser level's answer).
        min_step_mm: the finest level has converged when every step is below this (mm).
        min_step_fraction: ... or below this fraction of the level's voxel size, whichever is larger.
        coarse_min_step_fraction: the same fraction for the coarser levels (0.04: 0.32 mm at an
            8 mm level). Stopping them earlier (0.08) saves their iterations but the finest level,
            the expensive one, then needs more: 2-3 % less time on moved template pairs.
        bspline_spacing_mm: control-point spacing of ``"bspline"``.
        field_spacing_mm: grid spacing of the ``"dense"``/``"diffeomorphic"`` fields.
        regularisation: weight of the bending energy (B-spline; default 0.002) or diffusion (dense,
            diffeomorphic; default 0.5) term. Lower values follow finer detail and can fold the field
            (a folded result is reported as not converged; docs/registration.md, "Presets").
        fold_penalty: weight of a penalty on the B-spline field's Jacobian determinant falling below
            0.5 (``mean(relu(0.5 - det J)**2)`` on a lattice of half the control spacing), added to
            the bending energy; 0 (default) turns it off. Lets a weak ``regularisation`` follow
            finer detail without folding (docs/registration.md, "Presets"). B-spline stages of the
            torch backend only (the adapters ignore it).
        min_overlap: stop (not converged) when fewer than this fraction of the fixed samples
            map inside the moving image (and mask).
        seed: seed of the sampling; the same seed gives the same result.
        cpu_threads: intra-op threads while optimising on CPU (torch's setting is restored
            afterwards; ``None`` leaves it alone). One is the fastest on small sample sets and
            immune to the slowdown of OpenMP threads on a busy machine.
    """

    model: str | tuple[str, ...] = "rigid"
    metric: str = "mattes"
    levels: tuple[float, ...] = (4, 2, 1)
    deformable_levels: tuple[float, ...] = (2, 1)
    smoothing_mm: tuple[float, ...] | None = None
    working_spacing_mm: float | None = None
    bins: int = 32
    fixed_parzen_order: int = 3
    sampling: str = "random"
    sampling_fraction: float = 0.05
    min_samples: int = 4000
    max_samples: int = 25000
    intensity_percentiles: tuple[float, float] = (0.0, 99.9)
    init: str = "moments"
    orientation_search: str = "off"
    orientation_candidates: int = 3
    orientation_margin: float = 0.05
    optimizer: str = "rprop"
    deformable_optimizer: str = "adam"
    finishing: str = "off"
    finishing_iterations: int = 100
    finishing_samples: int = 4000
    iterations: int | tuple[int, ...] = 100
    deformable_iterations: int = 250
    step_fraction: float = 0.5
    refine_step_fraction: float = 0.1
    min_step_mm: float = 0.01
    min_step_fraction: float = 0.005
    coarse_min_step_fraction: float = 0.04
    bspline_spacing_mm: float = 20.0
    field_spacing_mm: float = 4.0
    regularisation: float | None = None
    fold_penalty: float = 0.0
    min_overlap: float = 0.1
    seed: int = 0
    cpu_threads: int | None = 1

    def as_dict(self) -> dict:
        return asdict(self)


#: Modality presets (overrides of the defaults), chosen by measurement on the templates.
#: Everything else is the defaults above, themselves chosen on the same measurements: smoothing of
#: at least one voxel at the finest level, cubic fixed Parzen window, 25000 samples, Rprop.
PRESETS: dict[str, dict] = {
    "ct-mr": {"model": ("rigid",), "bins": 32},
    "pet-mr": {"model": ("rigid",), "bins": 24},
    "spect-mr": {"model": ("rigid",), "bins": 24},
    "mr-mr": {"model": ("rigid",), "bins": 48},
}


def stages_of(model) -> tuple[str, ...]:
    stages = (model,) if isinstance(model, str) else tuple(model)
    for stage in stages:
        if stage not in LINEAR_MODELS + DEFORMABLE_MODELS:
            raise InputError(f"unknown registration model {stage!r}; choose from {LINEAR_MODELS + DEFORMABLE_MODELS}")
    if not stages:
        raise InputError("give at least one registration model, e.g. model='rigid'")
    return stages


def resolve_settings(preset: str | None = None, **options) -> RegistrationSettings:
    """Defaults, then the preset, then ``options`` (``None`` values mean "not given").

    Raises:
        InputError: unknown preset or option, or an invalid value.
    """
    settings = RegistrationSettings()
    if preset is not None:
        key = preset.lower()
        if key not in PRESETS:
            raise InputError(f"unknown registration preset {preset!r}; choose from {sorted(PRESETS)}")
        settings = replace(settings, **PRESETS[key])
    names = {f.name for f in fields(RegistrationSettings)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InputError(f"unknown registration option(s) {unknown}; valid options are {sorted(names)}")
    given = {k: v for k, v in options.items() if v is not None}
    if "levels" in given:
        given["levels"] = tuple(given["levels"]) if not isinstance(given["levels"], (int, float)) else (given["levels"],)
    settings = replace(settings, **given)
    _validate(settings)
    return settings


def _validate(s: RegistrationSettings) -> None:
    stages_of(s.model)
    if s.metric != "mattes":
        raise InputError(f"unknown metric {s.metric!r}; the engine implements 'mattes' (Mattes mutual information)")
    if s.init not in INITIALISERS:
        raise InputError(f"unknown init {s.init!r}; choose from {INITIALISERS}")
    if s.orientation_search not in ORIENTATION_SEARCHES:
        raise InputError(f"unknown orientation_search {s.orientation_search!r}; choose from {ORIENTATION_SEARCHES}")
    if s.orientation_candidates < 0 or s.orientation_margin < 0:
        raise InputError("orientation_candidates and orientation_margin must be >= 0, got "
                         f"{s.orientation_candidates} and {s.orientation_margin}")
    if s.sampling not in SAMPLINGS:
        raise InputError(f"unknown sampling {s.sampling!r}; choose from {SAMPLINGS}")
    if s.optimizer not in OPTIMIZERS or s.deformable_optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {s.optimizer!r} / deformable_optimizer {s.deformable_optimizer!r}; "
                         f"choose from {OPTIMIZERS}")
    if not s.fold_penalty >= 0:
        raise InputError(f"fold_penalty must be >= 0, got {s.fold_penalty}")
    if s.fold_penalty > 0 and any(stage in ("dense", "diffeomorphic") for stage in stages_of(s.model)):
        raise InputError("fold_penalty applies to the 'bspline' model only; use the 'diffeomorphic' model for a "
                         "fold-free dense field")
    if s.finishing not in FINISHINGS:
        raise InputError(f"unknown finishing {s.finishing!r}; choose from {FINISHINGS}")
    if s.finishing_iterations < 1 or s.finishing_samples < 100:
        raise InputError(f"finishing_iterations must be >= 1 and finishing_samples >= 100, got "
                         f"{s.finishing_iterations} and {s.finishing_samples}")
    if not 8 <= s.bins <= 256:
        raise InputError(f"bins must be between 8 and 256, got {s.bins}")
    if s.fixed_parzen_order not in (0, 1, 3):
        raise InputError(f"fixed_parzen_order must be 0, 1 or 3, got {s.fixed_parzen_order}")
    if not 0 < s.sampling_fraction <= 1:
        raise InputError(f"sampling_fraction must be in (0, 1], got {s.sampling_fraction}")
    if any(float(v) < 1 for v in tuple(s.levels) + tuple(s.deformable_levels)):
        raise InputError(f"levels are shrink factors >= 1, got {s.levels} / {s.deformable_levels}")
    if s.smoothing_mm is not None and (np.ndim(s.smoothing_mm) != 1 or len(s.smoothing_mm) != len(tuple(s.levels))):
        raise InputError(f"give one smoothing_mm value per level: {len(tuple(s.levels))} levels, got {s.smoothing_mm}")
    lo, hi = s.intensity_percentiles
    if not 0 <= lo < hi <= 100:
        raise InputError(f"intensity_percentiles must satisfy 0 <= lo < hi <= 100, got {s.intensity_percentiles}")
