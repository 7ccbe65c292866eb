"""Paired, information-weighted patch sampling: same region for every key, geometry, balance, slices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from monai_fusion.errors import InputError
from monai_fusion.io.reader import load_image
from monai_fusion.transforms.functional import patches as P
from monai_fusion.transforms.functional.intensity import cormack_to_hounsfield
from monai_fusion.transforms.patches import (
    InformationMap, InformationMapd, InformationMapD, RandInformativePatch, RandInformativePatchd,
    RandInformativePatchD, RandInformativePatchDict,
)
from tests.conftest import shared_path

AFFINE = torch.tensor([[0.0, 0.0, 2.0, -90.0], [0.0, -1.5, 0.0, 10.0], [1.2, 0.0, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]],
                      dtype=torch.float64)


def scene(shape, seed=0) -> np.ndarray:
    """Texture in one corner box, zeros elsewhere: most of the image is background."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    box = (slice(None), *(slice(2, max(3, n // 3)) for n in shape[1:]))
    image[box] = rng.random(image[box].shape).astype(np.float32) + 0.5
    return image


def pair(kind, shape, seed=0):
    a = scene(shape, seed)
    b = 2 * a + 1  # the known relation every patch must keep
    if kind == "numpy":
        return {"a": a, "b": b}
    if kind == "torch":
        return {"a": torch.from_numpy(a), "b": torch.from_numpy(b)}
    return {"a": MetaTensor(torch.from_numpy(a), affine=AFFINE.clone()), "b": MetaTensor(torch.from_numpy(b), affine=AFFINE.clone())}


def patch_start(patch: MetaTensor, original_affine=AFFINE) -> np.ndarray:
    """The voxel index of the patch's first voxel in the original image, from the affines."""
    return np.round(np.linalg.solve(original_affine.numpy(), patch.affine.numpy())[:3, 3]).astype(int)


# ----------------------------------------------------------------------------------------------- functional


def test_information_maps_are_high_where_the_content_is():
    image = torch.from_numpy(scene((1, 40, 40)))
    for method in ("entropy", "gradient", "foreground"):
        weights = P.information_map([image], method)
        assert weights.shape == (40, 40) and float(weights.max()) == pytest.approx(1.0)
        assert float(weights[30:, 30:].max()) == 0.0 and float(weights[5:10, 5:10].mean()) > 0.0
    assert float(P.local_entropy(torch.ones(1, 16, 16)).abs().max()) == 0.0
    assert torch.equal(P.information_map([image], "uniform"), torch.ones(40, 40))
    with pytest.raises(InputError, match="unknown information weighting"):
        P.information_map([image], "variance")
    with pytest.raises(InputError, match="one grid"):
        P.information_map([image, torch.ones(1, 20, 40)], "entropy")


def test_class_balanced_weights_give_each_class_its_ratio():
    labels = torch.zeros(30, 30, dtype=torch.long)
    labels[10:13, 10:13] = 1
    labels[20:28, 4:25] = 2
    weights = torch.rand(30, 30)
    balanced = P.class_balanced_weights(labels, weights, (5, 5), ratios=[1, 2, 1])
    total = float(balanced.sum())
    for label, share in ((0, 0.25), (1, 0.5), (2, 0.25)):
        assert float(balanced[labels == label].sum()) / total == pytest.approx(share, abs=1e-5)
    outside = torch.ones(30, 30, dtype=torch.bool)
    outside[P.valid_centre_slices((30, 30), (5, 5))] = False
    assert float(balanced[outside].abs().max()) == 0.0  # only drawable centres weigh
    with pytest.raises(InputError, match="positive ratio"):
        P.class_balanced_weights(labels, weights, (5, 5), ratios={7: 1.0})


def test_squeeze_slice_keeps_the_3d_position_of_every_pixel():
    patch = torch.arange(12.0).reshape(1, 3, 1, 4)
    squeezed, affine = P.squeeze_slice(patch, AFFINE, axis=1)
    assert squeezed.shape == (1, 3, 4)
    for i, j in ((0, 0), (2, 3), (1, 2)):
        np.testing.assert_allclose(affine @ torch.tensor([i, j, 0, 1.0], dtype=torch.float64),
                                   AFFINE @ torch.tensor([i, 0, j, 1.0], dtype=torch.float64))
    with pytest.raises(InputError, match="one voxel thick"):
        P.squeeze_slice(torch.zeros(1, 3, 2, 4), AFFINE, axis=1)


# ----------------------------------------------------------------------------------------------- paired patches


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
@pytest.mark.parametrize("shape, size", [((1, 48, 40), (16, 12)), ((1, 30, 28, 24), (10, 8, 6))], ids=["2d", "3d"])
def test_every_key_gets_the_same_region(kind, shape, size):
    data = pair(kind, shape)
    samples = RandInformativePatchd(("a", "b"), spatial_size=size, num_samples=5).set_random_state(3)(data)
    assert len(samples) == 5
    for sample in samples:
        a, b = sample["a"], sample["b"]
        assert tuple(a.shape[1:]) == size and a.dtype == torch.float32
        torch.testing.assert_close(torch.as_tensor(b), 2 * torch.as_tensor(a) + 1)
        assert float(torch.as_tensor(a).abs().max()) > 0  # never pure background
        if kind == "metatensor":
            start = patch_start(a)
            region = tuple(slice(s, s + n) for s, n in zip(start, size))
            np.testing.assert_array_equal(a.numpy(), data["a"].numpy()[(slice(None), *region)])
            assert torch.equal(a.affine, b.affine)


