"""Fusion losses: each term measures what it claims, on images with a known answer."""

import pytest
import torch

from monai_fusion.losses import (
    TASK_WEIGHTS,
    EdgePreservationLoss,
    FusionLoss,
    GradientLoss,
    IntensityLoss,
    PerceptualLoss,
    StructureLoss,
    sobel_gradients,
)


def _pair(size=48):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    a = ((xx > size / 2) * 0.8).float()[None, None]          # vertical edge
    b = ((yy > size / 3) * 0.6 + 0.1).float()[None, None]    # horizontal edge
    return a, b


def test_sobel_of_a_ramp_is_its_slope_2d_and_3d():
    ramp = torch.arange(10.0).repeat(10, 1)[None, None]
    gy, gx = sobel_gradients(ramp)
    assert torch.allclose(gx[..., 2:-2, 2:-2], torch.ones(1)) and torch.allclose(gy, torch.zeros(1))
    volume = torch.arange(8.0)[:, None, None].expand(8, 8, 8)[None, None]
    gz, gy3, gx3 = sobel_gradients(volume)
    assert torch.allclose(gz[..., 2:-2, :, :], torch.ones(1)) and torch.allclose(gx3, torch.zeros(1))


def test_intensity_loss_is_zero_at_the_maximum():
    a, b = _pair()
    assert float(IntensityLoss()(torch.maximum(a, b), a, b)) == 0.0
    assert float(IntensityLoss()(0.5 * (a + b), a, b)) > 0.05


def test_gradient_loss_prefers_keeping_both_edges():
    a, b = _pair()
    both = (a + b).clamp(0, 1)
    assert float(GradientLoss()(both, a, b)) < float(GradientLoss()(a, a, b))


def test_structure_loss_zero_for_identical_sources():
    a, _ = _pair()
    assert float(StructureLoss()(a, a, a)) == pytest.approx(0.0, abs=1e-5)


def test_edge_preservation_orders_fusions_like_qabf():
    a, b = _pair()
    loss = EdgePreservationLoss()
    keep_both = (a + b).clamp(0, 1)      # both edges at full strength
    keep_a = a                            # only A's edge
    blurred = torch.nn.functional.avg_pool2d(keep_both, 5, 1, 2)
    assert float(loss(keep_both, a, b)) < float(loss(keep_a, a, b)) < 1.0
    assert float(loss(keep_both, a, b)) < float(loss(blurred, a, b))
    assert float(loss(a, a, a)) == pytest.approx(1 - 0.9994 / (1 + torch.exp(torch.tensor(-7.5)).item()) * 0.9879 / (1 + torch.exp(torch.tensor(-4.4)).item()), abs=2e-3)


def test_perceptual_loss_uses_a_frozen_encoder():
    a, b = _pair(32)
    loss = PerceptualLoss()
    assert all(not p.requires_grad for p in loss.encoder.parameters())
    fused = torch.maximum(a, b).requires_grad_(True)
    value = loss(fused, a, b)
    value.backward()
    assert fused.grad is not None and float(value) >= 0


def test_fusion_loss_two_call_forms_agree_and_report_terms():
    a, b = _pair()
    loss = FusionLoss("mri-pet")
    fused = 0.5 * (a + b)
    assert float(loss(fused, a, b)) == pytest.approx(float(loss(fused, torch.cat([a, b], 1))))
    assert set(loss.last_terms) == {k for k, w in TASK_WEIGHTS["mri-pet"].items() if w}


def test_fusion_loss_is_differentiable_and_3d():
    a = torch.rand(1, 1, 12, 16, 16)
    b = torch.rand(1, 1, 12, 16, 16)
    fused = (0.5 * (a + b)).requires_grad_(True)
    FusionLoss("ct-mri", spatial_dims=3, weights={"structure": 0.0})(fused, a, b).backward()
    assert torch.isfinite(fused.grad).all()


@pytest.mark.parametrize("args, kwargs, message", [
    (("pet-ct",), {}, "unknown task"),
    (("ct-mri",), {"weights": {"colour": 1.0}}, "unknown loss term"),
])
def test_fusion_loss_bad_configuration(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FusionLoss(*args, **kwargs)


def test_fusion_loss_shape_errors():
    loss = FusionLoss()
    with pytest.raises(ValueError, match="source pair"):
        loss(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 9, 8))
