"""fuse_rule_files and the ``monai-fusion fuse-rule`` command."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.cli import main
from monai_fusion.errors import InputError
from monai_fusion.io import load_image, write_nifti
from monai_fusion.workflows.fuse_rule import fuse_rule_files, normalise_intensity
from tests.conftest import shared_path


def test_colour_pair_keeps_pet_chroma_and_writes_weight(tmp_path):
    mri = shared_path("harvard", "pet-mri", "mri", "25034.png")
    pet = shared_path("harvard", "pet-mri", "pet", "25034.png")
    out = fuse_rule_files(mri, pet, tmp_path / "f.png", weight_path=tmp_path / "w.png")
    fused, weight = load_image(out.fused), load_image(out.weight)
    assert out.colour and fused.shape == (3, 256, 256) and weight.shape == (1, 256, 256)
    assert 0.0 <= float(weight.min()) and float(weight.max()) <= 255.0
    # swapping the sources gives the same picture and the complementary weight
    swapped = fuse_rule_files(pet, mri, tmp_path / "s.png", weight_path=tmp_path / "sw.png")
    np.testing.assert_array_equal(load_image(swapped.fused).numpy(), fused.numpy())
    assert abs(swapped.weight_of_a + out.weight_of_a - 1.0) < 1e-6


def test_grey_pair_average_is_exact(tmp_path):
    mri = shared_path("harvard", "ct-mri", "mri", "2004.png")
    ct = shared_path("harvard", "ct-mri", "ct", "2004.png")
    fuse_rule_files(mri, ct, tmp_path / "avg.nii.gz", method="average")
    expected = (load_image(mri).numpy() + load_image(ct).numpy()) / 2 / 255
    np.testing.assert_allclose(load_image(tmp_path / "avg.nii.gz").numpy()[..., 0], expected, atol=1e-6)


def test_volumes_are_normalised_robustly_and_must_share_a_grid(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    write_nifti(rng.normal(100, 20, (1, 16, 16, 16)), tmp_path / "a.nii.gz", affine=affine)
    write_nifti(rng.normal(-500, 300, (1, 16, 16, 16)), tmp_path / "b.nii.gz", affine=affine)
    out = fuse_rule_files(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "f.nrrd", method="laplacian_pyramid",
                          levels=2)
    fused = load_image(out.fused)
    np.testing.assert_allclose(fused.affine.numpy(), affine)
    assert 0.0 <= float(fused.min()) and float(fused.max()) <= 1.0
    write_nifti(rng.normal(0, 1, (1, 16, 16, 16)), tmp_path / "moved.nii.gz", affine=np.diag([2.0, 2.0, 2.5, 1.0]))
    with pytest.raises(InputError, match="different grids"):
        fuse_rule_files(tmp_path / "a.nii.gz", tmp_path / "moved.nii.gz", tmp_path / "g.nrrd")
    assert not (tmp_path / "g.nrrd").exists()


def test_normalisation_choices():
    image = MetaTensor(torch.arange(1000.0).reshape(1, 10, 10, 10), meta={"source_format": "nifti"})
    assert float(normalise_intensity(image, "minmax").max()) == 1.0
    robust = normalise_intensity(image, "percentile")
    assert float(robust.min()) == 0.0 and float(robust.max()) == 1.0 and float(robust[0, 5, 0, 0]) < 0.51
    assert float(normalise_intensity(image, "none").max()) == 999.0
    with pytest.raises(InputError, match="constant"):
        normalise_intensity(MetaTensor(torch.ones(1, 4, 4, 4), meta={}), "minmax")


def test_cli_fuse_rule_json_and_errors(capsys, tmp_path):
    mri = str(shared_path("harvard", "ct-mri", "mri", "2004.png"))
    ct = str(shared_path("harvard", "ct-mri", "ct", "2004.png"))
    assert main(["fuse-rule", mri, ct, "--out", str(tmp_path / "f.png"), "--method", "dwt", "--option", "levels=2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "dwt" and report["shape"] == [1, 256, 256] and not report["colour"]
    assert main(["fuse-rule", mri, ct, "--out", str(tmp_path / "x.png"), "--method", "median"]) == 2
    assert "unknown fusion method 'median'" in capsys.readouterr().err
    assert main(["fuse-rule", mri, ct, "--out", str(tmp_path / "x.png"), "--option", "depth=3"]) == 2
    assert "does not take depth" in capsys.readouterr().err
    assert main(["fuse-rule", mri, ct, "--out", str(tmp_path / "x.jpg")]) == 2
    assert "write .png, .nii.gz or .nrrd" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
