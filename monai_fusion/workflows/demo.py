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


def _flip_to_match(read_back, original):
    """DICOM has no slice order: a left-handed grid comes back with k reversed; undo that."""
    if np.allclose(read_back.affine.numpy(), original.affine.numpy(), atol=1e-3):
        return read_back.numpy(), read_back.affine.numpy()
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, original.shape[-1] - 1
    return np.flip(read_back.numpy(), -1), read_back.affine.numpy() @ flip


def run_demo(out_dir: str | Path = "demo-output", overwrite: bool = True) -> DemoResult:
    """Build the demo case, write it in every format, read it back, and measure the round trips."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    t1_nifti, grey_nifti, white_nifti = _mni152_images()
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "mni152_t1_source.nii.gz"
    t1_nifti.to_filename(str(source))
    t1 = load_image(source, modality="MR")
    tracer = _simulated_tracer(np.asarray(grey_nifti.dataobj, dtype=float), np.asarray(white_nifti.dataobj, dtype=float), 1.0)
    colour = hot_colour_map(tracer)

    rows = []

    def record(name: str, kind: str, read_back, expected, expected_affine) -> None:
        values, affine = _flip_to_match(read_back, expected)
        rows.append({
            "output": name, "kind": kind,
            "affine_error": float(np.abs(affine - expected_affine).max()),
            "voxel_error": float(np.abs(values.astype(float) - np.asarray(expected, dtype=float)).max()),
        })

    write_nifti(t1, out_dir / "t1.nii.gz")
    record("t1.nii.gz", "NIfTI float32", load_image(out_dir / "t1.nii.gz"), t1, t1.affine.numpy())
    write_nrrd(t1, out_dir / "t1.nrrd")
    record("t1.nrrd", "NRRD float32 (Slicer)", load_image(out_dir / "t1.nrrd"), t1, t1.affine.numpy())
    write_dicom_series(t1, out_dir / "t1_dicom", modality="MR", overwrite=overwrite,
                       series_description="MNI152 T1 (demo)", derivation_description="nilearn MNI152 2009c T1 template")
    record("t1_dicom/", "DICOM MR derived series", load_image(out_dir / "t1_dicom"), t1, t1.affine.numpy())
    write_rgb_nrrd(colour, out_dir / "simulated_pet_colour.nrrd", affine=t1.affine)
    colour_image = load_image(out_dir / "simulated_pet_colour.nrrd")
    record("simulated_pet_colour.nrrd", "NRRD RGB-color", colour_image, colour_image, t1.affine.numpy())
    rows[-1]["voxel_error"] = float(np.abs(colour_image.numpy().astype(int) - colour).max())
    write_rgb_dicom(colour, out_dir / "simulated_pet_colour.dcm", affine=t1.affine,
                    series_description="simulated PET colour (demo)",
                    derivation_description="SIMULATED tracer map from nilearn MNI152 tissue maps, hot colour map")
    colour_dicom = load_image(out_dir / "simulated_pet_colour.dcm")
    values, affine = _flip_to_match(colour_dicom, t1)
    rows.append({"output": "simulated_pet_colour.dcm", "kind": "DICOM multi-frame RGB SC",
                 "affine_error": float(np.abs(affine - t1.affine.numpy()).max()),
                 "voxel_error": float(np.abs(values.astype(int) - colour).max())})
    return DemoResult(out_dir=out_dir, rows=rows, seconds=time.perf_counter() - start)
