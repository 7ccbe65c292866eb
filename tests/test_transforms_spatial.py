"""Paired spatial augmentation: one draw for all keys, per-key modes, geometry, lazy and Invertd."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import Compose, Invertd
from scipy.ndimage import map_coordinates

from monai_fusion.errors import InputError
from monai_fusion.io.reader import load_image
from monai_fusion.transforms.spatial import (
    RandPairedAffined, RandPairedAffineD, RandPairedElasticd, RandPairedElasticDict, RandPairedFlipd, RandPairedFlipD,
    RandPairedRotate90d, RandPairedRotate90Dict, RandPairedRotated, RandPairedRotateD, paired_modes,
)
from tests.conftest import shared_path

AFFINE = torch.tensor([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]], dtype=torch.float64)


def smooth(shape, seed=0) -> torch.Tensor:
    """A smooth random image (so interpolation differences stay small), float32, channel-first."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, 1, *(max(2, n // 4) for n in shape[1:])), generator=generator)
    mode = "bilinear" if len(shape) == 3 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape[1:], mode=mode, align_corners=True)[0]


def make_pair(shape, with_label=True):
    a = smooth(shape)
    data = {"a": MetaTensor(a, affine=AFFINE.clone()), "b": MetaTensor(2 * a + 1, affine=AFFINE.clone())}
    if with_label:
        data["seg"] = MetaTensor((a > 0.5).float() + (a > 0.8).float(), affine=AFFINE.clone())
    return data


