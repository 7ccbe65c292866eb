"""The contract every rule shares: registry and ``fuse``, input checks, dtype/device, 2D/3D, real pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_fusion.errors import InputError
from monai_fusion.rules import RULES, FusionResult, fuse
from monai_fusion.rules.colour import rgb_to_ycbcr
from tests.conftest import shared_path

CONVEX = ["average", "maximum", "max_abs", "weighted", "pca"]
SMALL_OPTIONS = {"laplacian_pyramid": {"levels": 2}, "dwt": {"levels": 2}, "guided_filter": {"r1": 8}}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def small_pair(shape, dtype=torch.float32, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=generator, dtype=torch.float64)
    b = torch.rand(shape, generator=generator, dtype=torch.float64)
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def test_registry_lists_every_rule():
    assert set(RULES) == {"average", "maximum", "max_abs", "weighted", "pca", "laplacian_pyramid", "dwt", "guided_filter"}


@pytest.mark.parametrize("method", sorted(RULES))
@pytest.mark.parametrize("shape", [(1, 32, 24), (2, 16, 20, 24)], ids=["2d", "3d"])
def test_identical_inputs_return_the_input(method, shape):
    a, _ = small_pair(shape, torch.float64)
    result = fuse(a, a.clone(), method, **SMALL_OPTIONS.get(method, {}))
    assert isinstance(result, FusionResult)
    assert result.fused.shape == shape and result.weight.shape == shape
    assert torch.allclose(result.fused, a, atol=1e-12)
    assert ((result.weight >= 0) & (result.weight <= 1)).all()


@pytest.mark.parametrize("method", sorted(RULES))
def test_constant_images_give_their_mean_without_nan(method):
    a, b = torch.full((1, 32, 32), 0.2), torch.full((1, 32, 32), 0.6)
    fused, weight = fuse(a, b, method, **SMALL_OPTIONS.get(method, {}))
    assert torch.isfinite(fused).all() and torch.isfinite(weight).all()
    if method in ("maximum", "max_abs"):
        assert torch.allclose(fused, b)
    elif method == "pca":  # no variance in either source: no principal direction, equal weights
        assert torch.allclose(fused, torch.full_like(a, 0.4))
    elif method != "weighted":  # energy weighting favours the brighter constant by design
        assert torch.allclose(fused, torch.full_like(a, 0.4), atol=1e-6)


@pytest.mark.parametrize("method", sorted(RULES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_follow_the_input(method, dtype, device):
    a, b = small_pair((1, 32, 32), dtype, device)
    fused, weight = fuse(a, b, method, **SMALL_OPTIONS.get(method, {}))
    assert fused.dtype == dtype and weight.dtype == dtype
    assert fused.device.type == device and weight.device.type == device


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
@pytest.mark.parametrize("method", ["average", "laplacian_pyramid", "dwt"])
def test_numpy_torch_and_metatensor_inputs_give_the_same_plain_tensor(kind, method):
    a, b = small_pair((1, 32, 32))
    convert = {"numpy": lambda t: t.numpy(), "torch": lambda t: t, "metatensor": MetaTensor}[kind]
    reference = fuse(a, b, method, **SMALL_OPTIONS.get(method, {})).fused
    fused = fuse(convert(a), convert(b), method, **SMALL_OPTIONS.get(method, {})).fused
    assert type(fused) is torch.Tensor
    assert torch.equal(fused, reference)


def test_integer_inputs_are_fused_as_float32():
    a = np.full((1, 16, 16), 10, np.uint8)
    b = np.full((1, 16, 16), 20, np.uint8)
    fused = fuse(a, b, "average").fused
    assert fused.dtype == torch.float32 and fused.unique().tolist() == [15.0]


@pytest.mark.parametrize("a_shape, b_shape, message", [
    ((1, 16, 16), (1, 16, 15), "differ in shape"),
    ((16, 16), (16, 16), "add a channel dimension"),
    ((1, 2, 3, 4, 5), (1, 2, 3, 4, 5), "expected channel-first"),
])
def test_bad_shapes_are_user_errors(a_shape, b_shape, message):
    with pytest.raises(InputError, match=message):
        fuse(torch.rand(a_shape), torch.rand(b_shape), "average")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_refused(bad):
    a = torch.rand(1, 16, 16)
    a[0, 3, 3] = bad
    with pytest.raises(InputError, match="NaN or Inf"):
        fuse(torch.rand(1, 16, 16), a, "laplacian_pyramid", levels=1)


def test_unknown_method_and_option_are_user_errors_naming_the_choices():
    with pytest.raises(InputError, match="choose one of: average"):
        fuse(torch.rand(1, 8, 8), torch.rand(1, 8, 8), "median")
    with pytest.raises(InputError, match="takes levels"):
        fuse(torch.rand(1, 8, 8), torch.rand(1, 8, 8), "laplacian_pyramid", level=2)


@pytest.mark.parametrize("method, levels, allowed", [("laplacian_pyramid", 5, "levels <= 4"), ("dwt", 6, "levels <= 5")])
def test_too_deep_a_decomposition_says_how_deep_is_possible(method, levels, allowed):
    with pytest.raises(InputError, match=allowed):
        fuse(torch.rand(1, 64, 70), torch.rand(1, 64, 70), method, levels=levels)


def read_harvard_pair(task: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(MRI, other) as (1, 256, 256) float32 on 0..1; colour PET/SPECT reduced to their luma."""
    mri_folder, other_folder = {"ct-mri": ("mri", "ct"), "pet-mri": ("mri", "pet"), "spect-mri": ("mri", "spect")}[task]
    mri = np.asarray(Image.open(shared_path("harvard", task, mri_folder, name)).convert("L"), np.float32) / 255
    other = np.asarray(Image.open(shared_path("harvard", task, other_folder, name)), np.float32) / 255
    other_t = torch.from_numpy(other)
    other_t = rgb_to_ycbcr(other_t.permute(2, 0, 1))[:1] if other_t.ndim == 3 else other_t[None]
    return torch.from_numpy(mri)[None], other_t


def gradient_energy(image: torch.Tensor) -> float:
    dy, dx = torch.diff(image, dim=1), torch.diff(image, dim=2)
    return float((dy**2).sum() + (dx**2).sum())


@pytest.mark.parametrize("task, name", [("ct-mri", "20010.png"), ("pet-mri", "25034.png"), ("spect-mri", "10026.png")])
def test_real_harvard_pair(task, name):
    mri, other = read_harvard_pair(task, name)
    low, high = torch.minimum(mri, other), torch.maximum(mri, other)
    for method in CONVEX:
        fused = fuse(mri, other, method).fused
        assert ((fused >= low - 1e-6) & (fused <= high + 1e-6)).all(), method
    average_energy = gradient_energy(fuse(mri, other, "average").fused)
    for method in ("laplacian_pyramid", "dwt", "guided_filter"):
        fused, weight = fuse(mri, other, method)
        assert torch.isfinite(fused).all()
        assert gradient_energy(fused) > 1.2 * average_energy, method
    # the weight map is informative: A's details are taken in part of the image, B's in another
    weight = fuse(mri, other, "laplacian_pyramid").weight
    assert (weight == 1).float().mean() > 0.05 and (weight == 0).float().mean() > 0.05
