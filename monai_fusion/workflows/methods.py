"""Fusion methods of the pipeline: names -> callables ``(reference_unit, other_unit) -> FusionResult``.

A *method* takes the reference (anatomical) image and the other image, both channel-first
``(1, *spatial)`` on 0..1 and on one grid (MetaTensors carrying the reference affine, so a method
can find the axial axis), and returns a :class:`~monai_fusion.rules.FusionResult` whose ``fused``
is on 0..1 and whose ``weight`` is the per-voxel weight of the reference.

* **Classical rules** (:data:`monai_fusion.rules.RULES`) are run slice by slice along the axial
  axis (the grid axis closest to world superior-inferior): the rules were designed and validated on
  2D axial slices (the Harvard atlas), clinical voxels are often anisotropic (2.5 mm slices under
  0.5 mm pixels, which a 3D pyramid or filter would treat unevenly), and slices keep memory flat.
  Rule options come from :data:`RULE_OPTIONS` (defaults of the rules otherwise).
* **Learned methods** live in :data:`NETWORK_METHODS`, filled by :mod:`monai_fusion.networks`
  integrations (e.g. ``"network"``: the flagship bundle network run slice-wise). A learned
  method gets the whole volumes and does its own slicing or sliding windows.

Example:
    >>> import torch
    >>> method = resolve_method("average", "ct-mri")
    >>> result = method(torch.zeros(1, 4, 5, 6), torch.ones(1, 4, 5, 6))
    >>> float(result.fused.mean()), float(result.weight.mean())
    (0.5, 0.5)
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Callable

import numpy as np
import torch

from monai_fusion.errors import InputError
from monai_fusion.rules import RULES, FusionResult, check_rule
from monai_fusion.rules.inputs import max_levels

__all__ = ["NETWORK_METHODS", "RULE_OPTIONS", "FusionMethod", "available_methods", "resolve_method", "axial_axis_of"]

FusionMethod = Callable[[torch.Tensor, torch.Tensor], FusionResult]

#: Learned fusion methods by name, filled by the networks integration: each value is a callable
#: ``(reference_unit, other_unit) -> FusionResult`` on whole ``(1, *spatial)`` volumes (0..1), or a
#: factory ``task -> callable`` marked with ``factory = True``. Empty until networks register.
NETWORK_METHODS: dict[str, Callable] = {}

#: Options the pipeline passes to classical rules (per rule; the rule's defaults otherwise).
RULE_OPTIONS: dict[str, dict] = {}


def available_methods() -> list[str]:
    """Names :func:`resolve_method` accepts: the classical rules, then the learned methods."""
    return [*RULES, *sorted(NETWORK_METHODS)]


def axial_axis_of(image) -> int:
    """Spatial axis (0..2) of a ``(C, I, J, K)`` image closest to world superior-inferior (last axis without affine)."""
    affine = getattr(image, "affine", None)
    if affine is None or image.ndim != 4:
        return image.ndim - 2
    matrix = np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu().numpy())[:3, :3]
    directions = matrix / np.linalg.norm(matrix, axis=0, keepdims=True)
    return int(np.argmax(np.abs(directions[2])))


@contextlib.contextmanager
def single_thread():
    """One intra-op CPU thread inside the block (restored after).

    A 512x512 slice is a few milliseconds of work: a second OpenMP thread gains nothing, and on a
    busy machine threads waiting for each other made each slice ~50x slower (measured 30 ms with
    one thread, 1.5-2.7 s with two, on a loaded 2-core machine), as the registration engine found.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plain(image: torch.Tensor) -> torch.Tensor:
    return image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)


def slicewise_rule(name: str, options: dict | None = None) -> FusionMethod:
    """A classical rule run on each axial slice of 3D inputs (2D inputs are fused directly)."""
    options = dict(options or {})
    rule = check_rule(name, options)
    default_levels = inspect.signature(rule).parameters.get("levels")

    def run(reference_unit: torch.Tensor, other_unit: torch.Tensor) -> FusionResult:
        axis = axial_axis_of(reference_unit)
        a, b = _plain(reference_unit).float(), _plain(other_unit).float()
        call_options = dict(options)
        if default_levels is not None and "levels" not in options:  # small slices: as deep as they allow
            plane = [s for i, s in enumerate(a.shape[1:]) if a.ndim == 3 or i != axis]
            call_options["levels"] = max(1, min(int(default_levels.default), max_levels(tuple(plane), 4)))
        if a.ndim == 3:
            result = rule(a, b, **call_options)
            return FusionResult(result.fused.clamp(0, 1), result.weight.clamp(0, 1))
        # slices made contiguous first: strided views (e.g. axial planes of an LPS DICOM grid) are 10x slower
        planes_a, planes_b = a[0].movedim(axis, 0).contiguous(), b[0].movedim(axis, 0).contiguous()
        fused, weight = torch.empty_like(planes_a), torch.empty_like(planes_a)
        with single_thread():
            for k in range(planes_a.shape[0]):
                result = rule(planes_a[k:k + 1], planes_b[k:k + 1], **call_options)
                fused[k], weight[k] = result.fused[0], result.weight[0]
        fused, weight = fused.movedim(0, axis)[None].contiguous(), weight.movedim(0, axis)[None].contiguous()
        return FusionResult(fused.clamp_(0, 1), weight.clamp_(0, 1))

    run.__name__ = f"slicewise_{name}"
    run.method_name = name
    return run


def detail_fusion_network(task: str) -> FusionMethod:
    """Our trained :class:`~monai_fusion.networks.DetailFusionNet` for ``task``, run slice by slice
    along the axial axis (the weights of the task's bundle, shipped in the package)."""
    from monai_fusion.networks import fuse_with_network
    from monai_fusion.networks.detail_fusion import load_detail_fusion

    net = load_detail_fusion(task)

    def run(reference_unit: torch.Tensor, other_unit: torch.Tensor) -> FusionResult:
        a, b = _plain(reference_unit).float(), _plain(other_unit).float()
        axis = axial_axis_of(reference_unit) if a.ndim == 4 else None
        fused, weight = fuse_with_network(net, a, b, axis=axis)
        return FusionResult(fused, weight)

    run.method_name = "network"
    return run


detail_fusion_network.factory = True
NETWORK_METHODS["network"] = detail_fusion_network


def resolve_method(name: str, task: str) -> FusionMethod:
    """The callable for fusion method ``name`` in ``task`` (``ct-mri``, ``mri-pet``, ``mri-spect``).

    Raises:
        InputError: unknown name (the message lists the available methods).
    """
    if name in NETWORK_METHODS:
        entry = NETWORK_METHODS[name]
        return entry(task) if getattr(entry, "factory", False) else entry
    if name in RULES:
        return slicewise_rule(name, RULE_OPTIONS.get(name))
    raise InputError(f"unknown fusion method {name!r}; available methods: {', '.join(available_methods())}")
