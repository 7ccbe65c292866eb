"""DualDiscriminatorLoss / PatchDiscriminator: the DDcGAN-style adversarial fusion term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_fusion.losses import DualDiscriminatorLoss, FusionLoss, PatchDiscriminator
from monai_fusion.networks import DetailFusionNet


def textures(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random textures on 0..1: what a "real" source looks like to the discriminators here."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size // 4, size // 4, generator=generator)
    return F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("dims", [2, 3])
def test_patch_discriminator_scores_patches_in_2d_and_3d(dims):
    critic = PatchDiscriminator(dims)
    image = torch.rand(2, 1, *([16] * dims))
    assert critic(image).shape == (2, 1, *([2] * dims))
    with pytest.raises(ValueError, match="spatial_dims"):
        PatchDiscriminator(4)


def test_training_call_updates_the_discriminators_and_the_gradient_reaches_only_the_fused_image():
    term = DualDiscriminatorLoss(seed=1)
    before = [p.detach().clone() for p in term.parameters()]
    a, b = textures(2, seed=1), textures(2, seed=2)
    fused = torch.maximum(a, b).requires_grad_()
    loss = term(fused, a, b)
    loss.backward()
    assert torch.isfinite(loss) and float(loss) > 0
    assert fused.grad is not None and fused.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.parameters())  # the trainer's backward does not train the critics
    assert any(not torch.equal(p, q) for p, q in zip(term.parameters(), before))  # the critics took their step
    assert all(p.requires_grad for p in term.parameters())
    assert term.last_discriminator_loss > 0


def test_evaluation_mode_and_no_grad_only_score():
    term = DualDiscriminatorLoss(seed=2)
    a, b = textures(2, seed=3), textures(2, seed=4)
    before = [p.detach().clone() for p in term.parameters()]
    term.eval()
    term(a, a, b)
    term.train()
    with torch.no_grad():
        term(a, a, b)
    assert all(torch.equal(p, q) for p, q in zip(term.parameters(), before))


def test_the_discriminators_learn_to_tell_flat_images_from_the_sources():
    """After a few dozen steps a flat grey image costs the generator more than a source-like one."""
    term = DualDiscriminatorLoss(learning_rate=1e-3, seed=0)
    flat = torch.full((4, 1, 32, 32), 0.5)
    for step in range(60):
        real = textures(4, seed=100 + step)
        term(flat, real, real)  # the fused image is flat; both sources are textures
    term.eval()
    with torch.no_grad():
        cost_flat = float(term(flat, flat, flat))
        cost_texture = float(term(textures(4, seed=999), flat, flat))
    assert cost_flat > cost_texture + 0.2, (cost_flat, cost_texture)


def test_fusion_loss_trains_a_network_with_the_adversarial_term():
    loss = FusionLoss("mri-pet", weights={"adversarial": 0.1})
    adversarial = loss.terms["adversarial"]
    assert isinstance(adversarial, DualDiscriminatorLoss) and adversarial.b_pool == 2  # PET compared at half resolution
    assert any(k.startswith("terms.adversarial.discriminator_a.") for k in loss.state_dict())  # checkpointed with the loss
    torch.manual_seed(0)
    net = DetailFusionNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    image = torch.cat([textures(2, seed=5), textures(2, seed=6)], dim=1)
    critic_before = [p.detach().clone() for p in adversarial.parameters()]
    net_before = [p.detach().clone() for p in net.parameters()]
    for _ in range(2):
        optimiser.zero_grad()
        value = loss(net(image), image)
        value.backward()
        optimiser.step()
    assert torch.isfinite(value) and "adversarial" in loss.last_terms and loss.last_terms["adversarial"] > 0
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), net_before))
    assert any(not torch.equal(p, q) for p, q in zip(adversarial.parameters(), critic_before))
    assert "adversarial" not in FusionLoss("ct-mri").terms  # off by default
