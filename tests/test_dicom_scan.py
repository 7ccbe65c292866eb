"""scan_dicom / select_series / list_series: grouping, selection, and refusal to guess."""

from __future__ import annotations

import shutil

import pytest

from monai_fusion.errors import InputError
from monai_fusion.io import list_series, load_image, scan_dicom, select_series
from tests.conftest import pydicom_test_file, shared_path


def test_real_folder_holds_one_series_of_each_modality():
    ct = scan_dicom(shared_path("mridir", "ct"))
    mr = scan_dicom(shared_path("mridir", "mr"))
    assert [s.modality for s in ct] == ["CT"] and len(ct[0].files) == 103
    assert [s.modality for s in mr] == ["MR"] and len(mr[0].files) == 94
    summary = ct[0].summary()
    assert summary["rows"] == 512 and summary["frames"] == 103 and "PatientName" not in str(summary)


@pytest.fixture
def mixed_folder(tmp_path, synthetic_series):
    folder = tmp_path / "study"
    synthetic_series(n_slices=4, folder=folder / "a", modality="CT", series_number=3)
    synthetic_series(n_slices=5, folder=folder / "b", modality="PT", series_number=7)
    (folder / "README.txt").write_text("not dicom")
    return folder


def test_mixed_folder_without_selection_lists_the_series(mixed_folder):
    with pytest.raises(InputError) as info:
        load_image(mixed_folder)
    message = str(info.value)
    assert "2 series found" in message and "series 3 CT" in message and "series 7 PT" in message
    assert "\n" not in message


@pytest.mark.filterwarnings("ignore:.*PET left in stored units")
@pytest.mark.parametrize("selection, n_slices", [({"modality": "ct"}, 4), ({"series_number": 7}, 5)])
def test_selection_by_modality_or_number(mixed_folder, selection, n_slices):
    assert load_image(mixed_folder, **selection).shape[-1] == n_slices


def test_selection_by_uid_and_no_match(mixed_folder):
    series = list_series(mixed_folder)
    chosen = select_series(series, series_uid=series[1].series_instance_uid)
    assert chosen is series[1]
    with pytest.raises(InputError, match="no series matches"):
        select_series(series, modality="MR")


def test_empty_and_non_dicom_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty folder"):
        scan_dicom(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    (tmp_path / "text" / "b.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(InputError, match=r"no DICOM image found .*2 file\(s\) looked at"):
        scan_dicom(tmp_path / "text")
    with pytest.raises(InputError, match="does not exist"):
        scan_dicom(tmp_path / "missing")


@pytest.mark.parametrize("keep_bytes", [200, 700])
def test_truncated_header_is_an_error_not_a_skip(tmp_path, synthetic_series, keep_bytes):
    folder, _, _ = synthetic_series(n_slices=3)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:keep_bytes])
    with pytest.raises(InputError, match="truncated|damaged"):
        scan_dicom(folder)


def test_truncated_pixel_data_is_an_error(tmp_path):
    shutil.copy(pydicom_test_file("MR_truncated.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(InputError, match="pixel data cannot be decoded"):
        load_image(tmp_path / "mr.dcm")


def test_non_image_objects_are_ignored(tmp_path, synthetic_series):
    folder, _, _ = synthetic_series(n_slices=3)
    shutil.copy(pydicom_test_file("rtplan.dcm"), folder / "plan.dcm")
    assert len(scan_dicom(folder)) == 1
