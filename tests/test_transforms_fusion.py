"""FuseImages / FuseImagesd: types, geometry and metadata around the fusion rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from PIL import Image

from monai_fusion.errors import InputError
from monai_fusion.rules import fuse
from monai_fusion.rules.filters import laplacian
from monai_fusion.transforms import FuseImages, FuseImagesd, FuseImagesD, FuseImagesDict
from tests.conftest import shared_path

AFFINE = torch.tensor([[0.0, 0.0, 2.0, -90.0], [0.0, 1.5, 0.0, 10.0], [-1.2, 0.0, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]],
                      dtype=torch.float64)


def make(kind: str, array: np.ndarray, affine=AFFINE, **meta):
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.from_numpy(array)
    return MetaTensor(torch.from_numpy(array), affine=affine.clone(), meta={"modality": "MR", **meta})


def pair(shape=(1, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 16, 16, 20)], ids=["2d", "3d"])
def test_output_has_the_type_of_a_and_the_rule_s_values(kind, shape):
    a, b = pair(shape)
    fused = FuseImages("laplacian_pyramid", levels=2)(make(kind, a), make(kind, b))
    expected_type = {"numpy": np.ndarray, "torch": torch.Tensor, "metatensor": MetaTensor}[kind]
    assert type(fused) is expected_type
    assert fused.shape == shape and fused.dtype in (np.float32, torch.float32)
    np.testing.assert_allclose(np.asarray(fused), fuse(a, b, "laplacian_pyramid", levels=2).fused.numpy(), atol=1e-7)


def test_metatensor_output_carries_a_s_geometry_and_metadata():
    a, b = pair((1, 16, 16, 20))
    source_a = make("metatensor", a, filename_or_obj="mr.nii.gz")
    source_b = make("metatensor", b, modality="PT", filename_or_obj="pet.nii.gz")
    fused, weight = FuseImages("dwt", return_weight=True, levels=2)(source_a, source_b)
    for image in (fused, weight):
        assert isinstance(image, MetaTensor)
        assert torch.equal(image.affine, source_a.affine)
        assert image.meta["filename_or_obj"] == "mr.nii.gz" and image.meta["modality"] == "MR"
    assert fused.meta["fusion"] == {"method": "dwt", "options": {"levels": 2}}
    assert weight.meta["fusion"]["content"] == "weight of source A"
    assert "fusion" not in source_a.meta  # A itself is left alone


def test_weight_is_returned_on_request():
    a, b = pair()
    fused, weight = FuseImages("maximum", return_weight=True)(torch.from_numpy(a), torch.from_numpy(b))
    assert torch.equal(weight, (torch.from_numpy(a) > torch.from_numpy(b)).float())
    assert torch.equal(fused, torch.maximum(torch.from_numpy(a), torch.from_numpy(b)))


def test_images_on_different_grids_are_refused():
    a, b = pair()
    shifted = AFFINE.clone()
    shifted[0, 3] += 1e-3
    with pytest.raises(InputError, match="different grids.*resample"):
        FuseImages("average")(make("metatensor", a), make("metatensor", b, affine=shifted))
    shifted[0, 3] = AFFINE[0, 3] + 5e-5  # within tolerance: rounding in a header, not a different grid
    FuseImages("average")(make("metatensor", a), make("metatensor", b, affine=shifted))


def test_bad_options_fail_when_the_transform_is_built():
    with pytest.raises(InputError, match="unknown fusion method"):
        FuseImages("median")
    with pytest.raises(InputError, match="does not take"):
        FuseImages("average", levels=3)
    with pytest.raises(InputError, match="exactly two keys"):
        FuseImagesd(keys=("a", "b", "c"))


def test_dict_transform_records_sources_and_keeps_the_inputs():
    a, b = pair((1, 16, 16, 20))
    data = {"mr": make("metatensor", a), "pet": make("metatensor", b), "label": 3}
    out = FuseImagesd(keys=("mr", "pet"), method="laplacian_pyramid", weight_key="w", levels=2)(data)
    assert out["mr"] is data["mr"] and out["label"] == 3 and "fused" not in data
    expected = {"method": "laplacian_pyramid", "options": {"levels": 2}, "sources": ["mr", "pet"]}
    assert out["fused"].meta["fusion"] == expected
    assert out["w"].meta["fusion"]["sources"] == ["mr", "pet"]
    assert torch.equal(out["fused"].affine, data["mr"].affine)


def test_dict_transform_output_key_and_aliases():
    assert FuseImagesD is FuseImagesd and FuseImagesDict is FuseImagesd
    a, b = pair()
    out = FuseImagesD(keys=["x", "y"], method="average", output_key="avg")({"x": a, "y": b})
    assert isinstance(out["avg"], np.ndarray) and set(out) == {"x", "y", "avg"}


def test_dict_transform_missing_keys():
    a, _ = pair()
    with pytest.raises(KeyError):
        FuseImagesd(keys=("x", "y"), method="average")({"x": a})
    out = FuseImagesd(keys=("x", "y"), method="average", allow_missing_keys=True)({"x": a})
    assert set(out) == {"x"}


def test_real_ct_mri_pair_in_a_compose():
    ct = np.asarray(Image.open(shared_path("harvard", "ct-mri", "ct", "20010.png")), np.float32)[None] / 255
    mri = np.asarray(Image.open(shared_path("harvard", "ct-mri", "mri", "20010.png")), np.float32)[None] / 255
    chain = Compose([FuseImagesd(keys=("mri", "ct"), method="laplacian_pyramid", weight_key="weight"),
                     FuseImagesd(keys=("mri", "ct"), method="average", output_key="average")])
    out = chain({"mri": make("metatensor", mri), "ct": make("metatensor", ct)})
    fused, average = out["fused"], out["average"]
    assert fused.shape == (1, 256, 256) and torch.equal(fused.affine, AFFINE)
    assert torch.diff(fused, dim=2).abs().sum() > 1.2 * torch.diff(average, dim=2).abs().sum()
    # the weight map points to the source whose fine detail is stronger (CT bone edges: B)
    detail_ct, detail_mri = laplacian(torch.from_numpy(ct)).abs(), laplacian(torch.from_numpy(mri)).abs()
    weight = out["weight"].as_tensor()
    assert weight[(detail_ct > 4 * detail_mri) & (detail_ct > 0.1)].mean() < 0.2
    assert weight[(detail_mri > 4 * detail_ct) & (detail_mri > 0.1)].mean() > 0.6
