"""``monai_fusion.fuse``: the end-to-end fusion pipeline, from two images to a fused, reported result.

Steps (each timed in the report):

1. **load** each input (DICOM folder/file, NIfTI, NRRD, MHA, or a MetaTensor) with
   :func:`~monai_fusion.io.load_image` and refuse what cannot be fused (2D, colour, NaN, constant);
2. **check** the modalities against the task (DICOM ``Modality`` tags; untagged images trusted,
   see :mod:`~monai_fusion.workflows.fuse_inputs`);
3. **register** the other image to the reference with :func:`~monai_fusion.registration.register`
   and the task's modality preset (``rigid``, ``affine`` = rigid then affine, ``deformable`` =
   rigid then B-spline, or ``none``: world coordinates trusted);
4. **resample** it on the reference grid (linear interpolation, zero outside its field of view);
5. **normalise** both to 0..1 by modality
   (:class:`~monai_fusion.transforms.NormalizeModality`): MR percentiles 0.5..99.5, CT the
   ``ct_window`` (bone by default: the skull is what CT adds to an MRI), PET SUV 0..10 when in
   SUV else percentiles, SPECT percentiles;
6. **fuse** with ``method`` (:mod:`~monai_fusion.workflows.methods`; classical rules slice by
   slice along the axial axis). For PET/SPECT the functional image is shown in the hot colour
   map, its luma is fused with the MRI and its chroma reattached (YCbCr colour fusion, the
   literature's standard); the grey ``fused`` output is that fused luma;
7. **metrics** (:func:`~monai_fusion.metrics.compute_metrics`) on three axial slices through the
   reference's foreground (seconds, not minutes);
8. **write** everything into a temporary folder beside ``out_dir`` and rename it into place when
   complete: nothing half-written survives a failure.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError, OutputError
from monai_fusion.rules import FusionResult, rgb_to_ycbcr, ycbcr_to_rgb
from monai_fusion.workflows.fuse_inputs import (
    FusionTask,
    assign_modalities,
    describe_input,
    load_input,
    modality_name,
    resolve_task,
)
from monai_fusion.workflows.methods import resolve_method

__all__ = ["fuse", "FusionRun", "REGISTRATIONS", "FORMATS", "METRIC_NAMES", "hot_colour_map", "run_summary", "format_summary"]

#: Registration choices -> models run in turn.
REGISTRATIONS: dict[str, tuple[str, ...] | None] = {
    "rigid": ("rigid",),
    "affine": ("rigid", "affine"),
    "deformable": ("rigid", "bspline"),
    "none": None,
}
FORMATS = ("nifti", "nrrd", "dicom")
REFERENCES = ("fixed", "moving")
#: The fast metric subset of the report (all cheap on a few 2D slices).
METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "CC", "SSIM", "Qabf")
_STEPS = ("load", "check", "register", "resample", "normalise", "fuse", "metrics", "write")


@dataclass
class FusionRun:
    """The outcome of :func:`fuse`.

    Attributes:
        fused: fused grey image ``(1, I, J, K)`` on 0..1 on the reference grid (for PET/SPECT the
            fused luma of the colour product).
        moving_resampled: the other (registered) image on the reference grid, in its own units.
        colour: ``(3, I, J, K)`` uint8 RGB colour fusion for PET/SPECT tasks, else None.
        contribution: per-voxel weight of the reference image in the fused one, 0..1.
        registration: the :class:`~monai_fusion.registration.RegistrationResult` (None for ``"none"``).
        report: the JSON-friendly report (also ``report.json``).
        outputs: output name -> path of what was written (empty without ``out_dir``).
        reference: the reference image as loaded.
    """

    fused: MetaTensor
    moving_resampled: MetaTensor
    colour: MetaTensor | None
    contribution: MetaTensor
    registration: object | None
    report: dict
    outputs: dict[str, Path] = field(default_factory=dict)
    reference: MetaTensor | None = None


def hot_colour_map(values: torch.Tensor) -> torch.Tensor:
    """Values on 0..1 ``(1, ...)`` -> the classic 'hot' colour map ``(3, ...)`` on 0..1 (float)."""
    v = values.clamp(0.0, 1.0)
    return torch.cat([(3 * v).clamp(0, 1), (3 * v - 1).clamp(0, 1), (3 * v - 2).clamp(0, 1)])


class _Clock:
    """Times the pipeline's steps and drives the optional progress bar."""

    def __init__(self, progress: bool) -> None:
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()
        self.bar = None
        self.current: tuple[str, float] | None = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(_STEPS), desc="fuse", unit="step", leave=False, disable=None)  # None: off when not a terminal

    @contextlib.contextmanager
    def step(self, name: str):
        if self.bar is not None:
            self.bar.set_description(f"fuse: {name}")
        start = time.perf_counter()
        self.current = (name, start)
        yield
        self.current = None
        self.timings[name] = round(time.perf_counter() - start, 3)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> float:
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.started


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise InputError(f"threads must be a positive number, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_arguments(task, method, registration, formats, reference, out_dir, overwrite):
    task_info = resolve_task(task)
    method_fn = resolve_method(method, task_info.name)
    if registration not in REGISTRATIONS:
        raise InputError(f"unknown registration {registration!r}; choose one of: {', '.join(REGISTRATIONS)}")
    formats = tuple(formats) if not isinstance(formats, str) else tuple(f.strip() for f in formats.split(","))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown output format(s) {unknown or formats}; choose from: {', '.join(FORMATS)}")
    if reference not in REFERENCES:
        raise InputError(f"reference must be 'fixed' or 'moving', not {reference!r}")
    if out_dir is not None:
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"{out_dir} exists and is not a folder; choose another output folder")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
            raise OutputError(f"output folder {out_dir} is not empty; remove it, choose another, or allow overwriting")
    return task_info, method_fn, formats, out_dir


