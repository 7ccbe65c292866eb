"""atomic_file / atomic_directory: complete or absent, never partial; clear errors on bad places."""

from __future__ import annotations

import os
import stat

import nibabel as nib
import numpy as np
import pytest

from monai_fusion.errors import OutputError
from monai_fusion.io import write_dicom_series, write_nifti
from monai_fusion.io.atomic import atomic_directory, atomic_file


def test_file_appears_only_after_success(tmp_path):
    target = tmp_path / "out" / "a.nii.gz"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".nii.gz") and not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert [p.name for p in target.parent.iterdir()] == ["a.nii.gz"]


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.nii.gz"
    target.write_bytes(b"old")

    def crash(image, name):
        with open(name, "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("disk gone")

    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(RuntimeError, match="disk gone"):
        write_nifti(np.ones((2, 2, 2)), target, affine=np.eye(4))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_unwritable_places_are_output_errors(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        write_nifti(np.ones((2, 2, 2)), tmp_path / "a_file" / "sub" / "out.nii.gz", affine=np.eye(4))
    (tmp_path / "folder.nii.gz").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_nifti(np.ones((2, 2, 2)), tmp_path / "folder.nii.gz", affine=np.eye(4))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_an_output_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            write_nifti(np.ones((2, 2, 2)), locked / "out.nii.gz", affine=np.eye(4))
    finally:
        locked.chmod(0o700)


def test_directory_replaced_only_when_complete(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "old.dcm").write_text("old")
    with pytest.raises(OutputError, match="not empty"):
        with atomic_directory(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "new.dcm").write_text("new")
            raise RuntimeError("failed half way")
    assert [p.name for p in target.iterdir()] == ["old.dcm"]
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.dcm").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_dicom_series_with_nan_writes_no_folder(tmp_path):
    data = np.ones((1, 4, 4, 3), np.float32)
    data[0, 0, 0, 2] = np.inf
    with pytest.raises(OutputError, match="NaN/Inf"):
        write_dicom_series(data, tmp_path / "series", affine=np.eye(4))
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_usual_permissions_not_tempfiles_private_ones(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "out.nii.gz") as tmp:
            tmp.write_bytes(b"data")
        with atomic_directory(tmp_path / "folder") as folder:
            (folder / "inside.txt").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.nii.gz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
