"""``monai-fusion demo``: the I/O layer end to end on a case built only from registry packages.

What is real and what is simulated:

* **real**: the MNI152 2009c T1 template that nilearn ships inside its package (a population
  average of real T1 MRI scans, 1 mm, RAS);
* **simulated**: a "PET-like" tracer map made here from nilearn's bundled grey/white-matter
  probability maps (uptake grey 1.0, white 0.3, smoothed to ~8 mm FWHM), shown in a hot colour
  map as functional images are in the fusion literature. It is not a PET scan.

The demo writes the T1 as NIfTI, NRRD and a DICOM derived series (in a new anonymous study),
the colour map as RGB NRRD and a Multi-frame True Color DICOM, then reads every output back and
reports the largest affine and voxel differences: the geometry guarantees users rely on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_fusion.errors import InputError
from monai_fusion.io.atomic import atomic_file, ensure_folder
from monai_fusion.io import (
    load_image,
    write_dicom_series,
    write_nifti,
    write_nrrd,
    write_rgb_dicom,
    write_rgb_nrrd,
)

__all__ = ["run_demo", "DemoResult", "hot_colour_map"]


@dataclass
class DemoResult:
    """Every written output with its read-back errors."""

    out_dir: Path
    rows: list[dict]
    seconds: float

    def table(self) -> str:
        header = f"{'output':<34} {'kind':<26} {'affine err (mm)':>15} {'voxel err':>10}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row['output']:<34} {row['kind']:<26} {row['affine_error']:>15.2e} {row['voxel_error']:>10.2e}")
        return "\n".join(lines)


def hot_colour_map(values: np.ndarray) -> np.ndarray:
    """Map values in 0..1 to uint8 RGB with the classic 'hot' colour map, channel first."""
    v = np.clip(values, 0.0, 1.0)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)])
    return np.rint(rgb * 255).astype(np.uint8)


def _mni152_images():
    try:
        from nilearn import datasets
    except ImportError:  # the demo extra is not installed
        raise InputError("the demo needs nilearn for its bundled MNI152 template: pip install 'monai-fusion[demo]'") from None
    return (datasets.load_mni152_template(resolution=1), datasets.load_mni152_gm_template(resolution=1),
            datasets.load_mni152_wm_template(resolution=1))


def _simulated_tracer(grey: np.ndarray, white: np.ndarray, voxel_mm: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    uptake = gaussian_filter(1.0 * grey + 0.3 * white, sigma=8.0 / 2.355 / voxel_mm)
    return uptake / max(float(uptake.max()), 1e-6)


def _in_original_order(read_back, shape, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DICOM has no slice order: a left-handed grid comes back with k reversed; undo that."""
    values, back_affine = read_back.numpy(), read_back.affine.numpy()
    if np.allclose(back_affine, affine, atol=1e-3):
        return values, back_affine
    reverse_k = np.eye(4)
    reverse_k[2, 2], reverse_k[2, 3] = -1, shape[-1] - 1
    return np.flip(values, -1), back_affine @ reverse_k


def run_demo(out_dir: str | Path = "demo-output", overwrite: bool = True) -> DemoResult:
    """Build the demo case, write it in every format, read it back, and measure the round trips."""
    start = time.perf_counter()
    out_dir = ensure_folder(out_dir)
    t1_nifti, grey_nifti, white_nifti = _mni152_images()
    source = out_dir / "mni152_t1_source.nii.gz"
    with atomic_file(source) as tmp:
        t1_nifti.to_filename(str(tmp))
    t1 = load_image(source, modality="MR")
    affine = t1.affine.numpy()
    tracer = _simulated_tracer(np.asarray(grey_nifti.dataobj, dtype=float), np.asarray(white_nifti.dataobj, dtype=float), 1.0)
    colour = hot_colour_map(tracer)
    grey = t1.numpy()
    rows = []

    def check(name: str, kind: str, expected: np.ndarray) -> None:
        values, back_affine = _in_original_order(load_image(out_dir / name), expected.shape, affine)
        rows.append({
            "output": name, "kind": kind,
            "affine_error": float(np.abs(back_affine - affine).max()),
            "voxel_error": float(np.abs(values.astype(float) - expected.astype(float)).max()),
        })

    write_nifti(t1, out_dir / "t1.nii.gz")
    check("t1.nii.gz", "NIfTI float32", grey)
    write_nrrd(t1, out_dir / "t1.nrrd")
    check("t1.nrrd", "NRRD float32 (Slicer)", grey)
    write_dicom_series(t1, out_dir / "t1_dicom", modality="MR", overwrite=overwrite,
                       series_description="MNI152 T1 (demo)", derivation_description="nilearn MNI152 2009c T1 template")
    check("t1_dicom", "DICOM MR derived series", grey)
    write_rgb_nrrd(colour, out_dir / "simulated_pet_colour.nrrd", affine=affine)
    check("simulated_pet_colour.nrrd", "NRRD RGB-color", colour)
    write_rgb_dicom(colour, out_dir / "simulated_pet_colour.dcm", affine=affine,
                    series_description="simulated PET colour (demo)",
                    derivation_description="SIMULATED tracer map from nilearn MNI152 tissue maps, hot colour map")
    check("simulated_pet_colour.dcm", "DICOM multi-frame RGB SC", colour)
    return DemoResult(out_dir=out_dir, rows=rows, seconds=time.perf_counter() - start)
