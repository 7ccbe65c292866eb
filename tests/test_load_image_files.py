"""load_image on NIfTI / NRRD / MHA files: template geometry, 4D refusal, NaN policy, RGB."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from monai_fusion.errors import InputError
from monai_fusion.io import affine_from_sitk, load_image, orientation_code
from tests.conftest import shared_path

TEMPLATES = ["T1", "T2", "PD", "PET", "SPECT", "CT", "Transm"]


def _world_centroid(image) -> np.ndarray:
    """Intensity-weighted centre of mass in RAS millimetres."""
    values = np.clip(image[0].numpy().astype(float), 0, None)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij"), -1).reshape(-1, 3)
    weights = values.reshape(-1)
    centre_index = (index * weights[:, None]).sum(0) / weights.sum()
    return image.affine.numpy()[:3, :3] @ centre_index + image.affine.numpy()[:3, 3]


def test_templates_land_in_one_physical_space():
    images = {name: load_image(shared_path("templates", f"{name}.nii")) for name in TEMPLATES}
    assert orientation_code(images["SPECT"].affine.numpy()) == "RAS"
    assert orientation_code(images["T1"].affine.numpy()) == "LAS"
    header = nib.load(str(shared_path("templates", "SPECT.nii"))).header
    assert header.endianness == ">" and header.get_data_dtype().kind == "i"
    # the SPECT array is stored mirrored: voxel i of SPECT is voxel 90 - i of T1, same world point
    spect, t1 = images["SPECT"], images["T1"]
    np.testing.assert_allclose(np.linalg.inv(spect.affine.numpy()) @ t1.affine.numpy(),
                               [[-1, 0, 0, 90], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-6)
    centres = {name: _world_centroid(img) for name, img in images.items()}
    for name in ["T2", "PD", "PET", "SPECT"]:
        # brain-only images: their centres of mass agree to within a few voxels (2 mm)
        assert np.linalg.norm(centres[name] - centres["T1"]) < 8.0, name
    # the SPECT values are native-endian floats with the stored range
    assert spect.dtype.is_floating_point and float(spect.max()) == pytest.approx(1929.0)


def test_nifti_affine_matches_simpleitk_for_each_template():
    for name in ["T1", "SPECT"]:
        path = shared_path("templates", f"{name}.nii")
        np.testing.assert_allclose(load_image(path).affine.numpy(), affine_from_sitk(sitk.ReadImage(str(path))), atol=1e-4)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_itk_formats_read_with_their_geometry(tmp_path, suffix):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(6, 5, 4)  # sitk order (K, J, I)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.75, 2.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    direction = sitk.VersorRigid3DTransform((0, 0, np.sin(0.2), np.cos(0.2))).GetMatrix()
    image.SetDirection(direction)
    sitk.WriteImage(image, str(tmp_path / f"img{suffix}"))
    loaded = load_image(tmp_path / f"img{suffix}")
    assert loaded.shape == (1, 4, 5, 6)
    np.testing.assert_array_equal(loaded[0].numpy(), np.transpose(array, (2, 1, 0)))
    np.testing.assert_allclose(loaded.affine.numpy(), affine_from_sitk(image), atol=1e-5)
    np.testing.assert_allclose(loaded.meta["spacing"], (0.5, 0.75, 2.0), atol=1e-6)


def test_4d_nifti_is_refused_where_3d_is_required(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "four_d.nii.gz"))
    with pytest.raises(InputError, match=r"3 volumes \(4D\)"):
        load_image(tmp_path / "four_d.nii.gz")
    volumes = load_image(tmp_path / "four_d.nii.gz", require_3d=False)
    assert volumes.shape == (3, 4, 4, 4)


def test_single_volume_4d_nifti_is_accepted(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.float32), np.eye(4)), str(tmp_path / "one.nii.gz"))
    assert load_image(tmp_path / "one.nii.gz").shape == (1, 4, 4, 4)


def test_nonfinite_voxels_error_zero_or_keep(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match=r"2 NaN/Inf voxel"):
        load_image(tmp_path / "nan.nii.gz")
    with pytest.warns(UserWarning, match="replaced by 0"):
        zeroed = load_image(tmp_path / "nan.nii.gz", nonfinite="zero")
    assert float(zeroed[0, 0, 0, 0]) == 0 and bool(zeroed.isfinite().all())
    kept = load_image(tmp_path / "nan.nii.gz", nonfinite="keep")
    assert kept.meta["nonfinite_voxels"] == 2


def test_rgb24_nifti_reads_as_three_uint8_channels(tmp_path):
    packed = np.zeros((2, 3, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    packed["R"], packed["G"], packed["B"] = 10, 20, 30
    nib.save(nib.Nifti1Image(packed, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    image = load_image(tmp_path / "rgb.nii.gz")
    assert image.shape == (3, 2, 3, 4) and str(image.dtype) == "torch.uint8"
    assert [int(image[c].max()) for c in range(3)] == [10, 20, 30]


def test_modality_labels_non_dicom_images(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), str(tmp_path / "a.nii"))
    assert load_image(tmp_path / "a.nii", modality="pt").meta["modality"] == "PT"


def test_unknown_format_and_corrupt_files_are_input_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unknown image format"):
        load_image(tmp_path / "notes.txt")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputError, match="cannot be read as NIfTI"):
        load_image(tmp_path / "broken.nii.gz")
    (tmp_path / "broken.nrrd").write_text("NRRD0004\ntype: float\n")
    with pytest.raises(InputError, match="cannot be read"):
        load_image(tmp_path / "broken.nrrd")


def test_png_reads_like_monai_pil_reader(tmp_path):
    from PIL import Image

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)  # 3 rows, 4 columns
    Image.fromarray(grey).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.shape == (1, 4, 3) and image.dtype.is_floating_point
    np.testing.assert_array_equal(image[0].numpy(), grey.T)
    np.testing.assert_array_equal(image.affine.numpy(), np.eye(4))
    assert image.meta["spacing"] == (1.0, 1.0)
    rgb = np.stack([grey, grey + 1, grey + 2], -1)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    colour = load_image(tmp_path / "c.png")
    assert colour.shape == (3, 4, 3) and str(colour.dtype) == "torch.uint8"
    np.testing.assert_array_equal(colour[2].numpy(), (grey + 2).T)


def test_real_harvard_pet_is_rgb(tmp_path):
    pet = load_image(shared_path("harvard", "pet-mri", "pet", "25015.png"))
    mri = load_image(shared_path("harvard", "pet-mri", "mri", "25015.png"))
    assert pet.shape == (3, 256, 256) and mri.shape == (1, 256, 256)


def test_truncated_png_is_an_input_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(InputError, match="cannot be read as an image"):
        load_image(tmp_path / "bad.png")