def world_mismatch(out: MetaTensor, original: MetaTensor) -> float:
    """Largest difference between ``out`` and ``original`` resampled at the world points ``out.affine`` names.

    MONAI's spatial transforms resample the data AND update the affine so that every voxel keeps
    its anatomy's world position: a correct affine gives ~0 here (border padding = 'nearest').
    """
    dims = original.ndim - 1
    voxel_to_voxel = np.linalg.solve(to_affine_nd(dims, np.asarray(original.affine)), to_affine_nd(dims, np.asarray(out.affine)))
    grid = np.stack(np.meshgrid(*[np.arange(n // 4, 3 * n // 4) for n in out.shape[1:]], indexing="ij")).reshape(dims, -1)
    source = voxel_to_voxel[:dims, :dims] @ grid + voxel_to_voxel[:dims, dims:]
    expected = map_coordinates(original[0].numpy(), source, order=1, mode="nearest")
    return float(np.abs(out[0].numpy()[tuple(grid)] - expected).max())


TRANSFORMS = {
    "flip": lambda keys: RandPairedFlipd(keys, prob=1.0),
    "rotate90": lambda keys: RandPairedRotate90d(keys, prob=1.0),
    "rotate": lambda keys: RandPairedRotated(keys, label_keys="seg", prob=1.0, range_x=0.4, range_y=0.3, range_z=0.3),
    "affine": lambda keys: RandPairedAffined(keys, label_keys="seg", prob=1.0),
    "elastic": lambda keys: RandPairedElasticd(keys, label_keys="seg", prob=1.0),
}
SHAPES = {"2d": (1, 32, 28), "3d": (1, 20, 18, 16)}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("dims", list(SHAPES))
def test_one_draw_moves_every_key_and_keeps_the_pair_s_relation(name, dims):
    data = make_pair(SHAPES[dims])
    out = TRANSFORMS[name](("a", "b", "seg")).set_random_state(4)(data)
    a, b, seg = out["a"], out["b"], out["seg"]
    assert a.shape != data["a"].shape or not torch.allclose(a.as_tensor(), data["a"].as_tensor())  # it did move
    torch.testing.assert_close(b.as_tensor(), 2 * a.as_tensor() + 1, atol=2e-5, rtol=0)  # same motion, same values
    assert set(torch.unique(seg.as_tensor()).tolist()) <= {0.0, 1.0, 2.0}  # labels: nearest neighbour
    assert a.dtype == torch.float32 and isinstance(a, MetaTensor)
    if name != "elastic":  # elastic deformation keeps the grid; the others record their motion in the affine
        assert torch.equal(a.affine, b.affine) and torch.equal(a.affine, seg.affine)
        assert world_mismatch(a, data["a"]) < 1e-5
    again = TRANSFORMS[name](("a", "b", "seg")).set_random_state(4)(make_pair(SHAPES[dims]))
    torch.testing.assert_close(again["a"].as_tensor(), a.as_tensor())  # reproducible with a seed


def test_images_interpolate_while_labels_stay_nearest():
    data = make_pair(SHAPES["2d"])
    out = RandPairedRotated(("a", "seg"), label_keys="seg", prob=1.0, range_x=0.5).set_random_state(0)(data)
    assert len(torch.unique(out["a"].as_tensor())) > 100
    assert paired_modes(("a", "b", "seg"), "seg") == ("bilinear", "bilinear", "nearest")
    with pytest.raises(InputError, match="label_keys"):
        RandPairedAffined(("a", "b"), label_keys="seg")


def test_flip_is_left_right_and_updates_the_affine():
    data = make_pair(SHAPES["3d"], with_label=False)
    out = RandPairedFlipd(("a", "b"), prob=1.0)(data)
    torch.testing.assert_close(out["a"].as_tensor(), torch.flip(data["a"].as_tensor(), dims=[1]))
    n = SHAPES["3d"][1]
    for i in (0, 5, n - 1):  # the same world point holds the same value after the flip
        new = out["a"].affine @ torch.tensor([i, 3, 4, 1.0], dtype=torch.float64)
        old = AFFINE @ torch.tensor([n - 1 - i, 3, 4, 1.0], dtype=torch.float64)
        torch.testing.assert_close(new, old)


@pytest.mark.parametrize("dims", list(SHAPES))
def test_invertd_brings_back_the_original(dims):
    keys = ("a", "b", "seg")
    augment = Compose([RandPairedFlipd(keys, prob=1.0), RandPairedRotate90d(keys, prob=1.0),
                       RandPairedRotated(keys, label_keys="seg", prob=1.0, range_x=0.2, range_y=0.2, range_z=0.2),
                       RandPairedAffined(keys, label_keys="seg", prob=1.0, translate_range=0, scale_range=0.05)])
    augment.set_random_state(2)
    data = make_pair(SHAPES[dims])
    moved = augment(data)
    back = Invertd(keys, transform=augment, nearest_interp=False)(moved)
    inner = (slice(None), *(slice(n // 4, 3 * n // 4) for n in SHAPES[dims][1:]))
    for key in ("a", "b"):
        assert back[key].shape == data[key].shape
        torch.testing.assert_close(back[key].affine, AFFINE)
        error = (back[key].as_tensor() - data[key].as_tensor())[inner].abs()
        assert float(error.mean()) < 0.02 * float(data[key].as_tensor().abs().max())
    flips = Compose([RandPairedFlipd(keys, prob=1.0), RandPairedRotate90d(keys, prob=1.0)])
    exact = Invertd(keys, transform=flips)(flips(make_pair(SHAPES[dims])))
    torch.testing.assert_close(exact["a"].as_tensor(), data["a"].as_tensor())


@pytest.mark.parametrize("dims", list(SHAPES))
def test_lazy_chains_resample_once_with_consistent_geometry(dims):
    keys = ("a", "b", "seg")
    transforms = [RandPairedFlipd(keys, prob=1.0), RandPairedRotate90d(keys, prob=1.0),
                  RandPairedRotated(keys, label_keys="seg", prob=1.0, range_x=0.3, range_y=0.2, range_z=0.2),
                  RandPairedAffined(keys, label_keys="seg", prob=1.0)]
    for n, transform in enumerate(transforms):
        transform.set_random_state(10 + n)
    data = make_pair(SHAPES[dims])
    out = Compose(transforms, lazy=True)(data)
    # one resampling of the whole chain (MONAI draws lazily in its own order, so compare geometry, not a seed)
    assert world_mismatch(out["a"], data["a"]) < 1e-5
    torch.testing.assert_close(out["b"].as_tensor(), 2 * out["a"].as_tensor() + 1, atol=2e-5, rtol=0)
    assert not out["a"].pending_operations and len(out["a"].applied_operations) == 4


def test_missing_keys_and_aliases():
    data = make_pair(SHAPES["2d"], with_label=False)
    for transform in (RandPairedFlipd(("a", "c"), prob=1.0), RandPairedElasticd(("a", "c"), prob=1.0)):
        with pytest.raises(KeyError):
            transform(data)
    out = RandPairedAffined(("a", "c"), prob=1.0, allow_missing_keys=True)(data)
    assert "c" not in out and out["b"] is data["b"]
    out = RandPairedElasticd(("a", "b", "c"), prob=1.0, allow_missing_keys=True)(data)
    torch.testing.assert_close(out["b"].as_tensor(), 2 * out["a"].as_tensor() + 1, atol=2e-5, rtol=0)
    with pytest.raises(InputError, match="elastic"):
        RandPairedElasticd("x", prob=1.0)({"x": torch.zeros(1, 8)})
    assert RandPairedFlipD is RandPairedFlipd and RandPairedRotate90Dict is RandPairedRotate90d
    assert RandPairedRotateD is RandPairedRotated and RandPairedAffineD is RandPairedAffined
    assert RandPairedElasticDict is RandPairedElasticd


def test_real_harvard_pair_and_3d_templates_move_together():
    mri = load_image(shared_path("harvard", "ct-mri", "mri", "2012.png"), modality="MR")
    ct = load_image(shared_path("harvard", "ct-mri", "ct", "2012.png"), modality="CT")
    joint = RandPairedAffined(("mri", "ct"), prob=1.0).set_random_state(3)({"mri": mri, "ct": ct})
    alone = RandPairedAffined(("ct",), prob=1.0).set_random_state(3)({"ct": ct})
    torch.testing.assert_close(joint["ct"].as_tensor(), alone["ct"].as_tensor())  # the CT got the MRI's draw
    torch.testing.assert_close(joint["ct"].affine, joint["mri"].affine)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1 = load_image(shared_path("templates", "T1.nii"), modality="MR")
        template_ct = load_image(shared_path("templates", "CT.nii"), modality="CT")
    keys = ("t1", "ct")
    augment = Compose([RandPairedFlipd(keys, prob=1.0), RandPairedRotate90d(keys, prob=1.0)])
    augment.set_random_state(0)
    moved = augment({"t1": t1, "ct": template_ct})
    assert moved["t1"].shape == moved["ct"].shape and torch.equal(moved["t1"].affine, moved["ct"].affine)
    back = Invertd(keys, transform=augment)(moved)
    assert torch.equal(back["ct"].as_tensor(), template_ct.as_tensor())
    torch.testing.assert_close(back["t1"].affine, t1.affine)
