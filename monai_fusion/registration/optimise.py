"""The optimisation loop of one (stage, level): maximise MI minus a regulariser.

Deformable models get their gradient from autograd; linear models from a hand-chained product
(MI's gradient in the moving values, ``grid_sampler``'s backward kernel, the matrix's Jacobian in
the parameters), equal to autograd's and a fifth cheaper per iteration on a few thousand samples.

Two optimisers, both working in the models' scaled parameters (mm for linear models):

* ``"rprop"`` (iRprop-): every parameter has its own step in mm; it grows by 1.2 while the
  gradient keeps its sign and halves when the sign flips (the optimum was stepped over). Only the
  gradient's sign is used, so the scale of the metric does not matter, and the steps shrink
  exactly where the optimum is. The level has converged when every step is below the minimum.
* ``"adam"``: Adam with a step decaying geometrically from the first to the minimum step over the
  iteration budget; converged when the objective stops improving.

The loop stops early, without convergence, when the overlap between the images falls below
``min_overlap`` or the objective becomes NaN.

:func:`finish_stochastic` is an optional last phase for linear models at the finest level
(``finishing="stochastic"``): Adam on a fresh batch of fixed samples every iteration, the step
decaying geometrically, the parameters averaged over the second half. A fixed sample set makes the
metric a rough function whose optimum moves with small changes of the images (measured: a slight
resampling blur of the moving image moved it by 0.3 mm on the templates); fresh samples optimise
the expected metric, which is smoother, as elastix's stochastic gradient descent does.
"""

from __future__ import annotations

import math

import torch

from monai_fusion.registration.levels import LevelData, draw_random_indices
from monai_fusion.registration.result import LevelReport

__all__ = ["optimise_level", "finish_stochastic"]

#: Largest number of distinct fixed samples the stochastic finish draws (its batches cycle through them).
FINISH_POOL = 200_000

_GROW, _SHRINK = 1.2, 0.5
#: Adam has converged when the objective has not improved by this fraction for 10 iterations. 1e-6 let
#: weakly regularised B-spline fields creep on to the iteration limit (fitting detail worth nothing);
#: 1e-5 stops them in 170-230 iterations, and leaves the default's results as they were (exact case
#: 1.050 mm either way, T1<-PET 2.671 -> 2.663 mm consistency).
_STALL_TOLERANCE = 1e-5


def optimise_level(model, level: LevelData, *, model_name: str, iterations: int, first_step: float, min_step: float,
                   optimizer: str, min_overlap: float, regularisation: float = 0.0,
                   fold_penalty: float = 0.0) -> LevelReport:
    """Run one optimisation; the model's parameters are updated in place."""
    params = model.parameters

    linear = hasattr(model, "normalised_matrix")
    if linear:
        to_linear, to_offset = (t.detach().cpu().numpy() for t in level.to_moving_normalised)

    def objective() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if linear:
            mi, overlap, by_params = _linear_metric(model, level, to_linear, to_offset)
            return -mi, mi, overlap, -by_params
        mi, overlap = level.evaluate(model.map_points(level.points))
        loss = -mi
        if regularisation:
            loss = loss + regularisation * model.regulariser()
        if fold_penalty:
            loss = loss + fold_penalty * model.fold_penalty()
        return loss, mi, overlap, None

    def gradients(loss: torch.Tensor, loss_gradient) -> list[torch.Tensor]:
        return list(torch.autograd.grad(loss, params)) if loss_gradient is None else [loss_gradient]

    step = [torch.full_like(p, first_step) for p in params]
    previous = [torch.zeros_like(p) for p in params]
    adam = torch.optim.Adam(params, lr=first_step) if optimizer == "adam" else None
    decay = (min_step / first_step) ** (1.0 / max(iterations - 1, 1)) if adam is not None else 1.0
    best, stall = math.inf, 0
    metric_start = metric_end = float("nan")
    stop, done = "max_iterations", 0
    for iteration in range(iterations):
        loss, mi, overlap, loss_gradient = objective()
        loss_value, mi_value, overlap_value = float(loss.detach()), float(mi.detach()), float(overlap)
        if iteration == 0:
            metric_start = mi_value
        metric_end = mi_value
        if not math.isfinite(loss_value):
            stop = "the metric became NaN"
            break
        if overlap_value < min_overlap:
            stop = f"overlap fell to {overlap_value:.0%} of the fixed samples (below min_overlap={min_overlap:.0%})"
            break
        grads = gradients(loss, loss_gradient)
        done = iteration + 1
        if adam is not None:
            for p, g in zip(params, grads):
                p.grad = g
            adam.step()
            for group in adam.param_groups:
                group["lr"] *= decay
            improved = loss_value < best - _STALL_TOLERANCE * max(abs(best), 1e-3) if math.isfinite(best) else True
            best = min(best, loss_value)
            stall = 0 if improved else stall + 1
            if stall >= 10:
                stop = "converged"
                break
            continue
        with torch.no_grad():
            largest = 0.0
            for p, g, s, prev in zip(params, grads, step, previous):
                agreement = g * prev
                s.copy_(torch.where(agreement > 0, s * _GROW, torch.where(agreement < 0, s * _SHRINK, s)))
                s.clamp_(max=first_step * 4)
                active = g != 0  # parameters the samples do not reach keep their step; ignore them
                if bool(active.any()):
                    largest = max(largest, float(s[active].max()))
                g = torch.where(agreement < 0, torch.zeros_like(g), g)
                p.sub_(torch.sign(g) * s)
                prev.copy_(g)
        if largest < min_step:
            stop = "converged"
            break
    return LevelReport(model_name, level.spec.shrink, done, metric_start, metric_end, level.n_samples, stop)


