"""load_image on DICOM: real MRI-DIR series against SimpleITK, slice ordering, value mapping,
enhanced multi-frame objects and compressed transfer syntaxes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.io import affine_from_sitk, load_image
from tests.conftest import pydicom_test_file, shared_path


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize("name, n_slices, spacing", [("ct", 103, (0.390625, 0.390625, 2.5)), ("mr", 94, (0.5, 0.5, 2.5))])
def test_real_mridir_series_match_simpleitk(name, n_slices, spacing):
    folder = shared_path("mridir", name)
    image = load_image(folder)
    reference = _sitk_series(folder)
    assert isinstance(image, MetaTensor)
    assert tuple(image.shape) == (1, 512, 512, n_slices)
    assert image.dtype == torch.float32
    np.testing.assert_allclose(image.meta["spacing"], spacing, atol=1e-6)
    np.testing.assert_allclose(image.affine.numpy(), affine_from_sitk(reference), atol=1e-4)
    np.testing.assert_array_equal(image[0].numpy(), np.transpose(sitk.GetArrayFromImage(reference), (2, 1, 0)))
    assert image.meta["space"] == "RAS"
    assert image.meta["modality"] == name.upper()
    assert len(image.meta["dicom_files"]) == n_slices
    assert image.meta["frame_of_reference_uid"] and image.meta["series_instance_uid"]


def test_real_ct_is_in_hounsfield_units_and_ignores_stale_spacing_tag():
    folder = shared_path("mridir", "ct")
    image = load_image(folder)
    header = pydicom.dcmread(next(iter(sorted(folder.iterdir()))), stop_before_pixels=True)
    assert float(header.SpacingBetweenSlices) == pytest.approx(0.625)  # stale: every 4th slice was kept
    assert image.meta["spacing"][2] == pytest.approx(2.5)
    assert image.meta["units"] == "HU"
    air = float(image[0, 256, 40:60, :].median())  # inside the reconstruction circle, above the phantom
    tissue = float(image[0, 200:300, 200:300, 50].median())  # the meat phantom
    outside = float(image[0, :5, :5, :].max())  # outside the reconstruction circle: padding
    assert -1050 < air < -900
    assert 0 < tissue < 100
    assert outside == -2048


def test_real_ct_and_mr_share_no_frame_of_reference_but_load_independently():
    ct = load_image(shared_path("mridir", "ct"))
    mr = load_image(shared_path("mridir", "mr"))
    assert ct.meta["frame_of_reference_uid"] != mr.meta["frame_of_reference_uid"]
    assert ct.meta["study_instance_uid"] and mr.meta["study_instance_uid"]


def test_slices_are_ordered_by_position_not_file_name(synthetic_series):
    folder, volume, _ = synthetic_series(n_slices=7)
    image = load_image(folder)
    np.testing.assert_array_equal(image[0].numpy(), volume.astype(np.float32))
    lps_origin = np.array([-10.0, 20.0, 30.0])
    np.testing.assert_allclose(image.affine[:3, 3].numpy(), lps_origin * [-1, -1, 1])
    np.testing.assert_allclose(image.affine[:3, :3].numpy(), np.diag([-0.6, -0.8, 2.0]))


def test_per_slice_rescale_is_applied(synthetic_series):
    slopes = [0.5, 1.0, 2.0, 0.25, 1.5]
    folder, volume, _ = synthetic_series(n_slices=5, slopes=slopes)
    np.testing.assert_allclose(load_image(folder)[0].numpy(), volume, rtol=1e-6)


def test_descending_slice_positions_give_the_same_world_grid(synthetic_series):
    folder, volume, _ = synthetic_series(n_slices=5, step=-3.0)
    image = load_image(folder)
    # sorted along the normal (+z), so the first slice is the most inferior one
    np.testing.assert_array_equal(image[0].numpy(), volume[:, :, ::-1].astype(np.float32))
    assert image.affine[2, 2] == pytest.approx(3.0)
    assert image.affine[2, 3] == pytest.approx(30.0 - 12.0)


def test_missing_slice_is_an_error_naming_the_gap(synthetic_series):
    folder, _, _ = synthetic_series(n_slices=8, drop=(4,))
    with pytest.raises(InputError, match=r"1 slice\(s\) missing after slice 4"):
        load_image(folder)


def test_missing_slice_can_be_resampled_with_a_warning(synthetic_series):
    folder, volume, _ = synthetic_series(n_slices=8, drop=(4,))
    with pytest.warns(UserWarning, match="resampled"):
        image = load_image(folder, irregular_slices="resample")
    assert image.shape[-1] == 8
    np.testing.assert_allclose(image[0, :, :, 4].numpy(), (volume[:, :, 3] + volume[:, :, 5]) / 2, rtol=1e-5)
    np.testing.assert_allclose(image[0, :, :, 7].numpy(), volume[:, :, 7], rtol=1e-6)


def test_duplicate_slices_are_an_error(synthetic_series):
    folder, _, _ = synthetic_series(n_slices=5, duplicate=(2,))
    with pytest.raises(InputError, match="duplicate slice position"):
        load_image(folder)


def test_enhanced_ct_frames_are_ordered_by_plane_position():
    path = pydicom_test_file("eCT_Supplemental.dcm")
    image = load_image(path)
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array  # frame 1 lies at z=-159, frame 2 at z=-149
    # rows run along -x (LPS), so the slice normal row x column points to -z: k runs downwards
    assert image.shape == (1, 512, 512, 2)
    np.testing.assert_array_equal(image[0, :, :, 0].numpy(), frames[1].T.astype(np.float32) - 1024)
    np.testing.assert_array_equal(image[0, :, :, 1].numpy(), frames[0].T.astype(np.float32) - 1024)
    assert image.affine[2, 2] == pytest.approx(-10.0)
    assert image.affine[2, 3] == pytest.approx(-149.0)
    assert image.affine[0, 0] == pytest.approx(0.388672)  # LPS -x is RAS +x
    np.testing.assert_allclose(image.meta["spacing"][:2], [0.388672, 0.388672])


def test_enhanced_object_without_functional_groups_is_refused():
    with pytest.raises(InputError, match="no usable geometry|without functional groups"):
        load_image(pydicom_test_file("emri_small.dcm"))


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_transfer_syntaxes_decode_to_the_uncompressed_values(compressed):
    plain = load_image(pydicom_test_file("MR_small.dcm"))
    decoded = load_image(pydicom_test_file(compressed))
    np.testing.assert_array_equal(decoded.numpy(), plain.numpy())
    np.testing.assert_allclose(decoded.affine.numpy(), plain.affine.numpy())


def test_jpeg2000_ct_matches_its_uncompressed_twin():
    plain = load_image(pydicom_test_file("693_UNCR.dcm"))
    decoded = load_image(pydicom_test_file("693_J2KR.dcm"))
    np.testing.assert_array_equal(decoded.numpy(), plain.numpy())


def test_single_dicom_file_is_one_slice_volume():
    image = load_image(pydicom_test_file("CT_small.dcm"))
    assert image.shape == (1, 128, 128, 1)
    assert image.meta["units"] == "HU"


def test_nm_tomographic_multiframe_geometry(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "NM", generate_uid(), generate_uid()
    ds.NumberOfFrames, ds.Rows, ds.Columns = 4, 3, 5
    ds.PixelSpacing, ds.SpacingBetweenSlices = [4.0, 4.0], 4.0
    detector = Dataset()
    detector.ImagePositionPatient = [-10.0, -6.0, 12.0]
    detector.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.DetectorInformationSequence = [detector]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "spect.dcm", enforce_file_format=True)
    image = load_image(tmp_path / "spect.dcm")
    assert image.shape == (1, 5, 3, 4)
    assert image.meta["units"] == "counts"
    np.testing.assert_array_equal(image[0].numpy(), np.transpose(frames, (2, 1, 0)).astype(np.float32))
    np.testing.assert_allclose(image.affine.numpy(), [[-4, 0, 0, 10], [0, -4, 0, 6], [0, 0, 4, 12], [0, 0, 0, 1]])
