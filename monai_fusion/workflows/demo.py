"""``monai-fusion demo``: the whole fusion pipeline on a case built only from registry packages.

What is real and what is simulated:

* **real**: the MNI152 2009c T1 template that nilearn ships inside its package (a population
  average of real T1 MRI scans), used as the MRI at ``resolution`` mm (2 by default, for speed);
* **simulated**: a "PET" made here from nilearn's bundled grey/white-matter probability maps
  (uptake grey 1.0, white 0.3, smoothed to ~8 mm FWHM, scaled to a peak SUV of 8). It is not a
  PET scan. It is then *moved* by a known rigid transform (``rotation_deg`` about an oblique axis,
  ``shift_mm``) and sampled on its own coarser grid (``pet_spacing_mm``, a smaller, shifted field
  of view), as a PET acquired in another session would be.

The demo runs :func:`~monai_fusion.workflows.fuse.fuse` (``task="mri-pet"``, rigid registration,
Laplacian pyramid, every output format), then measures

* the registration error against the known transform: target registration error (mm) over the
  brain voxels of the MRI, mean and maximum;
* the geometry of every written image read back: the largest difference between its affine and
  the MRI's (DICOM slices come back in their own order and are compared after reordering).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.io import load_image

__all__ = ["run_demo", "DemoResult", "demo_case", "known_misalignment"]


@dataclass
class DemoResult:
    """The pipeline run, its registration error and the read-back geometry of every output."""

    out_dir: Path
    run: object  # FusionRun
    tre_mean_mm: float
    tre_max_mm: float
    rows: list[dict]
    seconds: float

    def table(self) -> str:
        header = f"{'output':<28} {'kind':<30} {'affine err (mm)':>15}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row['output']:<28} {row['kind']:<30} {row['affine_error']:>15.2e}")
        return "\n".join(lines)


def _nilearn_images(resolution: int):
    try:
        from nilearn import datasets
    except ImportError:  # the demo extra is not installed
        raise InputError("the demo needs nilearn for its bundled MNI152 template: pip install 'monai-fusion[demo]'") from None
    return (datasets.load_mni152_template(resolution=resolution), datasets.load_mni152_gm_template(resolution=resolution),
            datasets.load_mni152_wm_template(resolution=resolution))


def _as_metatensor(nifti, **meta) -> MetaTensor:
    data = torch.as_tensor(np.asarray(nifti.dataobj, dtype=np.float32))[None]
    return MetaTensor(data, affine=torch.as_tensor(nifti.affine, dtype=torch.float64), meta=meta)


def _simulated_tracer(grey: np.ndarray, white: np.ndarray, voxel_mm: float, peak_suv: float = 8.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    uptake = gaussian_filter(1.0 * grey + 0.3 * white, sigma=8.0 / 2.355 / voxel_mm)
    return (peak_suv * uptake / max(float(uptake.max()), 1e-6)).astype(np.float32)


def known_misalignment(rotation_deg: float = 8.0, shift_mm: float = 10.0, centre=(0.0, -18.0, 18.0)):
    """The known rigid transform (fixed/MRI world -> PET world): a rotation about an oblique axis through ``centre`` plus a shift."""
    from monai_fusion.registration.spatial import AffineTransform

    axis = np.array([1.0, 0.6, 0.3]) / np.linalg.norm([1.0, 0.6, 0.3])
    angle = np.deg2rad(rotation_deg)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
    shift = np.array([0.6, -0.64, 0.48]) / np.linalg.norm([0.6, -0.64, 0.48]) * shift_mm
    centre = np.asarray(centre, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, centre - rotation @ centre + shift
    return AffineTransform(matrix, centre, "rigid")


def demo_case(resolution: int = 2, pet_spacing_mm: float = 3.0, rotation_deg: float = 8.0, shift_mm: float = 10.0):
    """``(mri, pet, known)``: the real MNI152 T1, the simulated PET on its own grid, the known transform."""
    from monai_fusion.registration import resample

    t1_nifti, grey_nifti, white_nifti = _nilearn_images(resolution)
    mri = _as_metatensor(t1_nifti, modality="MR", units="arbitrary", filename_or_obj="nilearn MNI152 2009c T1")
    tracer = _simulated_tracer(np.asarray(grey_nifti.dataobj, float), np.asarray(white_nifti.dataobj, float), float(resolution))
    tracer_image = MetaTensor(torch.from_numpy(tracer)[None], affine=mri.affine.clone())
    known = known_misalignment(rotation_deg, shift_mm)
    # The PET grid: coarser voxels and a smaller field of view (160 x 180 x 150 mm), shifted from the MRI's.
    shape = tuple(int(round(mm / pet_spacing_mm)) for mm in (160.0, 180.0, 150.0))
    affine = np.diag([pet_spacing_mm] * 3 + [1.0])
    affine[:3, 3] = np.array([-80.0, -110.0, -55.0]) + np.array([3.0, -4.0, 5.0])
    pet = resample(tracer_image, known, (affine, shape))  # PET(y) = tracer(known(y)): register must find known^-1
    pet = MetaTensor(pet.as_tensor(), affine=torch.as_tensor(affine),
                     meta={"modality": "PT", "units": "SUVbw", "filename_or_obj": "simulated PET"})
    return mri, pet, known


def _read_back_error(path: Path, reference_affine: np.ndarray, shape) -> float:
    image = load_image(path)
    affine = image.affine.numpy()
    if not np.allclose(affine, reference_affine, atol=1e-3) and path.suffix in ("", ".dcm"):
        reverse_k = np.eye(4)  # DICOM has no slice order: a left-handed grid comes back with k reversed
        reverse_k[2, 2], reverse_k[2, 3] = -1, shape[-1] - 1
        affine = affine @ reverse_k
    return float(np.abs(affine - reference_affine).max())


_KINDS = {
    "fused": "NIfTI float32", "moving_resampled": "NIfTI float32 (SUV)", "contribution": "NIfTI float32",
    "colour": "NIfTI RGB24", "fused_nrrd": "NRRD float32 (Slicer)", "moving_resampled_nrrd": "NRRD float32",
    "contribution_nrrd": "NRRD float32", "colour_nrrd": "NRRD RGB-color", "fused_dicom": "DICOM MR derived series",
    "colour_dicom": "DICOM multi-frame RGB SC",
}


def run_demo(out_dir: str | Path = "demo-output", overwrite: bool = True, resolution: int = 2) -> DemoResult:
    """Build the demo case, run the pipeline, measure the registration error and the outputs' geometry."""
    from monai_fusion.registration.evaluation import foreground_points, recovery_error
    from monai_fusion.registration.spatial import AffineTransform
    from monai_fusion.workflows.fuse import fuse

    start = time.perf_counter()
    mri, pet, known = demo_case(resolution=resolution)
    run = fuse(mri, pet, task="mri-pet", method="laplacian_pyramid", registration="rigid", out_dir=out_dir,
               formats=("nifti", "nrrd", "dicom"), overwrite=overwrite)
    points = foreground_points(mri, threshold=0.3)
    errors = recovery_error(run.registration.transform, known, AffineTransform.identity(3), points)
    affine = mri.affine.numpy()
    rows = [{"output": Path(run.outputs[name]).name, "kind": kind,
             "affine_error": _read_back_error(Path(run.outputs[name]), affine, mri.shape[1:])}
            for name, kind in _KINDS.items() if name in run.outputs]
    return DemoResult(out_dir=Path(out_dir), run=run, tre_mean_mm=float(errors.mean()), tre_max_mm=float(errors.max()),
                      rows=rows, seconds=time.perf_counter() - start)
