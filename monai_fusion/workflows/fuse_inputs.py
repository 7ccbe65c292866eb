"""Inputs of the fusion pipeline: the tasks, loading, and which image is which modality.

A *task* names the two modalities: ``ct-mri`` (CT and MR), ``mri-pet`` (MR and PT), ``mri-spect``
(MR and NM, DICOM's code for SPECT). The MRI is the anatomical image and, by default, the
reference (fixed) image (GUIDE §3): give it as ``fixed``.

Modalities come from the images themselves when they carry one (DICOM ``Modality``, or
``meta["modality"]`` of a MetaTensor): a pair that does not match the task is refused with one
line naming what was found. NIfTI/NRRD files carry no modality, so the user is trusted: an
unlabelled image gets the modality the task leaves for it, ``fixed`` the MRI by default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.io import load_image

__all__ = ["TASKS", "FusionTask", "load_input", "assign_modalities", "check_input", "describe_input", "inputs_from_options"]

_MODALITY_NAMES = {"CT": "CT", "MR": "MRI", "PT": "PET", "NM": "SPECT"}
_ALIASES = {"MRI": "MR", "PET": "PT", "SPECT": "NM", "ST": "NM"}


@dataclass(frozen=True)
class FusionTask:
    """What a task fuses and how: modalities, registration preset, colour product."""

    name: str
    anatomical: str  # DICOM modality code of the anatomical image (the default reference)
    other: str  # DICOM modality code of the second image
    preset: str  # registration preset of monai_fusion.registration.PRESETS
    colour: bool  # functional image shown in pseudo-colour (hot map) and fused in YCbCr

    @property
    def modalities(self) -> tuple[str, str]:
        return self.anatomical, self.other

    def needs(self) -> str:
        return f"one {_MODALITY_NAMES[self.anatomical]} and one {_MODALITY_NAMES[self.other]}"


TASKS: dict[str, FusionTask] = {
    "ct-mri": FusionTask("ct-mri", "MR", "CT", "ct-mr", colour=False),
    "mri-pet": FusionTask("mri-pet", "MR", "PT", "pet-mr", colour=True),
    "mri-spect": FusionTask("mri-spect", "MR", "NM", "spect-mr", colour=True),
}


def resolve_task(task: str) -> FusionTask:
    key = str(task).lower()
    if key not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[key]


def modality_name(code: str | None) -> str:
    return _MODALITY_NAMES.get(code or "", code or "unknown")


def _code(value) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).upper()
    return _ALIASES.get(text, text)


def load_input(source, role: str) -> MetaTensor:
    """Load ``source`` (a path or a MetaTensor) as a single-channel 3D MetaTensor."""
    if isinstance(source, MetaTensor):
        image = source
    elif isinstance(source, (str, os.PathLike)):
        image = load_image(Path(source))
    else:
        raise InputError(f"the {role} image must be a path or a MetaTensor, not {type(source).__name__}")
    check_input(image, role)
    return image


def check_input(image: MetaTensor, role: str) -> None:
    """Refuse what the pipeline cannot fuse: colour, several channels, 2D, NaN/Inf, constant images."""
    if image.ndim != 4:
        shape = tuple(image.shape)
        raise InputError(f"the {role} image has shape {shape}; the pipeline fuses 3D volumes (1, I, J, K): "
                         "give a 3D image (use 'monai-fusion fuse-rule' for 2D images)")
    if image.shape[0] != 1 or image.meta.get("is_rgb"):
        raise InputError(f"the {role} image has {image.shape[0]} channels; give a single-channel (grey) volume")
    if min(image.shape[1:]) < 4:
        raise InputError(f"the {role} image is {tuple(image.shape[1:])} voxels; the pipeline needs at least 4 "
                         "voxels along every axis (a 2D image?)")
    data = image.as_tensor()
    if not bool(torch.isfinite(data).all()):
        raise InputError(f"the {role} image contains NaN or Inf voxels; clean it first "
                         "(load_image(..., nonfinite='zero') replaces them)")
    if float(data.max()) <= float(data.min()):
        raise InputError(f"the {role} image is constant ({float(data.min()):g} everywhere); there is nothing to fuse")


def assign_modalities(task: FusionTask, fixed: MetaTensor, moving: MetaTensor,
                      modalities: tuple[str | None, str | None] | None = None) -> tuple[str, str]:
    """The modality codes of ``(fixed, moving)`` for ``task``; an InputError if they contradict it."""
    given = tuple(modalities) if modalities is not None else (None, None)
    found = [_code(given[0]) or _code(fixed.meta.get("modality")), _code(given[1]) or _code(moving.meta.get("modality"))]
    needed = list(task.modalities)
    if found[0] is None and found[1] is None:
        return task.anatomical, task.other
    if found[0] is not None and found[1] is not None:
        if sorted(found) != sorted(needed):
            raise InputError(f"--task {task.name} needs {task.needs()} image, but the inputs are "
                             f"{modality_name(found[0])} (fixed) and {modality_name(found[1])} (moving); "
                             "choose the task that matches the images")
        return found[0], found[1]
    known_index = 0 if found[0] is not None else 1
    known = found[known_index]
    if known not in needed:
        role = "fixed" if known_index == 0 else "moving"
        raise InputError(f"--task {task.name} needs {task.needs()} image, but the {role} image is "
                         f"{modality_name(known)}; choose the task that matches the images")
    rest = needed[1] if known == needed[0] else needed[0]
    return (known, rest) if known_index == 0 else (rest, known)


def describe_input(image: MetaTensor, modality: str) -> dict:
    """What the report says about an input: geometry and kind, never patient identifiers or paths."""
    from monai_fusion.io import orientation_code

    source = image.meta.get("filename_or_obj")
    affine = np.asarray(torch.as_tensor(image.affine, dtype=torch.float64))
    data = image.as_tensor()
    return {
        "name": Path(str(source)).name if source else None,
        "format": image.meta.get("source_format") or "metatensor",
        "modality": modality,
        "modality_from": "dicom" if image.meta.get("dicom_files") else ("metadata" if image.meta.get("modality") else "task"),
        "units": image.meta.get("units"),
        "shape": [int(s) for s in image.shape[1:]],
        "spacing_mm": [round(float(v), 6) for v in np.linalg.norm(affine[:3, :3], axis=0)],
        "orientation": orientation_code(affine),
        "value_range": [float(data.min()), float(data.max())],
    }


def inputs_from_options(fixed=None, moving=None, mri=None, ct=None, pet=None, spect=None,
                        task: str | None = None) -> tuple[object, object, str]:
    """``(fixed, moving, task)`` from the command line's choices: ``--fixed/--moving`` (with ``--task``,
    default ct-mri) or ``--mri`` with one of ``--ct``/``--pet``/``--spect`` (the task follows)."""
    others = {"ct-mri": ct, "mri-pet": pet, "mri-spect": spect}
    given = [name for name, value in others.items() if value is not None]
    if fixed is not None or moving is not None:
        if mri is not None or given:
            raise InputError("give either --fixed and --moving, or --mri with one of --ct/--pet/--spect, not both")
        if fixed is None or moving is None:
            raise InputError("give both --fixed and --moving")
        return fixed, moving, resolve_task(task or "ct-mri").name
    if mri is None or len(given) != 1:
        raise InputError("give --fixed and --moving, or --mri with exactly one of --ct, --pet, --spect")
    inferred = given[0]
    if task is not None and resolve_task(task).name != inferred:
        raise InputError(f"--task {task} contradicts --{inferred.replace('mri', '').strip('-')} (task {inferred}); drop --task")
    return mri, others[inferred], inferred
