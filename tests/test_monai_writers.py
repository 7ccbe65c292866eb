"""The ImageWriter subclasses driven by MONAI's own SaveImage / SaveImaged."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import SaveImage, SaveImaged

from monai_fusion.io import (
    DicomSeriesImageWriter,
    NiftiImageWriter,
    NrrdImageWriter,
    RgbDicomImageWriter,
    RgbNiftiImageWriter,
    RgbNrrdImageWriter,
    load_image,
)
from tests.conftest import shared_path

# right-handed (LPS-like), so a DICOM round trip keeps the slice order (see test_dicom_writer)
AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, -1.25, 0, -10.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


def _image(channels=1, dtype=torch.float32):
    data = torch.arange(channels * 4 * 5 * 3, dtype=torch.float32).reshape(channels, 4, 5, 3)
    meta = {"filename_or_obj": "case01.nii.gz"}
    return MetaTensor(data.to(dtype), affine=torch.as_tensor(AFFINE), meta=meta)


@pytest.mark.parametrize("writer, ext", [(NiftiImageWriter, ".nii.gz"), (NrrdImageWriter, ".nrrd")])
def test_save_image_with_grey_writers(tmp_path, writer, ext):
    SaveImage(output_dir=tmp_path, output_ext=ext, writer=writer, output_postfix="fused", separate_folder=False,
              print_log=False)(_image())
    back = load_image(tmp_path / f"case01_fused{ext}")
    np.testing.assert_allclose(back.affine.numpy(), AFFINE, atol=1e-5)
    np.testing.assert_array_equal(back.numpy(), _image().numpy())


@pytest.mark.parametrize("writer, ext", [(RgbNrrdImageWriter, ".nrrd"), (RgbNiftiImageWriter, ".nii.gz"),
                                         (RgbDicomImageWriter, ".dcm")])
def test_save_image_with_rgb_writers(tmp_path, writer, ext):
    image = _image(channels=3, dtype=torch.uint8)
    SaveImage(output_dir=tmp_path, output_ext=ext, writer=writer, output_postfix="rgb", separate_folder=False,
              output_dtype=np.uint8, print_log=False)(image)
    back = load_image(tmp_path / f"case01_rgb{ext}")
    np.testing.assert_array_equal(back.numpy(), image.numpy())
    np.testing.assert_allclose(back.affine.numpy(), AFFINE, atol=1e-4)


def test_dcm_extension_is_registered_and_uses_the_reference_from_metadata(tmp_path):
    ct = load_image(shared_path("mridir", "ct"))
    crop = ct[:, 200:264, 200:264, 40:44]  # MetaTensor slicing keeps a correct affine
    crop.meta["filename_or_obj"] = "ct.dcm"
    SaveImaged(keys="image", output_dir=tmp_path, output_ext=".dcm", output_postfix="crop", separate_folder=False,
               output_dtype=None, print_log=False)({"image": crop})
    folder = tmp_path / "ct_crop"
    back = load_image(folder)
    np.testing.assert_allclose(back.affine.numpy(), crop.affine.numpy(), atol=1e-4)
    np.testing.assert_array_equal(back.numpy(), crop.numpy())
    header = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert header.FrameOfReferenceUID == ct.meta["frame_of_reference_uid"]
    assert header.Modality == "CT"


def test_resample_option_writes_on_the_original_grid(tmp_path):
    image = _image()
    image.meta["original_affine"] = torch.as_tensor(AFFINE)
    flipped = MetaTensor(image.as_tensor().flip(1), affine=torch.as_tensor(AFFINE @ np.array(
        [[-1, 0, 0, 3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)),
        meta={k: v for k, v in image.meta.items() if k != "affine"})
    flipped.meta["original_affine"] = torch.as_tensor(AFFINE)
    flipped.meta["spatial_shape"] = np.array([4, 5, 3])
    writer = NrrdImageWriter()
    writer.set_data_array(flipped)
    writer.set_metadata(flipped.meta, resample=True, mode="nearest")
    writer.write(tmp_path / "r.nrrd", verbose=False)
    back = load_image(tmp_path / "r.nrrd")
    np.testing.assert_allclose(back.affine.numpy(), AFFINE, atol=1e-5)
    np.testing.assert_allclose(back.numpy(), image.numpy(), atol=1e-4)


def test_dicom_writer_needs_an_affine():
    writer = DicomSeriesImageWriter()
    writer.set_data_array(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="affine"):
        writer.set_metadata({})
