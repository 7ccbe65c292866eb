"""``monai-fusion fuse``: input options, --json summary, outputs, and one-line user errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monai_fusion.cli import main
from monai_fusion.io import write_nifti
from tests.test_fuse_pipeline import _phantom


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    write_nifti(_phantom(), folder / "mri.nii.gz")
    write_nifti(_phantom(spacing=(2.5, 2.5, 3.0), shape=(32, 36, 30), shift=(3.0, -2.0, 2.0), contrast="pet"),
                folder / "pet.nii.gz")
    return folder


def test_mri_pet_json_summary(capsys, files, tmp_path):
    code, out, err = run_cli(capsys, "fuse", "--mri", files / "mri.nii.gz", "--pet", files / "pet.nii.gz",
                             "--out", tmp_path / "out", "--json", "--threads", "1")
    assert code == 0, err
    summary = json.loads(out)  # stdout is pure JSON: no progress bar there
    assert summary["task"] == "mri-pet" and summary["method"] == "laplacian_pyramid"
    assert summary["registration"]["converged"] is True
    assert {"fused", "colour", "contribution", "transform", "qc", "report_html", "report"} <= set(summary["outputs"])
    assert all((tmp_path / "out" / name).exists() for name in ("fused.nii.gz", "colour.nii.gz", "qc.png", "report.json"))
    assert summary["registration"]["start_rotation"] == "none", "an unrotated pair keeps the scanners' pose"


def test_orientation_search_can_be_turned_off(capsys, files, tmp_path):
    code, out, err = run_cli(capsys, "fuse", "--mri", files / "mri.nii.gz", "--pet", files / "pet.nii.gz",
                             "--out", tmp_path / "out", "--json", "--no-qc", "--no-orientation-search")
    assert code == 0, err
    assert json.loads(out)["registration"]["start_rotation"] == "not searched"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "orientation_search" not in report["registration"]


def test_fixed_moving_task_formats_and_no_qc(capsys, files, tmp_path):
    code, out, err = run_cli(capsys, "fuse", "--fixed", files / "mri.nii.gz", "--moving", files / "pet.nii.gz",
                             "--task", "mri-spect", "--registration", "none", "--method", "average",
                             "--format", "nifti,nrrd", "--no-qc", "--out", tmp_path / "out")
    assert code == 0, err
    assert "fused mri-spect with average" in out and "registration: none" in out
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"fused.nii.gz", "fused.nrrd", "colour.nrrd", "report.json"} <= names
    assert not names & {"qc.png", "report.html", "transform.tfm"}


@pytest.mark.parametrize("args, message", [
    (["--mri", "{f}/mri.nii.gz", "--ct", "{f}/pet.nii.gz", "--pet", "{f}/pet.nii.gz"], "exactly one of --ct, --pet, --spect"),
    (["--fixed", "{f}/mri.nii.gz"], "give both --fixed and --moving"),
    (["--mri", "{f}/mri.nii.gz", "--pet", "{f}/pet.nii.gz", "--task", "ct-mri"], "contradicts"),
    (["--mri", "{f}/mri.nii.gz", "--pet", "{f}/nope.nii.gz"], "does not exist"),
    (["--mri", "{f}/mri.nii.gz", "--pet", "{f}/pet.nii.gz", "--method", "magic"], "available methods:"),
    (["--mri", "{f}/mri.nii.gz", "--pet", "{f}/pet.nii.gz", "--format", "nifti,png"], "unknown output format"),
])
def test_user_errors_exit_2_with_one_line(capsys, files, tmp_path, args, message):
    args = [a.format(f=files) for a in args]
    code, out, err = run_cli(capsys, "fuse", *args, "--out", tmp_path / "out", "--json")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("monai-fusion: error:") and message in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_non_empty_output_folder_needs_overwrite(capsys, files, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    args = ["fuse", "--mri", files / "mri.nii.gz", "--pet", files / "pet.nii.gz", "--registration", "none", "--no-qc",
            "--out", tmp_path / "out", "--json"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "not empty" in err and (tmp_path / "out" / "keep.txt").exists()
    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "fused.nii.gz").exists()


def test_real_process_exit_code(files, tmp_path):
    out = subprocess.run([sys.executable, "-m", "monai_fusion.cli", "fuse", "--mri", str(files / "mri.nii.gz"),
                          "--ct", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("monai-fusion: error:")