def _clean_meta_image(values: torch.Tensor, grid_image: MetaTensor, **meta) -> MetaTensor:
    """A MetaTensor on ``grid_image``'s grid with only geometry and ``meta`` (no source file lists)."""
    affine = torch.as_tensor(grid_image.affine, dtype=torch.float64).clone()
    spacing = tuple(float(v) for v in np.linalg.norm(affine.numpy()[:3, :3], axis=0))
    base = {"affine": affine, "original_affine": affine.clone(), "spatial_shape": np.asarray(values.shape[1:]),
            "space": "RAS", "spacing": spacing}
    return MetaTensor(values, meta={**base, **meta})


#: The pipeline searches the axis-aligned starting poses (``registration.orientation``): about a
#: second, and it keeps the scanners' pose unless a rotated one is clearly better, so pairs scanned
#: in different positions (the MRI-DIR phantom: 180 degrees about A-P) no longer register to a wrong
#: local optimum. ``registration_options={"orientation_search": "off"}`` turns it off; with
#: ``backend="elastix"`` it is off (elastix cannot start from the searched pose).
PIPELINE_ORIENTATION_SEARCH = "axes"
#: ... and finishes each linear stage on fresh sample batches (``finishing="stochastic"``, torch
#: backend): about 0.3-0.5 s more, and results that depend less on the sample set and on how the
#: moving image lies on its grid (recovery of known motions on the templates up to 3x tighter,
#: unchanged on rigid T1<-CT; ``docs/registration.md``). ``registration_options={"finishing": "off"}`` turns it off.
PIPELINE_FINISHING = "stochastic"


def _register(task: FusionTask, reference: MetaTensor, other: MetaTensor, registration: str, options: dict):
    from monai_fusion.registration import register
    from monai_fusion.registration.spatial import AffineTransform

    models = REGISTRATIONS[registration]
    if models is None:
        return None, AffineTransform.identity(3)
    # elastix takes no starting transform, so it cannot start from a searched pose
    default_search = "off" if options.get("backend") == "elastix" else PIPELINE_ORIENTATION_SEARCH
    defaults = {"orientation_search": default_search}
    if options.get("backend", "torch") == "torch":
        defaults["finishing"] = PIPELINE_FINISHING
    options = {**defaults, **options}
    result = register(reference, other, model=models, preset=task.preset, **options)
    if result.orientation is not None and result.orientation.rotated:
        warnings.warn(f"the images were scanned in different poses: registration started from a rotation of "
                      f"{result.orientation.description} (Mattes MI {result.orientation.metric_chosen:.3f} against "
                      f"{result.orientation.metric_unrotated:.3f} unrotated); check the QC report", stacklevel=3)
    if not result.converged:
        warnings.warn(f"registration did not converge ({result.reason}); check the QC report before using the result",
                      stacklevel=3)
    return result, result.transform


def _normalise(image: MetaTensor, modality: str, ct_window) -> tuple[torch.Tensor, dict]:
    from monai_fusion.transforms.intensity import NormalizeModality

    units = image.meta.get("units") or "unknown"
    out = NormalizeModality(modality=modality, ct_window=ct_window, units=units)(image)
    return out.as_tensor().float(), dict(out.meta["intensity_normalisation"])


