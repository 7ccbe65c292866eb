"""The monai-fusion command: info (table and JSON), demo, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from monai_fusion.cli import main
from tests.conftest import shared_path


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_table_on_real_ct(capsys):
    code, out, err = run_cli(capsys, "info", str(shared_path("mridir", "ct")))
    assert code == 0, err
    assert "512x512x103" in out and "0.3906x0.3906x2.5" in out and "HU" in out and "LPS" in out
    assert "MRI-DIR-zzmeatphantom" not in out + err  # the patient name/ID never appear


def test_info_json_on_template(capsys):
    code, out, _ = run_cli(capsys, "info", "--json", str(shared_path("templates", "SPECT.nii")))
    assert code == 0
    described = json.loads(out)["images"][0]
    assert described["size"] == [91, 109, 91] and described["orientation"] == "RAS"
    assert described["spacing"] == [2.0, 2.0, 2.0] and described["value_range"] == [0.0, 1929.0]


def test_info_lists_every_series_of_a_mixed_folder(capsys, tmp_path, synthetic_series):
    synthetic_series(n_slices=4, folder=tmp_path / "study" / "a", modality="CT", series_number=3)
    synthetic_series(n_slices=5, folder=tmp_path / "study" / "b", modality="PT", series_number=7)
    code, out, _ = run_cli(capsys, "info", "--json", str(tmp_path / "study"))
    assert code == 0
    rows = json.loads(out)["images"]
    assert [(r["modality"], r["size"][2]) for r in rows] == [("CT", 4), ("PT", 5)]


def test_info_reports_a_broken_series_and_fails_when_nothing_is_readable(capsys, synthetic_series):
    folder, _, _ = synthetic_series(n_slices=6, drop=(3,))
    code, out, err = run_cli(capsys, "info", str(folder))
    assert code == 2
    assert "problem: irregular slice spacing" in out
    assert err.count("\n") == 1 and err.startswith("monai-fusion: error:")


def test_demo_runs_the_pipeline_and_every_output_has_the_mri_geometry(capsys, tmp_path):
    code, out, err = run_cli(capsys, "demo", "--json", "--out", str(tmp_path / "demo"))
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "mri-pet" and result["registration"]["converged"] is True
    assert result["tre_mean_mm"] < 1.0 and result["tre_max_mm"] < 2.0  # vs the known 8 degree, 10 mm misalignment
    names = {row["output"] for row in result["round_trips"]}
    assert {"fused.nii.gz", "colour.nii.gz", "fused.nrrd", "colour.nrrd", "fused_dicom", "colour.dcm"} <= names
    for row in result["round_trips"]:
        assert row["affine_error"] <= 1e-4, row
    assert (tmp_path / "demo" / "report.html").is_file() and (tmp_path / "demo" / "qc.png").is_file()


def test_demo_says_what_is_real_and_simulated(capsys, tmp_path, monkeypatch):
    import monai_fusion.workflows.demo as demo

    monkeypatch.setattr(demo, "_nilearn_images", _small_nilearn_images(demo._nilearn_images))
    code, out, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0, err
    assert "REAL" in out and "SIMULATED" in out and "registration error" in out and "report.html" in out


def _small_nilearn_images(load):
    """The demo's images at 4 mm (a faster run of the same code)."""
    def small(resolution):
        import nibabel.processing as processing

        return tuple(processing.resample_to_output(image, voxel_sizes=(4, 4, 4), order=1) for image in load(resolution))

    return small


def test_real_process_exit_code_and_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "monai_fusion.cli", "info", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"monai-fusion: error: {tmp_path / 'nope'} does not exist; check the path"]
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--debug", "info", str(tmp_path / "nope"))
    assert code == 2 and "Traceback" in err


def test_internal_errors_exit_1_with_one_line(capsys, monkeypatch, tmp_path):
    import monai_fusion.io.describe as describe

    def boom(path):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(describe, "describe_path", boom)
    code, _, err = run_cli(capsys, "info", str(tmp_path))
    assert code == 1 and "internal error" in err and "--debug" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
