"""The pretraining and transfer scripts: one tiny, deterministic run on synthetic and real images."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_fusion.errors import InputError
from monai_fusion.networks import fusion_encoder_features, load_fusion_encoder
from monai_fusion.workflows.pretrain_encoder import (
    TransferConfig,
    collect_images,
    main,
    split_by_patient,
    steps_to_reach,
    transfer_experiment,
)
from monai_fusion.networks.fusion_encoder import load_fusion_decoder
from tests.conftest import shared_path

TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "32", "--no-mridir"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A miniature shared-data folder: Harvard pairs of a training and a validation patient per task, one template."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for task, other, patients in (("ct-mri", "ct", ("20", "37")), ("pet-mri", "pet", ("25", "30"))):
        for patient in patients:
            for slice_number in (10, 11):
                name = f"{patient}{slice_number:03d}.png"
                for modality in ("mri", other):
                    folder = root / "harvard" / task / modality
                    folder.mkdir(parents=True, exist_ok=True)
                    shape = (48, 48, 3) if modality == "pet" else (48, 48)
                    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    (root / "templates").mkdir()
    volume = np.zeros((20, 24, 20), np.float32)
    volume[3:17, 3:21, 3:17] = rng.random((14, 18, 14))
    nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), root / "templates" / "T1.nii")
    return root


def test_images_are_collected_and_split_by_patient(data_root):
    images = collect_images(data_root, include_mridir=False)
    train, validation = split_by_patient(images, lambda image: image.group)
    assert {image.group for image in validation} == {"harvard:37", "harvard:30"}
    assert {image.group for image in train} == {"harvard:20", "harvard:25", "templates"}
    assert {image.modality for image in images} == {"MR", "CT", "PET"}
    assert all(image.pixels.dtype == np.uint8 and image.pixels.ndim == 2 for image in images)
    with pytest.raises(InputError, match="no training images"):
        collect_images(data_root / "absent")


def test_one_tiny_epoch_writes_loadable_weights_and_a_log_deterministically(data_root, tmp_path):
    first = main(["pretrain", "--data", str(data_root), "--out", str(tmp_path / "a" / "encoder.pt"), *TINY])
    main(["pretrain", "--data", str(data_root), "--out", str(tmp_path / "b" / "encoder.pt"), *TINY])
    written = json.loads((tmp_path / "a" / "encoder.json").read_text())
    assert written == first
    assert [row["epoch"] for row in written["epochs"]] == [1]
    assert np.isfinite(written["epochs"][0]["train_loss"]) and np.isfinite(written["epochs"][0]["val_loss"])
    assert written["data"]["validation"]["patients"] == ["30", "37"] and written["seed"] == 0
    assert (tmp_path / "a" / "encoder.pt").read_bytes() == (tmp_path / "b" / "encoder.pt").read_bytes()
    assert (tmp_path / "a" / "decoder.pt").read_bytes() == (tmp_path / "b" / "decoder.pt").read_bytes()
    assert written["decoder_weights"]["file"] == "decoder.pt"
    load_fusion_decoder(tmp_path / "a" / "decoder.pt")
    encoder = load_fusion_encoder(tmp_path / "a" / "encoder.pt")
    assert encoder.channels == (16, 32, 64, 96)
    assert torch.get_num_threads() >= 1 and not torch.are_deterministic_algorithms_enabled()  # settings restored


def test_transfer_experiment_compares_the_two_starts(data_root, tmp_path):
    main(["pretrain", "--data", str(data_root), "--out", str(tmp_path / "encoder.pt"), *TINY])
    config = TransferConfig(data_root=data_root, encoder=tmp_path / "encoder.pt", decoder=tmp_path / "decoder.pt",
                            out=tmp_path / "transfer.json", steps=2, batch_size=2, crop=32, eval_every=1)
    result = transfer_experiment(config, verbose=False)
    assert result["decoder_sha256"] is not None
    start = {arm: run["curve"][0]["val_loss"] for arm, run in result["runs"].items()}
    assert start["pretrained"] != start["random_init"], "the pretrained arm starts from the pretrained autoencoder"
    assert set(result["runs"]) == {"pretrained", "random_init"}
    for run in result["runs"].values():
        assert [row["step"] for row in run["curve"]] == [0, 1, 2] and np.isfinite(run["final_val_loss"])
    assert result["steps_to_reach"]["random_init_final"]["random_init"] == 2 or \
        result["runs"]["random_init"]["curve"][1]["val_loss"] <= result["targets"]["random_init_final"]
    assert json.loads((tmp_path / "transfer.json").read_text())["pairs"]["validation_patients"] == ["30", "37"]
    frozen = TransferConfig(data_root=data_root, encoder=tmp_path / "encoder.pt", decoder=None, steps=1, batch_size=2,
                            crop=32, eval_every=1, freeze_encoder=True)
    frozen_result = transfer_experiment(frozen, verbose=False)
    assert frozen_result["config"]["freeze_encoder"] is True
    assert frozen_result["runs"]["pretrained"]["best_val_loss"] <= frozen_result["runs"]["pretrained"]["mean_val_loss"]


def test_steps_to_reach():
    curve = [{"step": 0, "val_loss": 1.0}, {"step": 10, "val_loss": 0.5}, {"step": 20, "val_loss": 0.4}]
    assert steps_to_reach(curve, 0.5) == 10 and steps_to_reach(curve, 0.1) is None


def test_one_tiny_epoch_on_real_images(tmp_path):
    root = shared_path("harvard").parent
    log = main(["pretrain", "--data", str(root), "--out", str(tmp_path / "encoder.pt"), "--max-per-source", "2",
                "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "32", "--no-mridir"])
    assert log["data"]["train"]["by_source"]["harvard"] > 0 and np.isfinite(log["final"]["train_loss"])
    levels = fusion_encoder_features(path=tmp_path / "encoder.pt").freeze().extract(torch.rand(1, 32, 32))
    assert len(levels) == 4