def _fuse(method_fn, task: FusionTask, ref_unit: MetaTensor, other_unit: MetaTensor, ref_is_anatomical: bool):
    """(fused grey, weight of the reference, colour or None, the grey sources as fused)."""
    if not task.colour:
        result = method_fn(ref_unit, other_unit)
        return result.fused, result.weight, None, (ref_unit.as_tensor(), other_unit.as_tensor())
    functional = other_unit if ref_is_anatomical else ref_unit
    ycbcr = rgb_to_ycbcr(hot_colour_map(functional.as_tensor()), max_value=1.0)
    luma = MetaTensor(ycbcr[:1].float(), affine=ref_unit.affine)
    a, b = (ref_unit, luma) if ref_is_anatomical else (luma, other_unit)
    result: FusionResult = method_fn(a, b)
    fused_luma = result.fused.clamp(0, 1)
    rgb = ycbcr_to_rgb(torch.cat([fused_luma.to(ycbcr.dtype), ycbcr[1:]]), max_value=1.0, clip=True)
    colour = torch.round(rgb * 255).to(torch.uint8)
    return fused_luma, result.weight, colour, (a.as_tensor(), b.as_tensor())


def _metric_slices(unit: torch.Tensor, axis: int, count: int = 3) -> list[int]:
    """``count`` axial slices spread over the middle of the foreground (voxels > 10 % of the max)."""
    profile = (unit[0] > 0.1 * float(unit.max())).float().movedim(axis, 0).flatten(1).sum(1)
    occupied = torch.nonzero(profile > 0.1 * float(profile.max())).flatten().tolist() or [unit.shape[axis + 1] // 2]
    low, high = occupied[0], occupied[-1]
    return sorted({int(round(low + (high - low) * f)) for f in np.linspace(0.35, 0.65, count)})


def _metrics(sources: tuple[torch.Tensor, torch.Tensor], fused: torch.Tensor, axis: int) -> tuple[dict, str]:
    from monai_fusion.metrics import compute_metrics

    a, b = sources
    slices = _metric_slices(a, axis)
    values: dict[str, list[float]] = {}
    for k in slices:
        take = lambda x: (x[0].movedim(axis, 0)[k] * 255.0).double().numpy()  # noqa: E731
        for name, value in compute_metrics(take(a), take(b), take(fused), names=list(METRIC_NAMES)).items():
            values.setdefault(name, []).append(value)
    scope = (f"mean over axial slices {slices} of (reference, other, fused) on 0..255, convention 'default'; "
             "for PET/SPECT the other image is the luma of its colour map and the fused image the fused luma")
    return {name: round(float(np.mean(v)), 5) for name, v in values.items()}, scope


def fuse(fixed, moving, *, task: str = "ct-mri", method: str = "laplacian_pyramid", registration: str = "rigid",
         out_dir=None, formats=("nifti",), reference: str = "fixed", threads: int | None = None,
         progress: bool = False, qc: bool = True, overwrite: bool = False, modalities=None,
         ct_window="bone", registration_options: dict | None = None) -> FusionRun:
    """Register, fuse and report two images of one patient.

    Args:
        fixed: the anatomical image (MRI for every task by default): a DICOM folder/file, a
            NIfTI/NRRD/MHA path, or a MetaTensor ``(1, I, J, K)``.
        moving: the other image (CT, PET or SPECT), same kinds.
        task: ``"ct-mri"``, ``"mri-pet"`` or ``"mri-spect"``.
        method: a classical rule of :data:`monai_fusion.rules.RULES` or a learned method of
            :data:`~monai_fusion.workflows.methods.NETWORK_METHODS`.
        registration: ``"rigid"``, ``"affine"``, ``"deformable"`` or ``"none"``.
        out_dir: folder for the outputs (written atomically); None: nothing is written.
        formats: any of ``"nifti"``, ``"nrrd"``, ``"dicom"`` (or a comma-separated string).
        reference: the grid to fuse on: ``"fixed"`` (default) or ``"moving"``.
        threads: torch CPU threads during the run (restored afterwards); None leaves torch's setting.
        progress: show a progress bar over the steps (stderr).
        qc: write the QC montage ``qc.png`` and ``report.html``.
        overwrite: replace a non-empty ``out_dir`` (only once the new outputs are complete).
        modalities: ``(fixed, moving)`` modality codes (``"MR"``, ``"CT"``, ``"PT"``, ``"NM"``) for
            untagged images whose order is not the default (anatomical first).
        ct_window: CT window preset or ``(width, level)`` (see ``NormalizeModality``).
        registration_options: extra options of :func:`~monai_fusion.registration.register`
            (``levels``, ``iterations``, ``working_spacing_mm``, ``backend``...).

    Returns:
        :class:`FusionRun`.

    Raises:
        InputError: unusable inputs or options (one line; nothing is written).
        OutputError: the output folder cannot be written.

    Example:
        >>> run = fuse("mri/", "ct/", task="ct-mri", out_dir="out", formats=("nifti", "dicom"))  # doctest: +SKIP
        >>> run.outputs["fused"], run.report["registration"]["converged"]  # doctest: +SKIP
    """
    task_info, method_fn, formats, out_dir = _check_arguments(task, method, registration, formats, reference,
                                                              out_dir, overwrite)
    clock = _Clock(progress)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records, _torch_threads(threads):
        warnings.simplefilter("always")
        try:
            run = _pipeline(fixed, moving, task_info, method, method_fn, registration, out_dir, formats, reference, qc,
                            overwrite, modalities, ct_window, dict(registration_options or {}), clock, caught, records)
        finally:
            clock.close()
    for message, category in dict.fromkeys((str(r.message), r.category) for r in records):
        warnings.warn(message, category, stacklevel=2)  # re-emitted once each for the caller (the CLI prints them)
    return run


def _pipeline(fixed, moving, task, method, method_fn, registration, out_dir, formats, reference, qc, overwrite,
              modalities, ct_window, registration_options, clock: _Clock, caught: list[str], records) -> FusionRun:
    with clock.step("load"):
        fixed_img, moving_img = load_input(fixed, "fixed"), load_input(moving, "moving")
    with clock.step("check"):
        fixed_mod, moving_mod = assign_modalities(task, fixed_img, moving_img, modalities)
        inputs = {"fixed": describe_input(fixed_img, fixed_mod), "moving": describe_input(moving_img, moving_mod)}
        if reference == "fixed":
            ref_img, other_img, ref_mod, other_mod = fixed_img, moving_img, fixed_mod, moving_mod
        else:
            ref_img, other_img, ref_mod, other_mod = moving_img, fixed_img, moving_mod, fixed_mod
        del fixed_img, moving_img
    with clock.step("register"):
        result, transform = _register(task, ref_img, other_img, registration, registration_options)
    with clock.step("resample"):
        from monai_fusion.registration import resample

        # outside its field of view the image holds its minimum ("nothing": air for CT, not 0 HU = water)
        floor = float(other_img.min())
        moved = resample(other_img - floor, transform, ref_img).as_tensor() + floor
        moving_resampled = _clean_meta_image(moved, ref_img, modality=other_mod, units=other_img.meta.get("units"))
    with clock.step("normalise"):
        ref_values, ref_record = _normalise(ref_img, ref_mod, ct_window)
        other_values, other_record = _normalise(moving_resampled, other_mod, ct_window)
        ref_unit = MetaTensor(ref_values, affine=ref_img.affine)
        other_unit = MetaTensor(other_values, affine=ref_img.affine)
    with clock.step("fuse"):
        fused_values, weight, colour_values, sources = _fuse(method_fn, task, ref_unit, other_unit,
                                                             ref_is_anatomical=ref_mod == task.anatomical)
        from monai_fusion.workflows.methods import axial_axis_of

        axis = axial_axis_of(ref_unit)
        fused = _clean_meta_image(fused_values.float(), ref_img, modality=ref_mod, units="normalised",
                                  content=f"fused {task.name} ({method})")
        contribution = _clean_meta_image(weight.float().clamp(0, 1), ref_img, units="weight",
                                         content=f"weight of the reference ({modality_name(ref_mod)}) in the fused image")
        colour = None if colour_values is None else _clean_meta_image(colour_values, ref_img, is_rgb=True,
                                                                       content=f"colour fusion {task.name} ({method})")
    with clock.step("metrics"):
        metrics, metrics_scope = _metrics(sources, fused_values, axis)
    report = {
        "task": task.name,
        "method": method,
        "reference": {"role": reference, "modality": ref_mod, "modality_name": modality_name(ref_mod)},
        "inputs": inputs,
        "registration": None if result is None else {**result.summary(), "requested": registration},
        "normalisation": {"reference": ref_record, "other": other_record},
        "metrics": metrics,
        "metrics_scope": metrics_scope,
        "fusion_axis": int(axis),
        "contribution_mean": round(float(contribution.as_tensor().double().mean()), 5),
        "timings": clock.timings,
    }
    from monai_fusion.workflows.report import software_versions

    report["versions"] = software_versions()
    run = FusionRun(fused=fused, moving_resampled=moving_resampled, colour=colour, contribution=contribution,
                    registration=result, report=report, reference=ref_img)
    qc_columns = _qc_columns(ref_unit, other_img, other_record, other_unit, fused, colour) if qc else None
    with clock.step("write"):
        if out_dir is not None:
            from monai_fusion.workflows.fuse_outputs import write_outputs

            run.outputs = write_outputs(run, out_dir, formats, transform, qc_columns, overwrite,
                                        finalise=lambda r: _finalise(r, clock, records, caught))
        else:
            _finalise(report, clock, records, caught)
    return run


def _finalise(report: dict, clock: _Clock, records, caught: list[str]) -> dict:
    """Last fields of the report: timings so far, total seconds, the warnings raised during the run."""
    # the report keeps the warnings meant for users (not library deprecation notices)
    caught.extend(str(r.message) for r in records if issubclass(r.category, UserWarning) and str(r.message) not in caught)
    report["timings"] = dict(clock.timings)
    if clock.current is not None:  # the step still running (writing): its time up to the report
        report["timings"][clock.current[0]] = round(time.perf_counter() - clock.current[1], 3)
    report["seconds"] = round(time.perf_counter() - clock.started, 3)
    report["warnings"] = list(dict.fromkeys(caught))
    return report


def _qc_columns(ref_unit, other_img, other_record, other_unit, fused, colour) -> dict:
    """The QC montage's columns; the "unregistered" one resamples the raw image through the identity."""
    from monai_fusion.workflows.qc import QCColumn

    scale, offset = float(other_record["scale"][0]), float(other_record["offset"][0])
    floor = float(other_img.min())  # padding outside the field of view, as in the resampling step
    to_unit = lambda plane: np.clip(scale * plane + offset, 0.0, 1.0)  # noqa: E731  same map as the normalisation
    columns = {
        "reference": QCColumn(ref_unit),
        "moving, unregistered": QCColumn(MetaTensor(other_img.as_tensor() - floor, affine=other_img.affine), None,
                                         lambda plane: to_unit(plane + floor)),
        "moving, registered": QCColumn(other_unit),
        "fused": QCColumn(MetaTensor(colour.as_tensor().float() / 255.0, affine=fused.affine)) if colour is not None else QCColumn(fused),
    }
    return columns


def run_summary(run: FusionRun) -> dict:
    """The command line's summary of a run (``--json``): outputs, registration, metrics, timings."""
    registration = run.report.get("registration") or {}
    return {
        "task": run.report["task"],
        "method": run.report["method"],
        "outputs": {name: str(path) for name, path in run.outputs.items()},
        "registration": {k: registration.get(k) for k in ("model", "converged", "reason", "metric_initial",
                                                          "metric_final", "seconds")}
        | {"start_rotation": (registration.get("orientation_search") or {}).get("rotation", "not searched")}
        if registration else None,
        "metrics": run.report["metrics"],
        "timings": run.report["timings"],
        "seconds": run.report.get("seconds"),
        "warnings": run.report.get("warnings", []),
    }


def format_summary(run: FusionRun) -> str:
    """A few human-readable lines about a run."""
    report = run.report
    lines = [f"fused {report['task']} with {report['method']} on the {report['reference']['modality_name']} grid "
             f"in {report.get('seconds', 0):.1f} s"]
    registration = report.get("registration")
    if registration:
        state = "converged" if registration["converged"] else f"NOT converged ({registration['reason']})"
        search = registration.get("orientation_search") or {}
        rotated = f", started turned {search['rotation']}" if search.get("rotated") else ""
        lines.append(f"registration: {registration['model']}, {state}, Mattes MI {registration['metric_initial']:.3f} "
                     f"-> {registration['metric_final']:.3f}{rotated}")
    else:
        lines.append("registration: none (world coordinates trusted)")
    lines.append("metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in report["metrics"].items()))
    if run.outputs:
        folder = Path(next(iter(run.outputs.values()))).parent
        lines.append(f"outputs in {folder}: " + ", ".join(sorted(Path(p).name for p in run.outputs.values())))
        if "report_html" in run.outputs:
            lines.append(f"QC report: {run.outputs['report_html']}")
    return "\n".join(lines)
