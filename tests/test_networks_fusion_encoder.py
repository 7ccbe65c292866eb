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


def test_average_start_fuses_identical_sources_into_the_autoencoder_output():
    from monai_fusion.networks.fusion_encoder import FeatureDecoder
    from monai_fusion.networks.fusion_net import EncoderFusionNet

    torch.manual_seed(0)
    encoder, decoder = FusionEncoder(), FeatureDecoder()
    net = EncoderFusionNet(encoder=encoder, decoder=decoder, average_start=True).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(image, image), decoder(encoder(image)))
        other = torch.rand(2, 1, 32, 32)
        averaged = [0.5 * (x + y) for x, y in zip(encoder(image), encoder(other))]
        torch.testing.assert_close(net(image, other), decoder(averaged))


def test_decoder_file_round_trip_and_bad_files(tmp_path):
    import pytest

    from monai_fusion.errors import InputError
    from monai_fusion.networks.fusion_encoder import FeatureDecoder, decoder_checkpoint, load_fusion_decoder

    decoder = FeatureDecoder()
    torch.save(decoder_checkpoint(decoder, (16, 32, 64, 96)), tmp_path / "decoder.pt")
    loaded = load_fusion_decoder(tmp_path / "decoder.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), decoder.state_dict().values()))
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a monai-fusion fusion decoder file"):
        load_fusion_decoder(tmp_path / "other.pt")
    with pytest.raises(InputError, match="fusion decoder weights not found"):
        load_fusion_decoder(tmp_path / "absent.pt")


def test_the_shipped_decoder_reconstructs_through_the_shipped_encoder():
    """The pretraining's halves belong together: encoder then decoder gives back the image."""
    from monai_fusion.networks import load_fusion_decoder

    log = json.loads(fusion_encoder_weights_path(2).with_suffix(".json").read_text())
    path = fusion_encoder_weights_path(2).with_name(log["decoder_weights"]["file"])
    assert path.stat().st_size == log["decoder_weights"]["bytes"] < 1_000_000
    image = load_image(shared_path("harvard", "ct-mri", "mri", "20010.png"), require_3d=False).as_tensor()[None] / 255.0
    with torch.no_grad():
        restored = load_fusion_decoder()(load_fusion_encoder()(image))
    error = float((restored - image).abs().mean())
    # measured 0.021 against 0.167 for a flat guess and 0.099 for a random encoder and decoder
    assert error < 0.25 * float((image - image.mean()).abs().mean()), error
