"""RGB <-> YCbCr (BT.601 full range) and the colour fusion of a grey image with a pseudo-colour one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_fusion.errors import InputError
from monai_fusion.rules import fuse, rgb_to_ycbcr, ycbcr_to_rgb
from monai_fusion.transforms import (
    FuseColour,
    FuseColourd,
    FuseColourD,
    FuseColourDict,
    RGBToYCbCr,
    RGBToYCbCrd,
    RGBToYCbCrD,
    YCbCrToRGB,
    YCbCrToRGBd,
    YCbCrToRGBDict,
)
from tests.conftest import shared_path

KINDS = ["numpy", "torch", "metatensor"]


def as_kind(array, kind: str):
    if kind == "numpy":
        return np.asarray(array)
    tensor = torch.as_tensor(np.asarray(array))
    if kind == "torch":
        return tensor
    return MetaTensor(tensor, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64)))


def random_rgb(shape=(3, 17, 19), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize("rgb, ycbcr", [
    ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5)),
    ((1.0, 1.0, 1.0), (1.0, 0.5, 0.5)),
    ((1.0, 0.0, 0.0), (0.299, 0.5 - 0.299 / 1.772, 1.0)),
    ((0.0, 0.0, 1.0), (0.114, 1.0, 0.5 - 0.114 / 1.402)),
])
def test_known_colours(rgb, ycbcr):
    result = rgb_to_ycbcr(torch.tensor(rgb, dtype=torch.float64).view(3, 1, 1))
    assert result.flatten().tolist() == pytest.approx(ycbcr, abs=1e-12)


def test_byte_scale_uses_offset_128_and_agrees_with_pillow_jpeg_conversion():
    rgb = random_rgb((3, 32, 32), np.uint8)
    ours = rgb_to_ycbcr(rgb)  # uint8: 0..255 scale, chroma offset 128
    assert ours.dtype == torch.float32
    assert rgb_to_ycbcr(np.zeros((3, 1, 1), np.uint8)).flatten().tolist() == [0.0, 128.0, 128.0]
    pillow = np.asarray(Image.fromarray(np.moveaxis(rgb, 0, -1)).convert("YCbCr"), np.float32)
    assert np.abs(ours.numpy() - np.moveaxis(pillow, -1, 0)).max() <= 1.01  # Pillow rounds in fixed point


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("shape", [(3, 17, 19), (3, 5, 6, 7)], ids=["2d", "3d"])
def test_round_trip_is_exact(kind, dtype, atol, shape):
    rgb = random_rgb(shape, dtype)
    back = YCbCrToRGB()(RGBToYCbCr()(as_kind(rgb, kind)))
    assert type(back) is type(as_kind(rgb, kind)) and back.dtype in (dtype, torch.from_numpy(rgb).dtype)
    np.testing.assert_allclose(np.asarray(back), rgb, atol=atol, rtol=0)


def test_uint8_round_trip_is_exact_after_rounding():
    rgb = random_rgb((3, 64, 64), np.uint8)
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb), max_value=255)
    assert back.dtype == torch.float32 and (back.round().to(torch.uint8).numpy() == rgb).all()
    assert (back - torch.from_numpy(rgb)).abs().max() < 1e-3


def test_float_data_on_the_byte_scale_needs_max_value_255():
    rgb = random_rgb((3, 8, 8), np.uint8)
    as_float = torch.from_numpy(rgb).float()  # what LoadImage gives
    assert torch.allclose(RGBToYCbCr(max_value=255)(as_float), rgb_to_ycbcr(rgb))
    with pytest.raises(InputError, match="max_value must be 1"):
        RGBToYCbCr(max_value=100)


def test_conversion_checks_channels():
    with pytest.raises(InputError, match="3 channels first"):
        rgb_to_ycbcr(torch.rand(1, 8, 8))
    with pytest.raises(InputError, match="3 channels first"):
        rgb_to_ycbcr(torch.rand(8, 8, 3))


def test_dict_conversions_metadata_and_missing_keys():
    rgb = as_kind(random_rgb((3, 8, 8), np.float32), "metatensor")
    data = RGBToYCbCrD(keys=["pet", "spect"], allow_missing_keys=True)({"pet": rgb})
    assert isinstance(data["pet"], MetaTensor) and torch.equal(data["pet"].affine, rgb.affine) and "spect" not in data
    back = YCbCrToRGBDict(keys="pet", clip=True)(data)["pet"]
    assert torch.allclose(back, rgb, atol=1e-6)
    with pytest.raises(KeyError):
        RGBToYCbCrd(keys=["pet", "spect"])({"pet": rgb})
    assert YCbCrToRGBd(keys="x", max_value=255)({"x": np.full((3, 1, 1), 128.0)})["x"].tolist() == [[[128.0]]] * 3


@pytest.mark.parametrize("method", ["average", "laplacian_pyramid", "dwt"])
@pytest.mark.parametrize("shape", [(64, 64), (16, 16, 20)], ids=["2d", "3d"])
def test_fusing_a_grey_colour_image_equals_grey_fusion(method, shape):
    rng = np.random.default_rng(1)
    grey, other = rng.random((1, *shape)).astype(np.float64), rng.random((1, *shape)).astype(np.float64)
    colour = np.repeat(other, 3, axis=0)  # R = G = B: no chroma
    options = {} if method == "average" else {"levels": 2}
    rgb, luma = FuseColour(method, return_luma=True, **options)(grey, colour)
    expected = fuse(grey, other, method, **options).fused.clamp(0, 1).numpy()
    np.testing.assert_allclose(luma, expected, atol=1e-12)
    np.testing.assert_allclose(rgb, np.repeat(expected, 3, axis=0), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_uint8_in_uint8_out_and_float_in_float_out(kind):
    grey = random_rgb((1, 32, 32), np.uint8, seed=2)
    colour = random_rgb((3, 32, 32), np.uint8, seed=3)
    fused = FuseColour("average")(as_kind(grey, kind), as_kind(colour, kind))
    assert fused.dtype in (np.uint8, torch.uint8) and tuple(fused.shape) == (3, 32, 32)
    fused = FuseColour("average")(as_kind(grey / 255.0, kind), as_kind(colour / 255.0, kind))
    assert fused.dtype in (np.float64, torch.float64)
    assert float(fused.min()) >= 0 and float(fused.max()) <= 1


def test_float_inputs_on_the_byte_scale_are_recognised():
    grey = random_rgb((1, 32, 32), np.uint8, seed=2)
    colour = random_rgb((3, 32, 32), np.uint8, seed=3)
    as_bytes = FuseColour("maximum")(grey, colour)
    as_floats = FuseColour("maximum")(grey.astype(np.float32), colour.astype(np.float32))
    assert as_floats.max() > 1 and np.abs(as_floats - as_bytes).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("grey, colour, message", [
    (np.zeros((1, 8, 8), np.uint8), np.zeros((3, 8, 8), np.float32), "both be uint8"),
    (np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32), "grey image must be"),
    (np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.float32), "must be RGB"),
    (np.zeros((1, 8, 8), np.float32), np.zeros((3, 8, 9), np.float32), "must be RGB"),
    (np.full((1, 8, 8), 300.0), np.zeros((3, 8, 8)), "0..1 or 0..255"),
])
def test_colour_fusion_input_errors(grey, colour, message):
    with pytest.raises(InputError, match=message):
        FuseColour("average")(grey, colour)


def test_dict_colour_fusion_keys_metadata_and_aliases():
    assert FuseColourD is FuseColourd and FuseColourDict is FuseColourd
    grey = as_kind(random_rgb((1, 32, 32), np.float32, seed=4), "metatensor")
    colour = as_kind(random_rgb((3, 32, 32), np.float32, seed=5), "metatensor")
    out = FuseColourd(keys=("mri", "pet"), method="laplacian_pyramid", output_key="rgb", luma_key="y", levels=2)(
        {"mri": grey, "pet": colour})
    assert out["rgb"].shape == (3, 32, 32) and out["y"].shape == (1, 32, 32)
    assert torch.equal(out["rgb"].affine, grey.affine)
    assert out["rgb"].meta["fusion"]["sources"] == ["mri", "pet"]
    assert out["rgb"].meta["fusion"]["colour_space"].startswith("YCbCr, ITU-R BT.601")
    assert set(FuseColourd(keys=("mri", "pet"), allow_missing_keys=True)({"mri": grey})) == {"mri"}


@pytest.mark.parametrize("task, folder, name", [("pet-mri", "pet", "25034.png"), ("spect-mri", "spect", "10026.png")])
def test_real_colour_fusion_keeps_the_functional_chroma(task, folder, name):
    mri = np.array(Image.open(shared_path("harvard", task, "mri", name)).convert("L"))[None]
    functional = np.moveaxis(np.asarray(Image.open(shared_path("harvard", task, folder, name)).convert("RGB")), -1, 0)
    rgb, luma = FuseColour("laplacian_pyramid", return_luma=True)(mri, functional)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 256, 256)
    ycbcr = rgb_to_ycbcr(functional)
    chroma_in, chroma_out = ycbcr[1:] - 128, rgb_to_ycbcr(rgb)[1:] - 128
    # where the fused colour is representable (no clipping) the chroma is kept up to uint8 rounding
    unclipped = ycbcr_to_rgb(torch.cat([fuse(mri, ycbcr[:1]).fused, ycbcr[1:]]), max_value=255)
    representable = ((unclipped >= 0) & (unclipped <= 255)).all(dim=0)
    assert (chroma_out - chroma_in).abs()[:, representable].max() <= 0.51
    # elsewhere clipping (saturated colours made brighter) may shift it a little, but the hue stays
    coloured = chroma_in.abs().amax(dim=0) > 8
    cosine = (chroma_in * chroma_out).sum(0) / (chroma_in.norm(dim=0) * chroma_out.norm(dim=0)).clamp(min=1e-9)
    assert cosine[coloured].mean() > 0.97
    relative_change = (chroma_out - chroma_in).norm(dim=0)[coloured].mean() / chroma_in.norm(dim=0)[coloured].mean()
    assert relative_change < 0.15
    # the anatomy is in the fused luma: it correlates with the MRI better than the functional luma does
    mri_t = torch.from_numpy(mri).float().flatten()
    correlation = lambda x: torch.corrcoef(torch.stack([mri_t, torch.as_tensor(x).float().flatten()]))[0, 1]  # noqa: E731
    assert correlation(luma) > correlation(ycbcr[:1]) + 0.1
