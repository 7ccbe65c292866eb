"""fuse_with_network / axial_axis / projected_weight, the shipped weights and the pipeline's "network" method."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.networks import DetailFusionNet, IFCNNStyleNet, axial_axis, fuse_with_network, projected_weight
from monai_fusion.networks.detail_fusion import DETAIL_FUSION_TASKS, detail_fusion_weights_path, load_detail_fusion

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {"ct-mri": "ct_mri_fusion", "mri-pet": "mri_pet_fusion", "mri-spect": "mri_spect_fusion"}


def test_axial_axis_follows_the_affine():
    assert axial_axis(np.diag([1.0, 1.0, 2.5, 1.0])) == 2
    sagittal = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    assert axial_axis(sagittal) == 1


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slicewise_equals_running_each_slice(axis):
    torch.manual_seed(0)
    net = DetailFusionNet(selection_gain=5.0).eval()
    for p in net.head.parameters():
        torch.nn.init.normal_(p, std=0.05)
    a, b = torch.rand(1, 6, 7, 8), torch.rand(1, 6, 7, 8)
    fused, weight = fuse_with_network(net, a, b, axis=axis, batch_size=4)
    assert fused.shape == a.shape and weight.shape == a.shape
    k = 3
    plane = torch.stack([a[0].select(axis, k), b[0].select(axis, k)])[None]
    with torch.no_grad():
        expected = net(plane)[0, 0]
    assert torch.allclose(fused[0].select(axis, k), expected, atol=1e-6)


def test_2d_inputs_and_projected_weight_for_plain_networks():
    a, b = torch.rand(1, 16, 16), torch.rand(1, 16, 16)
    fused, weight = fuse_with_network(IFCNNStyleNet(), a, b)
    assert fused.shape == (1, 16, 16) and float(weight.min()) >= 0 and float(weight.max()) <= 1
    w = projected_weight(0.25 * a + 0.75 * b, a, b)
    clear = (a - b).abs() > 1e-2
    assert torch.allclose(w[clear], torch.full_like(w[clear], 0.25), atol=1e-4)


def test_shape_errors():
    with pytest.raises(ValueError, match="one shape"):
        fuse_with_network(DetailFusionNet(), torch.rand(1, 8, 8), torch.rand(1, 8, 9))
    with pytest.raises(ValueError, match="axis"):
        fuse_with_network(DetailFusionNet(), torch.rand(1, 4, 4, 4), torch.rand(1, 4, 4, 4), axis=3)


@pytest.mark.parametrize("task", DETAIL_FUSION_TASKS)
def test_shipped_weights_load_and_equal_the_bundle_model(task):
    path = detail_fusion_weights_path(task)
    net = load_detail_fusion(task)
    assert not net.training
    bundle_model = REPO / "bundles" / BUNDLES[task] / "models" / "model.pt"
    if bundle_model.is_file():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(bundle_model.read_bytes()).hexdigest()
    image = torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        fused, weight, residual = net.components(image)
    assert torch.count_nonzero(residual) > 0, "shipped weights must be trained, not the untrained max-rule start"


def test_unknown_task_is_a_clear_error():
    with pytest.raises(InputError, match="tasks with weights"):
        detail_fusion_weights_path("ct-pet")


def test_pipeline_network_method_runs_on_a_volume_on_its_axial_axis():
    from monai_fusion.workflows.methods import available_methods, resolve_method

    assert "network" in available_methods()
    method = resolve_method("network", "mri-pet")
    affine = torch.tensor([[0, 0, 2.0, 0], [2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])  # axial = axis 1
    a = MetaTensor(torch.rand(1, 10, 12, 14), affine=affine)
    b = MetaTensor(torch.rand(1, 10, 12, 14), affine=affine)
    result = method(a, b)
    assert result.fused.shape == (1, 10, 12, 14)
    net = load_detail_fusion("mri-pet")
    plane = torch.stack([a[0, :, 5, :].as_tensor(), b[0, :, 5, :].as_tensor()])[None]
    with torch.no_grad():
        expected = net(plane)[0, 0]
    assert torch.allclose(torch.as_tensor(result.fused)[0, :, 5, :], expected, atol=1e-5)