def _linear_metric(model, level: LevelData, to_linear, to_offset):
    """``(MI, overlap, dMI/dparams)`` of a linear model: one product from fixed points to moving
    coordinates, its gradient chained by hand through the matrix's Jacobian (no autograd graph)."""
    combined, jacobian = model.normalised_matrix(to_linear, to_offset)
    mi, overlap, by_matrix = level.evaluate_normalised_matrix_with_gradient(combined)
    return mi, overlap, (jacobian.T @ by_matrix.reshape(-1)).to(model.parameters[0].dtype)


def finish_stochastic(model, level: LevelData, *, model_name: str, iterations: int, batch: int, first_step: float,
                      last_step: float, min_overlap: float, generator: torch.Generator) -> LevelReport:
    """Polish a linear model on fresh sample batches of ``level`` (see the module docstring).

    ``batch`` samples per iteration, drawn as ``level``'s own (random voxels inside the fixed mask,
    jittered) from a pool of at most :data:`FINISH_POOL`; Adam with the step decaying from
    ``first_step`` to ``last_step`` (mm); the result is the mean of the parameters over the second
    half of the iterations. ``metric_start``/``metric_end`` of the report are on the level's own samples.
    """
    params = model.parameters
    to_linear, to_offset = (t.detach().cpu().numpy() for t in level.to_moving_normalised)

    def level_metric() -> tuple[float, float]:
        combined, _ = model.normalised_matrix(to_linear, to_offset)
        with torch.no_grad():
            mi, overlap = level.evaluate_normalised_matrix(combined)
        return float(mi), float(overlap)

    metric_start, _ = level_metric()
    pool_size = min(FINISH_POOL, iterations * batch)
    index = draw_random_indices(level.fixed, level.fixed_mask, pool_size, generator)
    order = torch.randperm(index.shape[0], generator=generator)
    chunks = [torch.sort(order[i: i + batch]).values for i in range(0, index.shape[0] - batch + 1, batch)] or [order]
    pool = level.with_samples(index[torch.cat(chunks)])  # one pass over all batches, then views of it
    bounds = torch.cumsum(torch.tensor([0] + [c.numel() for c in chunks]), 0).tolist()
    batches = [pool.sample_range(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    optimiser = torch.optim.Adam(params, lr=first_step)
    decay = (last_step / first_step) ** (1.0 / max(iterations - 1, 1))
    average = [torch.zeros_like(p) for p in params]
    averaged, stop = 0, "converged"
    for iteration in range(iterations):
        mi, overlap, by_params = _linear_metric(model, batches[iteration % len(batches)], to_linear, to_offset)
        if not math.isfinite(float(mi.detach())):
            stop = "the metric became NaN"
            break
        if float(overlap) < min_overlap:
            stop = f"overlap fell to {float(overlap):.0%} of the fixed samples (below min_overlap={min_overlap:.0%})"
            break
        params[0].grad = -by_params
        optimiser.step()
        for group in optimiser.param_groups:
            group["lr"] *= decay
        if iteration >= iterations // 2:
            with torch.no_grad():
                for total, p in zip(average, params):
                    total.add_(p)
            averaged += 1
    if averaged:
        with torch.no_grad():
            for total, p in zip(average, params):
                p.copy_(total / averaged)
    metric_end, overlap = level_metric()
    if stop == "converged" and overlap < min_overlap:
        stop = f"overlap fell to {overlap:.0%} of the fixed samples (below min_overlap={min_overlap:.0%})"
    return LevelReport(f"{model_name} (stochastic finish)", level.spec.shrink, iterations, metric_start, metric_end, batch, stop)
