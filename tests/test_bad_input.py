"""Every bad input named in the foundation issue: one clear line, exit code 2, nothing written."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from monai_fusion.cli import main
from monai_fusion.errors import InputError, OutputError
from monai_fusion.io import load_image, write_dicom_series, write_nifti, write_nrrd
from tests.conftest import pydicom_test_file


def _cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(capsys, path, fragment):
    code, _, err = _cli(capsys, "info", str(path))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("monai-fusion: error:") and fragment in lines[0], err
    with pytest.raises(InputError, match=fragment):
        load_image(path)


def test_missing_path(capsys, tmp_path):
    _assert_one_line_error(capsys, tmp_path / "missing", "does not exist")


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(capsys, tmp_path / "empty", "empty folder")


def test_folder_of_non_dicom_files(capsys, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.csv").write_text("1,2")
    _assert_one_line_error(capsys, folder, "no DICOM image found")


def test_truncated_dicom_file(capsys, tmp_path):
    shutil.copy(pydicom_test_file("MR_truncated.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(InputError, match="pixel data cannot be decoded"):
        load_image(tmp_path / "mr.dcm")
    code, out, err = _cli(capsys, "info", str(tmp_path / "mr.dcm"))
    assert code == 2 and "pixel data cannot be decoded" in out + err


def test_mixed_series_without_selection(tmp_path, synthetic_series):
    synthetic_series(n_slices=3, folder=tmp_path / "mix", series_number=1)
    synthetic_series(n_slices=3, folder=tmp_path / "mix", series_number=2)
    with pytest.raises(InputError, match="2 series found, select one"):
        load_image(tmp_path / "mix")


def test_series_with_a_missing_slice(tmp_path, synthetic_series):
    folder, _, _ = synthetic_series(n_slices=6, drop=(2,))
    with pytest.raises(InputError, match="missing"):
        load_image(folder)


def test_nan_and_inf_voxels_in_and_out(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, 0], data[1, 0, 0] = np.nan, -np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="NaN/Inf"):
        load_image(tmp_path / "nan.nii.gz")
    for writer, target in ((write_nifti, "o.nii.gz"), (write_nrrd, "o.nrrd"), (write_dicom_series, "o_dicom")):
        with pytest.raises(OutputError, match="NaN/Inf"):
            writer(data, tmp_path / "out" / target, affine=np.eye(4))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_4d_nifti_where_3d_is_required(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    with pytest.raises(InputError, match="4D"):
        load_image(tmp_path / "4d.nii.gz")


def test_unwritable_output_path(capsys, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="cannot create output folder"):
        write_nrrd(np.zeros((2, 2, 2)), tmp_path / "blocker" / "x" / "out.nrrd", affine=np.eye(4))
    code, _, err = _cli(capsys, "demo", "--out", str(tmp_path / "blocker" / "demo"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "choose another output path" in err
    assert (tmp_path / "blocker").read_text() == "a file where a folder should be"
