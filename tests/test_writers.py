"""write_nifti / write_nrrd / write_rgb_nrrd / write_rgb_nifti: round trips, headers, refusals."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_fusion.errors import OutputError
from monai_fusion.io import affine_from_sitk, load_image, write_nifti, write_nrrd, write_rgb_nifti, write_rgb_nrrd
from tests.conftest import shared_path

OBLIQUE = np.array([[0.0, -0.9, 0.1, 12.5], [0.7, 0.0, 0.0, -30.25], [0.0, 0.05, 2.5, 7.0], [0, 0, 0, 1]])


def _oblique_image(shape=(5, 6, 7)):
    data = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape) / 7
    return MetaTensor(data, affine=torch.as_tensor(OBLIQUE))


def test_template_round_trip_nifti_nrrd_nifti(tmp_path):
    original = load_image(shared_path("templates", "SPECT.nii"))
    write_nrrd(original, tmp_path / "spect.nrrd")
    via_nrrd = load_image(tmp_path / "spect.nrrd")
    write_nifti(via_nrrd, tmp_path / "spect.nii.gz")
    back = load_image(tmp_path / "spect.nii.gz")
    for image in (via_nrrd, back):
        np.testing.assert_allclose(image.affine.numpy(), original.affine.numpy(), atol=1e-4)
        np.testing.assert_array_equal(image.numpy(), original.numpy())


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
def test_oblique_round_trip_for_each_input_type(tmp_path, kind):
    image = _oblique_image()
    data = {"numpy": image.numpy(), "torch": image.as_tensor(), "metatensor": image}[kind]
    affine = None if kind == "metatensor" else OBLIQUE
    for suffix, writer in ((".nrrd", write_nrrd), (".nii.gz", write_nifti)):
        writer(data, tmp_path / f"img{suffix}", affine=affine)
        back = load_image(tmp_path / f"img{suffix}")
        np.testing.assert_allclose(back.affine.numpy(), OBLIQUE, atol=1e-4)
        np.testing.assert_array_equal(back.numpy(), image.numpy())


def test_nrrd_header_is_what_slicer_expects(tmp_path):
    write_nrrd(_oblique_image(), tmp_path / "img.nrrd")
    _, header = nrrd.read(str(tmp_path / "img.nrrd"))
    assert header["space"] == "left-posterior-superior"
    assert header["type"] == "float" and header["encoding"] == "gzip"
    assert list(header["kinds"]) == ["domain"] * 3
    np.testing.assert_allclose(header["space directions"], (np.diag([-1, -1, 1]) @ OBLIQUE[:3, :3]).T)
    np.testing.assert_allclose(header["space origin"], [-12.5, 30.25, 7.0])
    np.testing.assert_allclose(affine_from_sitk(sitk.ReadImage(str(tmp_path / "img.nrrd"))), OBLIQUE, atol=1e-5)


def test_nifti_header_is_float32_with_sform_and_qform(tmp_path):
    affine = np.diag([-0.5, 0.5, 2.0, 1.0])
    write_nifti(np.ones((3, 4, 5), np.float64), tmp_path / "a.nii", affine=affine)
    image = nib.load(str(tmp_path / "a.nii"))
    assert image.get_data_dtype() == np.float32
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    np.testing.assert_allclose(image.get_qform(), affine)


def test_rgb_nrrd_has_rgb_color_kind_and_round_trips(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (3, 4, 5, 6), dtype=np.uint8)
    write_rgb_nrrd(rgb, tmp_path / "c.nrrd", affine=OBLIQUE)
    data, header = nrrd.read(str(tmp_path / "c.nrrd"))
    assert list(header["kinds"]) == ["RGB-color", "domain", "domain", "domain"]
    assert header["type"] == "uint8" and data.shape == (3, 4, 5, 6)
    back = load_image(tmp_path / "c.nrrd")
    np.testing.assert_array_equal(back.numpy(), rgb)
    np.testing.assert_allclose(back.affine.numpy(), OBLIQUE, atol=1e-5)


def test_rgb_nifti_round_trip_and_float_scaling(tmp_path):
    rgb = np.random.default_rng(2).random((3, 4, 5, 2)).astype(np.float32)
    write_rgb_nifti(rgb, tmp_path / "c.nii.gz", affine=np.eye(4))
    back = load_image(tmp_path / "c.nii.gz")
    np.testing.assert_array_equal(back.numpy(), np.rint(rgb * 255).astype(np.uint8))
    with pytest.raises(OutputError, match="colour values"):
        write_rgb_nifti(rgb * 300, tmp_path / "bad.nii.gz", affine=np.eye(4))


def test_refusals_leave_nothing_behind(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(OutputError, match="NaN/Inf"):
        write_nifti(data, tmp_path / "nan.nii.gz", affine=np.eye(4))
    with pytest.raises(OutputError, match="no affine"):
        write_nrrd(np.ones((3, 3, 3)), tmp_path / "noaffine.nrrd")
    with pytest.raises(OutputError, match="must end with"):
        write_nrrd(np.ones((3, 3, 3)), tmp_path / "wrong.nii", affine=np.eye(4))
    with pytest.raises(OutputError, match="expected 3 channel"):
        write_rgb_nrrd(np.ones((2, 3, 3, 3), np.uint8), tmp_path / "rgb.nrrd", affine=np.eye(4))
    with pytest.raises(OutputError, match="invertible"):
        write_nifti(np.ones((3, 3, 3)), tmp_path / "singular.nii", affine=np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_png_round_trip_grey_and_colour(tmp_path):
    from monai_fusion.io import write_png

    grey = load_image(shared_path("harvard", "ct-mri", "mri", "2004.png"))
    write_png(grey, tmp_path / "g.png")
    np.testing.assert_array_equal(load_image(tmp_path / "g.png").numpy(), grey.numpy())
    colour = load_image(shared_path("harvard", "pet-mri", "pet", "25015.png"))
    write_png(colour, tmp_path / "c.png")
    np.testing.assert_array_equal(load_image(tmp_path / "c.png").numpy(), colour.numpy())
    with pytest.raises(OutputError, match="do not fit 8-bit PNG"):
        write_png(grey * 2, tmp_path / "too_bright.png")
    with pytest.raises(OutputError, match="one 2D slice"):
        write_png(np.zeros((1, 4, 4, 3)), tmp_path / "volume.png", affine=np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "g.png"]


def test_2d_metatensor_writes_as_one_slice_nifti(tmp_path):
    grey = load_image(shared_path("harvard", "ct-mri", "ct", "2004.png"))
    write_nifti(grey, tmp_path / "g.nii.gz")
    back = load_image(tmp_path / "g.nii.gz")
    assert back.shape == (1, 256, 256, 1)
    np.testing.assert_array_equal(back[..., 0].numpy(), grey.numpy())
