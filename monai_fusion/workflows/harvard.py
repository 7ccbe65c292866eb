"""The Harvard Whole Brain Atlas pairs as MONAI datalists, split by patient.

The shared data hold registered 2D pairs ``harvard/<task>/<modality>/<patient><3-digit slice>.png``
for three tasks (:data:`HARVARD_TASKS`): the anatomical MRI (grey) and CT (grey), PET or SPECT
(pseudo-colour RGB). Training and validation are split by patient, never by slice: the patients of
:data:`VALIDATION_PATIENTS` are held out in every workflow (encoder pretraining, the bundles'
training, validation and evaluation), so no reported number comes from a patient seen in training.

Example:
    >>> items = harvard_datalist("../shared/data/harvard", "ct-mri", "validation")  # doctest: +SKIP
    >>> sorted(items[0])  # doctest: +SKIP
    ['ct', 'mri', 'patient']
"""

from __future__ import annotations

import os
from pathlib import Path

from monai_fusion.errors import InputError

__all__ = [
    "HARVARD_TASKS",
    "SPLITS",
    "VALIDATION_PATIENTS",
    "default_data_root",
    "harvard_datalist",
    "harvard_patient",
    "task_pairs",
]

HARVARD_TASKS = {"ct-mri": ("mri", "ct"), "pet-mri": ("mri", "pet"), "spect-mri": ("mri", "spect")}
"""Task folder -> ``(anatomical key, functional key)``; the keys are the folder names and the datalist keys."""
VALIDATION_PATIENTS = ("4", "30", "35", "37")
"""Held-out Harvard patients: 37 (CT-MRI), 30 (PET-MRI), 4 and 35 (SPECT-MRI)."""
SPLITS = ("train", "validation", "all")


def default_data_root() -> Path:
    """``$MONAI_FUSION_DATA``, else ``../shared/data`` from the working directory."""
    return Path(os.environ.get("MONAI_FUSION_DATA", Path("..") / "shared" / "data"))


def harvard_patient(path: Path) -> str:
    """The patient of a Harvard file ``<patient><3-digit slice>.png``."""
    return Path(path).stem[:-3]


def task_pairs(task_folder: Path, task: str) -> list[tuple[str, Path, Path]]:
    """``(patient, mri_path, other_path)`` for every pair of ``task`` in ``task_folder``, sorted by file name."""
    anatomical, functional = HARVARD_TASKS[task]
    folder = Path(task_folder)
    found = sorted((folder / anatomical).glob("*.png"))
    return [(harvard_patient(path), path, folder / functional / path.name)
            for path in found if (folder / functional / path.name).is_file()]


def _check_task(task: str) -> str:
    if task not in HARVARD_TASKS:
        raise InputError(f"unknown Harvard task {task!r}; choose one of {', '.join(HARVARD_TASKS)}")
    return task


def harvard_datalist(data_root, task: str, split: str = "all", validation_patients=VALIDATION_PATIENTS,
                     max_items: int | None = None) -> list[dict]:
    """MONAI datalist ``[{"mri": path, <other>: path, "patient": id}, ...]`` of one task and split.

    Args:
        data_root: the ``harvard`` folder (holding ``ct-mri/``, ``pet-mri/``, ``spect-mri/``), or
            the shared data folder that holds ``harvard/``.
        task: ``"ct-mri"``, ``"pet-mri"`` or ``"spect-mri"``.
        split: ``"train"`` (every patient but the validation ones), ``"validation"`` or ``"all"``.
        validation_patients: the held-out patient ids.
        max_items: keep this many items, evenly spread (quick runs and tests); all by default.
    """
    _check_task(task)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(data_root)
    if not (root / task).is_dir() and (root / "harvard" / task).is_dir():
        root = root / "harvard"
    if not (root / task).is_dir():
        raise InputError(f"no Harvard {task} pairs under {data_root}: expected {Path(data_root) / task}/"
                         f"{'/'.join(HARVARD_TASKS[task])} (set dataset_dir, or MONAI_FUSION_DATA, to the shared data)")
    held_out = {str(p) for p in validation_patients}
    pairs = task_pairs(root / task, task)
    if split != "all":
        pairs = [pair for pair in pairs if (pair[0] in held_out) == (split == "validation")]
    if not pairs:
        raise InputError(f"the {split} split of Harvard {task} under {root} is empty (validation patients: "
                         f"{', '.join(sorted(held_out, key=int))})")
    if max_items is not None and max_items < len(pairs):
        step = (len(pairs) - 1) / max(max_items - 1, 1)
        pairs = [pairs[round(i * step)] for i in range(max(max_items, 1))]
    anatomical, functional = HARVARD_TASKS[task]
    return [{anatomical: str(mri), functional: str(other), "patient": patient} for patient, mri, other in pairs]
