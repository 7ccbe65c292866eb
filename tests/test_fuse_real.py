"""monai_fusion.fuse on real data: MRI-DIR CT + MR DICOM series, and the SPM templates with a known misalignment.

The MRI-DIR series are read from DICOM (so the modality check reads the tags and the DICOM
outputs join the MR's study) and then pooled 4x in-plane to keep the test in tens of seconds;
full-resolution timing is measured outside the tests (docs/fuse.md).
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

import monai_fusion
from monai_fusion.io import load_image
from monai_fusion.registration.evaluation import foreground_points, move_image, recovery_error
from monai_fusion.workflows.demo import known_misalignment
from tests.conftest import report_dciodvfy_warnings, run_dciodvfy, shared_path

FAST = {"iterations": 60}


def _pool_in_plane(image: MetaTensor, factor: int = 4) -> MetaTensor:
    """Average-pool axes 0 and 1 by ``factor`` (slices kept), with the matching affine; metadata kept."""
    data = torch.nn.functional.avg_pool3d(image.as_tensor()[None], kernel_size=(factor, factor, 1))[0]
    step = np.diag([factor, factor, 1.0, 1.0])
    step[:2, 3] = (factor - 1) / 2.0
    affine = torch.as_tensor(image.affine.numpy() @ step)
    meta = {k: v for k, v in image.meta.items() if k not in ("affine", "original_affine", "spatial_shape", "spacing")}
    return MetaTensor(data, affine=affine, meta=meta)


@pytest.fixture(scope="module")
def mridir_run(tmp_path_factory):
    mr = _pool_in_plane(load_image(shared_path("mridir", "mr")))
    ct = _pool_in_plane(load_image(shared_path("mridir", "ct")))
    out = tmp_path_factory.mktemp("mridir") / "out"
    run = monai_fusion.fuse(mr, ct, task="ct-mri", out_dir=out, formats=("nifti", "nrrd", "dicom"), registration_options=FAST)
    return run, out, mr


def test_mridir_outputs_have_the_mr_geometry(mridir_run):
    run, out, mr = mridir_run
    assert run.report["inputs"]["fixed"]["modality_from"] == "dicom"
    assert run.report["inputs"]["moving"]["modality"] == "CT"
    for name in ("fused.nii.gz", "moving_resampled.nii.gz", "contribution.nii.gz", "fused.nrrd", "moving_resampled.nrrd",
                 "contribution.nrrd", "fused_dicom", "moving_resampled_dicom"):
        image = load_image(out / name)
        assert tuple(image.shape[1:]) == tuple(mr.shape[1:]), name
        np.testing.assert_allclose(image.affine.numpy(), mr.affine.numpy(), atol=1e-4, err_msg=name)
    moved = load_image(out / "moving_resampled_dicom")
    assert moved.meta["modality"] == "CT" and moved.meta["units"] == "HU"


def test_mridir_dicom_joins_the_mr_study_and_passes_dciodvfy(mridir_run, dciodvfy):
    run, out, mr = mridir_run
    reference = pydicom.dcmread(mr.meta["dicom_files"][0], stop_before_pixels=True)
    seen = []
    for folder in ("fused_dicom", "moving_resampled_dicom"):
        files = sorted((out / folder).glob("*.dcm"))
        assert len(files) == mr.shape[3]
        for path in files[:: max(1, len(files) // 4)]:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            assert header.StudyInstanceUID == reference.StudyInstanceUID
            assert header.FrameOfReferenceUID == reference.FrameOfReferenceUID
            errors, warnings = run_dciodvfy(dciodvfy, path)
            assert not errors, errors
            seen += warnings
    report_dciodvfy_warnings("the fused MRI-DIR series", seen)


def test_mridir_report_has_no_patient_identifiers(mridir_run):
    run, out, mr = mridir_run
    reference = pydicom.dcmread(mr.meta["dicom_files"][0], stop_before_pixels=True)
    text = (out / "report.json").read_text() + (out / "report.html").read_text()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(reference.get(keyword, "") or "")
        if value:
            assert value not in text, keyword
    report = json.loads((out / "report.json").read_text())
    assert report["registration"]["converged"] and report["registration"]["metric_final"] > report["registration"]["metric_initial"]


def test_mridir_phantom_is_found_turned_180_degrees(mridir_run):
    """The phantom was scanned in two positions: only the orientation search escapes the wrong local optimum."""
    run, out, mr = mridir_run
    search = run.report["registration"]["orientation_search"]
    assert search["rotated"] and search["rotation"] == "180 degrees about the A-P axis", search
    assert search["metric_chosen"] > 1.1 * search["metric_unrotated"]
    assert any("scanned in different poses" in w for w in run.report["warnings"])
    assert "180 degrees about the A-P axis" in (out / "report.html").read_text()
    linear = np.asarray(run.report["registration"]["affine_ras"])[:3, :3]
    np.testing.assert_allclose(np.diag(linear), [-1, 1, -1], atol=0.1)  # R-L and S-I reversed, A-P kept


@pytest.mark.parametrize("task, functional", [("mri-pet", "PET.nii"), ("mri-spect", "SPECT.nii")])
def test_templates_with_a_known_misalignment(task, functional, tmp_path):
    t1 = load_image(shared_path("templates", "T1.nii"))
    other = load_image(shared_path("templates", functional))
    unmoved = monai_fusion.fuse(t1, other, task=task, qc=False).registration.transform  # the templates' own offset
    known = known_misalignment(rotation_deg=7.0, shift_mm=9.0)
    moved = move_image(other, known, pad=6)
    run = monai_fusion.fuse(t1, moved, task=task, out_dir=tmp_path / "out", formats=("nifti", "dicom"))
    errors = recovery_error(run.registration.transform, known, unmoved, foreground_points(t1, 0.3))
    # within a voxel (2 mm) on average: measured 1.3 / 0.9 mm mean for PET / SPECT; the resampled, padded copy
    # moves the optimum of these smooth templates a little whatever the seed
    assert errors.mean() < 2.0 and errors.max() < 4.0, (errors.mean(), errors.max())
    colour = load_image(tmp_path / "out" / "colour.nii.gz")
    assert colour.shape[0] == 3 and np.allclose(colour.affine.numpy(), t1.affine.numpy(), atol=1e-4)
    assert (tmp_path / "out" / "colour.dcm").is_file() and not (tmp_path / "out" / "moving_resampled_dicom").exists()
