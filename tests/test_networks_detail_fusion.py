"""DetailFusionNet (the flagship) and IFCNNStyleNet: shapes, 2D/3D, the max-rule start, weight map,
TorchScript, determinism."""

import pytest
import torch

from monai_fusion.networks import DetailFusionNet, IFCNNStyleNet


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 2, 37, 50)), (3, (1, 2, 12, 17, 20))])
def test_detail_fusion_shapes_any_size(spatial_dims, shape):
    net = DetailFusionNet(spatial_dims=spatial_dims)
    with torch.no_grad():
        fused, weight, residual = net.components(torch.rand(shape))
    expected = (shape[0], 1, *shape[2:])
    assert tuple(fused.shape) == tuple(weight.shape) == tuple(residual.shape) == expected
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0
    assert float(weight.min()) >= 0.0 and float(weight.max()) <= 1.0


def test_untrained_network_is_the_maximum_rule():
    torch.manual_seed(0)
    image = torch.rand(2, 2, 48, 48)
    fused, weight, residual = DetailFusionNet(selection_gain=200.0).components(image)
    assert torch.count_nonzero(residual) == 0
    a, b = image[:, :1], image[:, 1:]
    clear = (a - b).abs() > 0.1  # where the sources differ clearly, the weight is a decision
    assert torch.equal(weight[clear] > 0.5, (a > b)[clear])
    assert torch.allclose(fused[clear], torch.maximum(a, b)[clear], atol=1e-2)


def test_weight_map_is_the_contribution_of_a():
    net = DetailFusionNet(selection_gain=5.0)
    image = torch.rand(1, 2, 32, 32)
    fused, weight, residual = net.components(image)
    expected = weight * image[:, :1] + (1 - weight) * image[:, 1:] + residual
    assert torch.allclose(fused, expected.clamp(0, 1))


def test_torchscript_matches_eager():
    torch.manual_seed(1)
    net = DetailFusionNet().eval()
    for p in net.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    scripted = torch.jit.script(net)
    image = torch.rand(1, 2, 40, 40)
    assert torch.allclose(scripted(image), net(image), atol=1e-6)


def test_seeded_construction_is_deterministic():
    torch.manual_seed(3)
    first = DetailFusionNet().state_dict()
    torch.manual_seed(3)
    second = DetailFusionNet().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("kwargs, message", [({"spatial_dims": 1}, "spatial_dims"), ({"channels": (8, 16)}, "three widths")])
def test_detail_fusion_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetailFusionNet(**kwargs)


@pytest.mark.parametrize("fusion", ["max", "mean", "sum"])
def test_ifcnn_style_fusions(fusion):
    net = IFCNNStyleNet(fusion=fusion)
    out = net(torch.rand(2, 2, 24, 24))
    assert tuple(out.shape) == (2, 1, 24, 24)
    assert tuple(IFCNNStyleNet(spatial_dims=3)(torch.rand(1, 2, 8, 8, 8)).shape) == (1, 1, 8, 8, 8)


def test_ifcnn_style_swapping_sources_with_symmetric_fusion_is_invariant():
    net = IFCNNStyleNet(fusion="max")
    image = torch.rand(1, 2, 20, 20)
    assert torch.allclose(net(image), net(image.flip(1)), atol=1e-6)
    with pytest.raises(ValueError, match="fusion"):
        IFCNNStyleNet(fusion="median")
