"""The shipped pretrained encoder: small, documented, loads, and gives finite features on a real slice."""

from __future__ import annotations

import json

import numpy as np
import torch

from monai_fusion.io import load_image
from monai_fusion.networks import FusionEncoder, fusion_encoder_features, fusion_encoder_weights_path, load_fusion_encoder
from monai_fusion.networks.weights import read_checkpoint
from tests.conftest import shared_path


def test_the_weight_file_is_small_and_has_its_training_log():
    path = fusion_encoder_weights_path(2)
    assert path.is_file() and path.stat().st_size < 2_000_000
    log = json.loads(path.with_suffix(".json").read_text())
    assert log["weights"]["bytes"] == path.stat().st_size
    assert len(log["epochs"]) == log["recipe"]["epochs"] and log["seed"] == log["recipe"]["seed"]
    assert log["final"]["val_loss"] < log["val_loss_identity_baseline"]  # it learnt to restore corrupted images
    assert read_checkpoint(path)["config"] == FusionEncoder().config()


def test_the_shipped_weights_give_finite_multi_level_features_on_a_real_harvard_slice():
    image = load_image(shared_path("harvard", "ct-mri", "mri", "20010.png"), require_3d=False) / 255.0
    extractor = fusion_encoder_features().freeze()
    levels = extractor.extract(image)
    assert [tuple(level.shape) for level in levels] == [(16, 256, 256), (32, 128, 128), (64, 64, 64), (96, 32, 32)]
    assert all(bool(torch.isfinite(level).all()) and float(level.abs().mean()) > 0 for level in levels)


def test_the_3d_twin_is_inflated_from_the_2d_weights():
    encoder_3d = load_fusion_encoder(spatial_dims=3)
    assert encoder_3d.spatial_dims == 3
    weight_2d = load_fusion_encoder().stages[0][0].weight
    np.testing.assert_allclose(encoder_3d.stages[0][0].weight.sum(dim=2).detach().numpy(), weight_2d.detach().numpy(),
                               rtol=1e-5, atol=1e-7)