def test_sampling_prefers_information_and_is_reproducible_with_a_seed():
    data = pair("metatensor", (1, 64, 64))
    sampler = RandInformativePatchd(("a", "b"), spatial_size=(8, 8), num_samples=40, weighting="gradient")
    first = [patch_start(s["a"]) for s in sampler.set_random_state(7)(data)]
    again = [patch_start(s["a"]) for s in sampler.set_random_state(7)(data)]
    assert np.array_equal(first, again)
    assert max(int(s.max()) for s in first) < 64 // 3 + 2  # every patch overlaps the textured corner
    uniform = RandInformativePatchd(("a", "b"), spatial_size=(8, 8), num_samples=40, weighting="uniform")
    assert max(int(s.max()) for s in (patch_start(x["a"]) for x in uniform.set_random_state(7)(data))) > 30


def test_a_precomputed_information_map_gives_the_same_draw():
    data = pair("metatensor", (1, 40, 36, 20))
    cached = InformationMapd(("a", "b"), output_key="info", method="gradient")(data)
    inline = RandInformativePatchd(("a", "b"), (8, 8, 8), num_samples=6, weighting="gradient").set_random_state(2)(data)
    from_map = RandInformativePatchd(("a", "b"), (8, 8, 8), num_samples=6, information_key="info").set_random_state(2)(cached)
    assert [patch_start(s["a"]).tolist() for s in inline] == [patch_start(s["a"]).tolist() for s in from_map]
    with pytest.raises(InputError, match="information map"):
        RandInformativePatchd(("a", "b"), (8, 8, 8), information_key="info")({**data, "info": torch.ones(1, 4, 4, 4)})


def test_label_map_makes_the_draw_class_balanced_and_is_cropped_with_the_images():
    image = np.random.default_rng(0).random((1, 60, 60)).astype(np.float32)
    label = np.zeros((1, 60, 60), np.float32)
    label[:, 40:44, 40:44] = 1  # 16 of 3600 pixels
    sampler = RandInformativePatchd(("image", "label"), spatial_size=(9, 9), num_samples=400, label_key="label",
                                    weighting="uniform").set_random_state(0)
    centres = [s["label"][0, 4, 4] for s in sampler({"image": image, "label": label})]
    assert np.mean(centres) == pytest.approx(0.5, abs=0.08)  # without balance it would be 0.004


def test_2d_slices_of_3d_volumes_carry_their_world_geometry():
    volume = pair("metatensor", (1, 20, 18, 16))
    for axis in (0, 1, 2):
        size = (8, 6)
        samples = RandInformativePatchd(("a", "b"), spatial_size=size, num_samples=3, slice_axis=axis,
                                        weighting="foreground").set_random_state(axis)(volume)
        for sample in samples:
            a, b = sample["a"], sample["b"]
            assert a.shape == (1, *size) and b.shape == (1, *size) and a.affine.shape == (4, 4)
            torch.testing.assert_close(b.as_tensor(), 2 * a.as_tensor() + 1)
            assert a.meta["slice_axis"] == axis and a.applied_operations == []
            for i, j in ((0, 0), (size[0] - 1, size[1] - 1), (3, 2)):
                world = (a.affine @ torch.tensor([i, j, 0, 1.0], dtype=torch.float64))
                voxel = np.round(np.linalg.solve(AFFINE.numpy(), world.numpy())[:3]).astype(int)
                assert voxel[axis] == a.meta["slice_index"]
                assert float(volume["a"][(0, *voxel)]) == pytest.approx(float(a[0, i, j]))


def test_3d_patches_invert_and_run_lazily():
    data = pair("metatensor", (1, 24, 20, 16))
    sampler = RandInformativePatchd(("a", "b"), spatial_size=(8, 8, 8), num_samples=2)
    sample = sampler.set_random_state(1)(data)[0]
    restored = Invertd(("a", "b"), transform=sampler)(sample)
    assert restored["a"].shape == data["a"].shape and torch.equal(restored["a"].affine, AFFINE)
    inside = restored["a"].as_tensor() != 0
    torch.testing.assert_close(restored["a"].as_tensor()[inside], data["a"].as_tensor()[inside])
    lazy = Compose([RandInformativePatchd(("a", "b"), spatial_size=(8, 8, 8), num_samples=2).set_random_state(1)],
                   lazy=True)
    for lazy_sample in lazy(data):  # MONAI's lazy crop draws its centres differently; check geometry and pairing
        a, b = lazy_sample["a"], lazy_sample["b"]
        start = patch_start(a)
        np.testing.assert_array_equal(a.numpy(), data["a"].numpy()[:, start[0]:start[0] + 8, start[1]:start[1] + 8,
                                                                   start[2]:start[2] + 8])
        torch.testing.assert_close(b.as_tensor(), 2 * a.as_tensor() + 1)


