"""write_dicom_series / write_rgb_dicom / encode_pixels: real-series round trips, dciodvfy, identity."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import OutputError
from monai_fusion.io import ReferenceSeries, load_image, write_dicom_series, write_rgb_dicom
from monai_fusion.io.dicom_writer import encode_pixels
from tests.conftest import report_dciodvfy_warnings, run_dciodvfy, shared_path


@pytest.fixture(scope="module")
def real_ct():
    return load_image(shared_path("mridir", "ct"))


@pytest.fixture(scope="module")
def real_mr():
    return load_image(shared_path("mridir", "mr"))


@pytest.fixture(scope="module")
def ct_derived(real_ct, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct") / "derived"
    files = write_dicom_series(real_ct, folder, series_description="HU copy", derivation_description="copy of the MRI-DIR CT")
    return folder, files


def test_ct_series_round_trip_is_exact(real_ct, ct_derived):
    folder, files = ct_derived
    assert len(files) == 103
    back = load_image(folder)
    np.testing.assert_allclose(back.affine.numpy(), real_ct.affine.numpy(), atol=1e-4)
    np.testing.assert_array_equal(back.numpy(), real_ct.numpy())
    assert back.meta["units"] == "HU"


def test_derived_series_identity_and_provenance(real_ct, ct_derived):
    _, files = ct_derived
    source = pydicom.dcmread(real_ct.meta["dicom_files"][0], stop_before_pixels=True)
    written = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    first = written[0]
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert first.get(keyword) == source.get(keyword), keyword
    assert first.SeriesInstanceUID != source.SeriesInstanceUID
    assert len({w.SOPInstanceUID for w in written}) == 103
    assert not {w.SOPInstanceUID for w in written} & {
        pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in real_ct.meta["dicom_files"][:5]}
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert first.DerivationDescription == "copy of the MRI-DIR CT"
    assert first.SeriesNumber == int(source.SeriesNumber) + 1000
    assert first.SOPClassUID == source.SOPClassUID
    sources = {w.SourceImageSequence[0].ReferencedSOPInstanceUID for w in written}
    assert len(sources) == 103  # each slice names the reference slice it was derived from
    assert len({w.SeriesInstanceUID for w in written}) == 1


def test_every_written_ct_file_passes_dciodvfy(ct_derived, dciodvfy):
    _, files = ct_derived
    seen_warnings = set()
    for path in files:
        errors, warnings = run_dciodvfy(dciodvfy, path)
        assert errors == [], f"{path.name}: {errors}"
        seen_warnings.update(warnings)
    report_dciodvfy_warnings("the derived CT series", seen_warnings)


def test_float_mr_volume_round_trips_within_rescale_precision(real_mr, tmp_path, dciodvfy):
    fused = real_mr / 7.3 + 0.25
    files = write_dicom_series(fused, tmp_path / "mr", image_type_extra=["FUSION"])
    back = load_image(tmp_path / "mr")
    slope = float(pydicom.dcmread(files[0], stop_before_pixels=True).RescaleSlope)
    np.testing.assert_allclose(back.affine.numpy(), real_mr.affine.numpy(), atol=1e-4)
    assert float((back - fused).abs().max()) <= slope / 2 + 1e-6
    assert list(pydicom.dcmread(files[0], stop_before_pixels=True).ImageType) == ["DERIVED", "SECONDARY", "FUSION"]
    seen_warnings = set()
    for path in files[::10] + [files[-1]]:
        errors, warnings = run_dciodvfy(dciodvfy, path)
        assert errors == [], f"{path.name}: {errors}"
        seen_warnings.update(warnings)
    report_dciodvfy_warnings("the derived MR series", seen_warnings)


def test_rgb_multiframe_round_trip_and_dciodvfy(real_mr, tmp_path, dciodvfy):
    grey = (real_mr[0] / real_mr.max()).numpy()
    rgb = np.stack([grey, grey ** 2, 1 - grey])
    path = write_rgb_dicom(rgb, tmp_path / "colour.dcm", affine=real_mr.affine, reference=real_mr.meta["dicom_files"])
    errors, warnings = run_dciodvfy(dciodvfy, path)
    assert errors == [], errors
    report_dciodvfy_warnings("the RGB object", warnings)
    back = load_image(path)
    assert back.shape == (3, 512, 512, 94) and back.dtype == torch.uint8
    np.testing.assert_array_equal(back.numpy(), np.rint(rgb * 255).astype(np.uint8))
    np.testing.assert_allclose(back.affine.numpy(), real_mr.affine.numpy(), atol=1e-4)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert header.FrameOfReferenceUID == real_mr.meta["frame_of_reference_uid"]
    assert header.StudyInstanceUID == real_mr.meta["study_instance_uid"]


def test_oblique_grid_without_reference_makes_a_new_anonymous_study(tmp_path, dciodvfy):
    angle = np.radians(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ np.diag([0.9, 0.8, 3.0])
    affine[:3, 3] = [5.5, -7.25, 40.0]
    data = MetaTensor(torch.linspace(-5, 5, 6 * 7 * 4).reshape(1, 6, 7, 4), affine=torch.as_tensor(affine))
    files = write_dicom_series(data, tmp_path / "s", modality="CT")
    back = load_image(tmp_path / "s")
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_allclose(back.numpy(), data.numpy(), atol=float(encode_pixels(data.numpy()).slope))
    header = pydicom.dcmread(files[0])
    assert header.PatientName == "ANONYMOUS" and header.Modality == "CT"
    assert run_dciodvfy(dciodvfy, files[0])[0] == []


def test_left_handed_grid_comes_back_with_slices_reversed_at_the_same_world_points(tmp_path):
    t1 = load_image(shared_path("templates", "T1.nii"))  # LAS: left-handed
    write_dicom_series(t1, tmp_path / "t1", modality="MR")
    back = load_image(tmp_path / "t1")
    # DICOM stores no slice order: the reader stacks along row x column, which here is inferior
    reverse_k = np.eye(4)
    reverse_k[2, 2], reverse_k[2, 3] = -1, t1.shape[-1] - 1
    np.testing.assert_allclose(back.affine.numpy() @ reverse_k, t1.affine.numpy(), atol=1e-4)
    step = float(pydicom.dcmread(sorted((tmp_path / "t1").iterdir())[0], stop_before_pixels=True).RescaleSlope)
    assert float(np.abs(back.numpy()[..., ::-1] - t1.numpy()).max()) <= step / 2 + 1e-7


def test_reference_can_be_a_folder_files_or_headers(real_ct, tmp_path):
    folder = shared_path("mridir", "ct")
    small = MetaTensor(torch.zeros(1, 4, 4, 2), affine=real_ct.affine)
    for name, reference in (("folder", folder), ("files", real_ct.meta["dicom_files"][:3]),
                            ("object", ReferenceSeries.from_path(folder))):
        files = write_dicom_series(small, tmp_path / name, reference=reference)
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert header.FrameOfReferenceUID == real_ct.meta["frame_of_reference_uid"], name


def test_encode_pixels_precision_and_exact_integers():
    hu = np.array([-1024, 0, 3071], dtype=np.float32)
    exact = encode_pixels(hu)
    assert exact.slope == "1" and exact.intercept == "0"
    np.testing.assert_array_equal(exact.stored, hu.astype(np.int16))
    values = np.random.default_rng(0).normal(0.3, 0.02, 1000)
    encoded = encode_pixels(values)
    assert len(encoded.slope) <= 16 and len(encoded.intercept) <= 16
    decoded = encoded.stored * float(encoded.slope) + float(encoded.intercept)
    assert np.abs(decoded - values).max() <= float(encoded.slope) / 2 * (1 + 1e-6)
    assert encoded.stored.min() >= -32768 and encoded.stored.max() <= 32767
    constant = encode_pixels(np.full(5, 2.5))
    assert float(constant.stored[0]) * float(constant.slope) + float(constant.intercept) == 2.5


def test_output_refusals(tmp_path):
    with pytest.raises(OutputError, match="CT or MR"):
        write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "pt", affine=np.eye(4), modality="PT")
    skew = np.eye(4)
    skew[0, 1] = 0.5
    with pytest.raises(OutputError, match="not orthogonal"):
        write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "skew", affine=skew)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "busy", affine=np.eye(4))
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
