"""Writing a fusion run: every output into a temporary folder, renamed into place when complete.

========================== ======================================================================
file                       content
========================== ======================================================================
``fused.nii.gz``           fused grey image on 0..1 (PET/SPECT: the fused luma)
``moving_resampled.nii.gz`` the registered image on the reference grid, in its own units
``contribution.nii.gz``    per-voxel weight of the reference image, 0..1
``colour.nii.gz``          PET/SPECT only: RGB colour fusion (NIfTI RGB24)
``*.nrrd``                 the same as NRRD (``nrrd`` in formats; Slicer loads colour as a vector volume)
``*_dicom/``, ``colour.dcm`` ``dicom`` in formats: derived series of the fused image and (CT/MR only)
                           the registered image, joining the reference's study and frame of
                           reference when the reference was DICOM; the colour fusion as one
                           Multi-frame True Color Secondary Capture object
``transform.tfm``          the registration (ITK, fixed -> moving, LPS; Slicer loads it);
                           ``transform.h5`` for deformable results
``qc.png``, ``report.html`` the QC montage and the self-contained report (``qc`` on)
``report.json``            the machine-readable report with the SHA-256 of every other output
========================== ======================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from monai_fusion.io import write_dicom_series, write_nifti, write_nrrd, write_rgb_dicom, write_rgb_nifti, write_rgb_nrrd
from monai_fusion.io.atomic import atomic_directory
from monai_fusion.workflows.fuse_inputs import modality_name

__all__ = ["write_outputs"]

_DICOM_GREY_MODALITIES = ("CT", "MR")


def _grey_outputs(run) -> dict:
    return {"fused": run.fused, "moving_resampled": run.moving_resampled, "contribution": run.contribution}


def _write_images(run, folder: Path, formats, written: dict) -> None:
    for name, image in _grey_outputs(run).items():
        if "nifti" in formats:
            written[name] = write_nifti(image, folder / f"{name}.nii.gz")
        if "nrrd" in formats:
            written[f"{name}_nrrd"] = write_nrrd(image, folder / f"{name}.nrrd")
    if run.colour is not None:
        if "nifti" in formats:
            written["colour"] = write_rgb_nifti(run.colour, folder / "colour.nii.gz")
        if "nrrd" in formats:
            written["colour_nrrd"] = write_rgb_nrrd(run.colour, folder / "colour.nrrd")


def _write_dicom(run, folder: Path, written: dict, notes: list[str]) -> None:
    report = run.report
    reference_files = run.reference.meta.get("dicom_files") if run.reference is not None else None
    ref_modality = report["reference"]["modality"]
    other_modality = run.moving_resampled.meta.get("modality")
    task, method = report["task"], report["method"]
    source = "the reference DICOM series" if reference_files else "a new anonymous study (the reference was not DICOM)"
    fused_modality = ref_modality if ref_modality in _DICOM_GREY_MODALITIES else "MR"
    write_dicom_series(run.fused, folder / "fused_dicom", reference=reference_files or None, modality=fused_modality,
                       series_description=f"fused {task} {method}"[:64], image_type_extra=["FUSION"],
                       derivation_description=f"monai-fusion {task} fusion ({method}) of the reference and the registered image")
    written["fused_dicom"] = folder / "fused_dicom"
    if other_modality in _DICOM_GREY_MODALITIES:
        write_dicom_series(run.moving_resampled, folder / "moving_resampled_dicom", reference=reference_files or None,
                           modality=other_modality, series_description=f"{modality_name(other_modality)} on reference grid"[:64],
                           derivation_description="monai-fusion: registered and resampled on the reference grid")
        written["moving_resampled_dicom"] = folder / "moving_resampled_dicom"
    else:
        notes.append(f"no grey DICOM series of the registered {modality_name(other_modality)}: derived series are "
                     "written as CT or MR images only; its colour fusion is in colour.dcm")
    if run.colour is not None:
        written["colour_dicom"] = write_rgb_dicom(run.colour, folder / "colour.dcm", reference=reference_files or None,
                                                  series_description=f"colour fusion {task} {method}"[:64])
    notes.append(f"DICOM outputs join {source}")


def _write_transform(run, transform, folder: Path, written: dict) -> None:
    from monai_fusion.registration import write_transform

    if run.registration is None:
        return
    name = "transform.tfm" if transform.is_linear else "transform.h5"
    written["transform"] = write_transform(transform, folder / name)


def _write_qc(run, qc_columns, folder: Path, written: dict) -> object:
    from monai_fusion.workflows.qc import foreground_centre, render_montage

    montage = render_montage(qc_columns, run.reference, checker=("reference", "moving, registered"),
                             centre=foreground_centre(qc_columns["reference"].image))
    montage.save(folder / "qc.png", optimize=True)
    written["qc"] = folder / "qc.png"
    return montage


def write_outputs(run, out_dir: Path, formats, transform, qc_columns: dict | None, overwrite: bool,
                  finalise: Callable[[dict], dict]) -> dict[str, Path]:
    """Write ``run``'s outputs into ``out_dir`` atomically; returns name -> final path.

    ``finalise(report)`` completes the report (timings, warnings) just before it is written.
    """
    from monai_fusion.workflows.report import describe_outputs, render_html, write_report_json

    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    notes: list[str] = []
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        _write_images(run, tmp, formats, written)
        if "dicom" in formats:
            _write_dicom(run, tmp, written, notes)
        _write_transform(run, transform, tmp, written)
        montage = _write_qc(run, qc_columns, tmp, written) if qc_columns is not None else None
        report = run.report
        report["notes"] = notes
        report["outputs"] = describe_outputs(written, tmp)
        finalise(report)
        if montage is not None:
            (tmp / "report.html").write_text(render_html(report, montage), encoding="utf-8")
            written["report_html"] = tmp / "report.html"
        written["report"] = write_report_json(report, tmp / "report.json")
    return {name: out_dir / Path(path).relative_to(tmp) for name, path in written.items()}