def test_array_version_and_information_map_transforms():
    image = MetaTensor(torch.from_numpy(scene((2, 32, 32))), affine=AFFINE.clone())
    patches = RandInformativePatch((8, 8), num_samples=3).set_random_state(0)(image)
    assert len(patches) == 3 and all(p.shape == (2, 8, 8) for p in patches)
    label = torch.zeros(1, 32, 32)
    label[:, 20:24, 20:24] = 1
    balanced = RandInformativePatch((5, 5), num_samples=50, weighting="uniform").set_random_state(0)(image, label=label)
    assert len(balanced) == 50
    weights = InformationMap("entropy", window=5)(image)
    assert isinstance(weights, MetaTensor) and weights.shape == (1, 32, 32) and torch.equal(weights.affine, AFFINE)
    joint = InformationMapd(("a", "b"), output_key="w", method="gradient", sigma=2.0)(pair("numpy", (1, 32, 32)))
    assert joint["w"].shape == (1, 32, 32)
    assert InformationMapD is InformationMapd and RandInformativePatchD is RandInformativePatchDict is RandInformativePatchd
    with pytest.raises(InputError, match="does not take"):
        InformationMap("foreground", window=3)


def test_bad_input_is_refused_with_a_clear_message():
    data = pair("numpy", (1, 32, 32))
    with pytest.raises(KeyError):
        RandInformativePatchd(("a", "c"), spatial_size=(8, 8))(data)
    samples = RandInformativePatchd(("a", "c"), spatial_size=(8, 8), num_samples=2, allow_missing_keys=True)(data)
    assert len(samples) == 2 and "c" not in samples[0] and samples[0]["a"].shape == (1, 8, 8)
    with pytest.raises(InputError, match="one grid"):
        RandInformativePatchd(("a", "b"), spatial_size=(8, 8))({"a": data["a"], "b": data["b"][:, :20]})
    with pytest.raises(InputError, match="larger than the image"):
        RandInformativePatchd(("a", "b"), spatial_size=(40, 8))(data)
    with pytest.raises(InputError, match="needs 3D volumes"):
        RandInformativePatchd(("a", "b"), spatial_size=(8, 8), slice_axis=2)(data)
    with pytest.raises(InputError, match="slice_axis must be"):
        RandInformativePatchd(("a", "b"), spatial_size=(8, 8), slice_axis=3)
    with pytest.raises(InputError, match="cannot be lazy"):
        RandInformativePatchd(("a", "b"), spatial_size=(8, 8), slice_axis=0, lazy=True)
    with pytest.raises(InputError, match="unknown information weighting"):
        RandInformativePatchd(("a", "b"), spatial_size=(8, 8), weighting="variance")
    with pytest.raises(InputError, match="empty"):
        RandInformativePatchd("a", spatial_size=(8, 8))({"a": np.zeros((1, 0, 8), np.float32)})
    constant = RandInformativePatchd(("a",), spatial_size=(8, 8), num_samples=3)({"a": np.ones((1, 16, 16), np.float32)})
    assert all(s["a"].shape == (1, 8, 8) for s in constant)  # no information anywhere: uniform draw, no NaN


# ----------------------------------------------------------------------------------------------- real data


def test_real_harvard_pair_and_template_volumes_give_paired_patches():
    mri = load_image(shared_path("harvard", "ct-mri", "mri", "2012.png"), modality="MR")
    ct = load_image(shared_path("harvard", "ct-mri", "ct", "2012.png"), modality="CT")
    samples = RandInformativePatchd(("mri", "ct"), spatial_size=(64, 64), num_samples=4).set_random_state(0)(
        {"mri": mri, "ct": ct})
    for sample in samples:
        start = patch_start(sample["mri"], mri.affine)
        region = (slice(None), slice(start[0], start[0] + 64), slice(start[1], start[1] + 64))
        assert torch.equal(sample["ct"].as_tensor(), ct.as_tensor()[region])
        assert float((sample["mri"] > 10).float().mean()) > 0.2  # mostly head, not air

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1 = load_image(shared_path("templates", "T1.nii"), modality="MR")
        template_ct = cormack_to_hounsfield(load_image(shared_path("templates", "CT.nii"), modality="CT"))
    slices = RandInformativePatchd(("t1", "ct"), spatial_size=(48, 48), num_samples=3, slice_axis=2).set_random_state(1)(
        {"t1": t1, "ct": template_ct})
    for sample in slices:
        k = sample["t1"].meta["slice_index"]
        world = sample["ct"].affine @ torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)
        voxel = np.round(np.linalg.solve(t1.affine.numpy(), world.numpy())[:3]).astype(int)
        assert voxel[2] == k
        np.testing.assert_array_equal(sample["ct"].numpy(), template_ct.numpy()[:, voxel[0]:voxel[0] + 48,
                                                                                voxel[1]:voxel[1] + 48, k])
