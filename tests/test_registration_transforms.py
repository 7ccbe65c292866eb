"""MONAI transforms: RegisterToReference(d), ApplyTransformFile(d), and Invertd undoing them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from monai_fusion.errors import InputError
from monai_fusion.io import load_image
from monai_fusion.registration import AffineTransform, ImageGrid, write_transform
from monai_fusion.registration.evaluation import (
    downsample,
    foreground_points,
    move_image,
    point_error,
    random_linear_transform,
)
from monai_fusion.registration.itk_io import image_to_sitk
from monai_fusion.transforms.registration import (
    ApplyTransformFile,
    ApplyTransformFiled,
    ApplyTransformFileD,
    RegisterToReference,
    RegisterToReferenced,
    RegisterToReferenceD,
    RegisterToReferenceDict,
    ResampleWithTransform,
)
from tests.conftest import shared_path
from tests.test_registration_engine import as_metatensor, phantom_2d

FAST = {"levels": (2, 1)}


@pytest.fixture(scope="module")
def pet_pair():
    """T1 (fixed, 4 mm) and a PET moved by a known rigid transform, with a binary 'lesion' mask."""
    folder = shared_path("templates")
    t1 = downsample(load_image(folder / "T1.nii"), 2)
    pet = downsample(load_image(folder / "PET.nii"), 2)
    known = random_linear_transform(7, "rigid", foreground_points(t1).mean(axis=0), max_degrees=10, max_mm=10)
    moved = move_image(pet, known, pad=3)
    mask = (moved > 0.6 * float(moved.max())).float()
    moved.meta["modality"] = "PT"
    moved.meta["filename_or_obj"] = "pet.nii"
    return t1, moved, MetaTensor(mask.as_tensor(), affine=moved.affine), known


def test_aliases():
    assert RegisterToReferenceD is RegisterToReferenceDict is RegisterToReferenced
    assert ApplyTransformFileD is ApplyTransformFiled


def test_dict_transform_registers_once_and_applies_per_key_modes(pet_pair):
    t1, pet, mask, known = pet_pair
    transform = RegisterToReferenced(keys=("pet", "mask"), fixed_key="t1", moving_key="pet", mode=("bilinear", "nearest"),
                                     preset="pet-mr", transform_key="pet_to_t1")
    out = transform({"t1": t1, "pet": pet, "mask": mask})
    for key in ("pet", "mask"):
        assert out[key].shape[1:] == t1.shape[1:]
        assert torch.allclose(out[key].affine, t1.affine.to(out[key].affine.dtype))
        record = out[key].meta["registration"]
        assert record["model"] == "rigid" and record["backend"] == "torch" and record["converged"]
        assert np.asarray(record["affine_ras"]).shape == (4, 4)
        assert record["fixed_key"] == "t1" and record["moving_key"] == "pet"
    assert set(torch.unique(out["mask"]).tolist()) <= {0.0, 1.0}
    assert out["pet"].meta["modality"] == "PT" and out["pet"].meta["filename_or_obj"] == "pet.nii"
    # the same transform for both keys, and it recovers the known motion to within the templates' misalignment
    assert out["pet"].meta["registration"]["affine_ras"] == out["mask"].meta["registration"]["affine_ras"]
    error = point_error(known.compose(out["pet_to_t1"]), AffineTransform.identity(3), foreground_points(t1))
    assert error.mean() < 4.0


def test_invertd_restores_the_moving_grid(pet_pair):
    t1, pet, mask, _ = pet_pair
    pipeline = Compose([RegisterToReferenced(keys=("pet", "mask"), fixed_key="t1", moving_key="pet",
                                             mode=("bilinear", "nearest"), preset="pet-mr")])
    out = pipeline({"t1": t1, "pet": pet, "mask": mask})
    out["pred"] = out["mask"].clone()
    inverted = Invertd(keys=("pet", "pred"), transform=pipeline, orig_keys=("pet", "mask"),
                       nearest_interp=False)(out)
    for key, original in (("pet", pet), ("pred", mask)):
        assert inverted[key].shape == original.shape
        assert torch.allclose(inverted[key].affine.double(), original.affine.double(), atol=1e-6)
        assert "registration" not in inverted[key].meta
    # values come back where they were (inside the region the fixed grid saw)
    inside = foreground_points(t1).shape[0] > 0
    assert inside
    core = (pet[0] > 0.3 * float(pet.max()))
    difference = (inverted["pet"][0] - pet[0])[core].abs().mean() / pet[0][core].abs().mean()
    assert float(difference) < 0.1
    agreement = ((inverted["pred"][0] > 0.5) == (mask[0] > 0.5))[core].float().mean()
    assert float(agreement) > 0.97


@pytest.mark.parametrize("kind", ["metatensor", "tensor", "numpy"])
def test_array_transform_on_2d_inputs(kind):
    fixed = as_metatensor(phantom_2d(64))
    moving = move_image(fixed, random_linear_transform(2, "rigid", (32, 32), 8, 4, dims=2), pad=0)
    data = {"metatensor": moving, "tensor": moving.as_tensor(), "numpy": moving.as_tensor().numpy()}[kind]
    reference = fixed if kind == "metatensor" else fixed.as_tensor()
    register = RegisterToReference(model="rigid", **FAST)
    out = register(data, reference)
    assert type(out) is type(data) or (kind == "metatensor" and isinstance(out, MetaTensor))
    assert tuple(out.shape) == tuple(fixed.shape)
    assert register.last_result is not None and register.last_result.converged
    similarity = np.corrcoef(np.asarray(out).ravel(), fixed.numpy().ravel())[0, 1]
    assert similarity > 0.97


def test_array_transform_inverse_round_trip():
    fixed = as_metatensor(phantom_2d(64))
    moving = move_image(fixed, random_linear_transform(2, "rigid", (32, 32), 8, 4, dims=2), pad=4)
    register = RegisterToReference(model="rigid", **FAST)
    out = register(moving, fixed)
    assert len(out.applied_operations) == len(moving.applied_operations) + 1
    back = register.inverse(out)
    assert back.shape == moving.shape
    assert torch.allclose(back.affine.double(), moving.affine.double())
    assert len(back.applied_operations) == len(moving.applied_operations)


def test_settings_and_keys_are_checked_early():
    with pytest.raises(InputError, match="unknown registration preset"):
        RegisterToReference(preset="mri-ct")
    with pytest.raises(InputError, match="unknown interpolation mode"):
        RegisterToReferenced(keys="pet", fixed_key="t1", moving_key="pet", mode="cubic")
    with pytest.raises(InputError, match="fixed_key"):
        RegisterToReferenced(keys=("t1", "pet"), fixed_key="t1", moving_key="pet")
    with pytest.raises(InputError, match="unknown registration backend"):
        RegisterToReference(backend="ants")


def test_missing_keys():
    transform = RegisterToReferenced(keys=("pet", "mask"), fixed_key="t1", moving_key="pet", allow_missing_keys=True)
    data = {"t1": as_metatensor(phantom_2d(32))}
    assert transform(data).keys() == data.keys()
    with pytest.raises(InputError, match="missing"):
        RegisterToReferenced(keys="pet", fixed_key="t1", moving_key="pet")(data)


def test_resample_with_transform_records_and_inverts():
    image = as_metatensor(phantom_2d(40))
    transform = AffineTransform.from_translation([2.0, -1.0])
    out = ResampleWithTransform()(image, transform, image, record={"note": "known"})
    assert out.meta["registration"] == {"note": "known"}
    assert torch.allclose(out[0, 10:30, 10:30], image[0, 12:32, 9:29], atol=1e-5)


def test_apply_transform_file_matches_simpleitk(tmp_path):
    image = MetaTensor(torch.rand(1, 20, 24, 16),
                       affine=torch.tensor([[0.0, -1.5, 0.0, 20.0], [2.0, 0.0, 0.0, -30.0], [0.0, 0.0, 2.5, -10.0], [0, 0, 0, 1]]))
    known = random_linear_transform(9, "affine", ImageGrid.of(image).centre(), max_degrees=10, max_mm=5)
    path = write_transform(known, tmp_path / "known.tfm")
    ours = ApplyTransformFile(path)(image)
    grid = ImageGrid.of(image)
    sitk_image = image_to_sitk(image[0], grid)
    theirs = sitk.Resample(sitk_image, sitk_image, sitk.ReadTransform(str(path)), sitk.sitkLinear, 0.0)
    theirs = torch.from_numpy(sitk.GetArrayFromImage(theirs).transpose(2, 1, 0).copy())
    # compare where the mapped point is inside the image (ITK extrapolates half a voxel, we pad with zeros)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    mapped = grid.world_to_index(known.map_numpy(grid.index_to_world(index)))
    inside = torch.from_numpy(((mapped >= 0) & (mapped <= np.array(grid.shape) - 1)).all(axis=1).reshape(grid.shape))
    assert float(inside.float().mean()) > 0.5
    assert float((theirs - ours[0])[inside].abs().max()) < 1e-4
    assert ours.meta["registration"]["transform_file"] == "known.tfm"


def test_apply_transform_file_dict_with_reference_and_inverse(tmp_path):
    image = as_metatensor(phantom_2d(40))
    labels = (image > 0.5).float()
    path = write_transform(AffineTransform.from_translation([3.0, 0.0]), tmp_path / "shift.h5")
    reference = as_metatensor(torch.zeros(1, 30, 30))
    apply = ApplyTransformFiled(keys=("image", "labels"), path=path, reference_key="reference", mode=("bilinear", "nearest"))
    out = apply({"image": image, "labels": labels, "reference": reference})
    assert out["image"].shape == (1, 30, 30)
    assert set(torch.unique(out["labels"]).tolist()) <= {0.0, 1.0}
    back = apply.inverse(out)
    assert back["image"].shape == image.shape
    # out[i] = image[i + 3] for the 30 reference rows, so rows 3..32 come back
    assert torch.allclose(back["image"][0, 3:33, :30], image[0, 3:33, :30], atol=1e-5)
    assert float(back["image"][0, :3].abs().max()) == 0
