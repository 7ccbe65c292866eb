"""Modality-aware intensity transforms: normalisation, equalisation, gamma, histogram matching, bias, noise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError
from monai_fusion.io.reader import load_image
from monai_fusion.transforms.functional import intensity as F
from monai_fusion.transforms.intensity import (
    AdjustGammaContrast, AdjustGammaContrastd, AdjustGammaContrastD, AdjustGammaContrastDict,
    EqualizeAdaptiveHistogram, EqualizeAdaptiveHistogramd, EqualizeAdaptiveHistogramD, EqualizeHistogram,
    EqualizeHistogramd, EqualizeHistogramDict, HistogramMatch, HistogramMatchd, HistogramMatchD, NormalizeModality,
    NormalizeModalityd, NormalizeModalityD, NormalizeModalityDict, RandGammaContrast, RandGammaContrastd,
    RandGammaContrastDict, RandModalityNoise, RandModalityNoised, RandModalityNoiseD, RandMRBiasField, RandMRBiasFieldd,
    RandMRBiasFieldDict,
)
from tests.conftest import shared_path

AFFINE = torch.tensor([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]], dtype=torch.float64)


def make(kind: str, array: np.ndarray, **meta):
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.from_numpy(array)
    return MetaTensor(torch.from_numpy(array), affine=AFFINE.clone(), meta=meta)


def phantom(shape=(1, 24, 24, 16), seed=0) -> np.ndarray:
    """A bright block in a dark background with texture: a head-like foreground/background split."""
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32) * 0.1
    inner = tuple(slice(n // 4, 3 * n // 4) for n in shape[1:])
    image[(slice(None), *inner)] += 1.0 + rng.random(image[(slice(None), *inner)].shape).astype(np.float32)
    return image


# ----------------------------------------------------------------------------------------------- normalisation


def test_ct_window_presets_and_custom_windows():
    assert F.CT_WINDOWS == {"brain": (80.0, 40.0), "subdural": (200.0, 80.0), "bone": (2800.0, 600.0),
                            "soft_tissue": (400.0, 40.0)}
    assert F.resolve_ct_window("Soft-Tissue") == (400.0, 40.0)
    assert F.resolve_ct_window((350, 50)) == (350.0, 50.0)
    for bad in ("lung", (0, 40), (100,), "x"):
        with pytest.raises(InputError, match="window"):
            F.resolve_ct_window(bad)
    with pytest.raises(InputError, match="unknown CT window 'lung'"):
        NormalizeModality("CT", ct_window="lung")


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
def test_ct_brain_window_maps_hu_to_0_1_and_keeps_type_and_geometry(kind):
    hu = np.array([[[-1000.0, 0.0, 20.0, 40.0, 80.0, 3000.0]]], np.float32)
    out = NormalizeModality("CT", ct_window="brain")(make(kind, hu, modality="CT", units="HU"))
    assert type(out) is {"numpy": np.ndarray, "torch": torch.Tensor, "metatensor": MetaTensor}[kind]
    np.testing.assert_allclose(np.asarray(out), [[[0.0, 0.0, 0.25, 0.5, 1.0, 1.0]]], atol=1e-6)
    assert out.dtype in (np.float32, torch.float32)
    if kind == "metatensor":
        assert torch.equal(out.affine, AFFINE)
        assert out.meta["units"] == "normalised"
        record = out.meta["intensity_normalisation"]
        assert record["method"] == "window" and record["windows"] == [[80.0, 40.0]] and record["clipped"]
        assert record["scale"] == [1 / 80] and record["offset"] == [0.0]


def test_several_ct_windows_become_channels_and_modality_comes_from_metadata():
    hu = MetaTensor(torch.tensor([[[-1000.0, 40.0, 600.0, 2000.0]]]), meta={"modality": "CT", "units": "HU"})
    out = NormalizeModality(ct_window=["brain", "bone", (400, 40)])(hu)
    assert out.shape == (3, 1, 4)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[1, 0], [0.0, (40 + 800) / 2800, 0.5, 1.0], atol=1e-6)
    assert len(out.meta["intensity_normalisation"]["scale"]) == 3


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 16, 16, 12)], ids=["2d", "3d"])
def test_mr_percentile_scaling_is_robust_to_hot_voxels(shape):
    image = phantom(shape)
    image.reshape(-1)[:3] = 1e4  # three hot voxels must not compress the scale
    out = NormalizeModality("MRI")(image)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.percentile(out, 50) > 0.02 and np.mean(out > 0.5) > 0.05


def test_mr_percentiles_within_a_mask_and_zscore():
    image = phantom((1, 32, 32))
    mask = image > 0.5
    out = NormalizeModality("MR", mr_percentiles=(0.0, 100.0))(image, mask=mask)
    np.testing.assert_allclose([out[mask].min(), out[mask].max()], [0.0, 1.0], atol=1e-6)
    z = NormalizeModality("MR", mr_method="zscore")(image, mask=mask)
    np.testing.assert_allclose([z[mask].mean(), z[mask].std()], [0.0, 1.0], atol=1e-4)
    with pytest.raises(InputError, match="mask selects no voxel"):
        NormalizeModality("MR")(image, mask=np.zeros_like(mask))


def test_pet_suv_scaling_and_fallback_to_percentiles_with_a_warning():
    suv = MetaTensor(torch.tensor([[[0.0, 2.5, 5.0, 12.0]]]), meta={"modality": "PT", "units": "SUVbw"})
    np.testing.assert_allclose(NormalizeModality(max_suv=5.0)(suv)[0, 0], [0.0, 0.5, 1.0, 1.0])
    counts = MetaTensor(torch.arange(101.0)[None, None], meta={"modality": "PT", "units": "BQML"})
    with pytest.warns(UserWarning, match="not SUV: using percentile scaling"):
        out = NormalizeModality()(counts)
    assert out.meta["intensity_normalisation"]["method"] == "percentile"
    np.testing.assert_allclose(float(out.max()), 1.0)
    with pytest.warns(UserWarning, match="not HU: CT windows do not apply"):
        NormalizeModality("CT", units="display")(np.arange(256, dtype=np.float32)[None, None])


def test_spect_counts_use_percentiles_from_zero():
    counts = np.concatenate([np.zeros(50), np.arange(1.0, 201.0)]).astype(np.float32)[None, None]
    out = NormalizeModality("SPECT")(counts)
    assert out.min() == 0.0 and abs(float(out.max()) - 1.0) < 1e-6 and out[0, 0, 0] == 0.0


@pytest.mark.parametrize("modality", ["CT", "MR", "PT", "NM"])
def test_constant_image_normalises_to_zero_without_nan(modality):
    out = NormalizeModality(modality)(np.full((1, 8, 8), 7.0, np.float32))
    assert np.isfinite(out).all()
    # calibrated units map absolutely (7 HU: 7/80 of the brain window; SUV 7: 7/10), relative ones to 0
    expected = {"CT": 7.0 / 80.0, "PT": 0.7}.get(modality, 0.0)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    zero = NormalizeModality("MR", mr_method="zscore")(np.full((1, 8, 8), 7.0, np.float32))
    assert (zero == 0).all()


def test_normalisation_refuses_bad_input():
    with pytest.raises(InputError, match="unknown modality 'US'"):
        NormalizeModality("US")
    with pytest.raises(InputError, match="modality is unknown"):
        NormalizeModality()(np.ones((1, 4, 4), np.float32))
    with pytest.raises(InputError, match="empty"):
        NormalizeModality("MR")(np.ones((1, 0, 4), np.float32))
    with pytest.raises(InputError, match="NaN"):
        NormalizeModality("MR")(np.full((1, 4, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="mr_method"):
        NormalizeModality("MR", mr_method="minmax")
    with pytest.raises(InputError, match="max_suv"):
        NormalizeModality(max_suv=0)


def test_dictionary_normalisation_per_key_modalities_and_missing_keys():
    assert NormalizeModalityD is NormalizeModalityDict is NormalizeModalityd
    data = {"mri": make("metatensor", phantom((1, 16, 16)), modality="MR"),
            "ct": make("metatensor", np.full((1, 16, 16), 40.0, np.float32), modality="CT", units="HU"),
            "other": 1}
    out = NormalizeModalityd(("mri", "ct"))(data)
    assert float(out["ct"].max()) == pytest.approx(0.5) and float(out["mri"].max()) == pytest.approx(1.0)
    assert out["other"] == 1 and data["ct"].meta["units"] == "HU"  # the input is left alone
    with pytest.raises(KeyError):
        NormalizeModalityd(("mri", "pet"))(data)
    out = NormalizeModalityd(("mri", "pet"), allow_missing_keys=True)(data)
    assert "pet" not in out
    out = NormalizeModalityd(("a", "b"), modalities={"a": "MR", "b": "NM"})({"a": phantom((1, 8, 8)), "b": phantom((1, 8, 8))})
    assert out["a"].max() == pytest.approx(1.0)
    with pytest.raises(InputError, match="names keys that are not transformed"):
        NormalizeModalityd(("a",), modalities={"b": "MR"})
    with pytest.raises(InputError, match="one per key"):
        NormalizeModalityd(("a", "b"), modalities=["MR"])


def test_cormack_units_round_trip_and_template_anchor_points():
    hu = torch.tensor([-1024.0, -500.0, -124.0, 0.0, 40.0, 76.0, 500.0, 970.0])
    np.testing.assert_allclose(F.cormack_to_hounsfield(F.hounsfield_to_cormack(hu)), hu, atol=1e-3)
    np.testing.assert_allclose(F.hounsfield_to_cormack(torch.tensor([-124.0, 76.0])), [900.0, 2900.0])


# ----------------------------------------------------------------------------------------------- equalisation


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 16, 16, 12)], ids=["2d", "3d"])
def test_histogram_equalisation_is_monotonic_onto_0_1(shape):
    image = phantom(shape) ** 2
    out = EqualizeHistogram()(image)
    assert out.shape == shape and out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    order = np.argsort(image.ravel())
    assert (np.diff(out.ravel()[order]) >= -1e-6).all()
    skewed = np.exp(np.random.default_rng(0).normal(size=shape)).astype(np.float32)  # log-normal
    assert abs(float(np.mean(EqualizeHistogram()(skewed))) - 0.5) < 0.02  # flat histogram
    masked = EqualizeHistogramd("x", mask_key="m")({"x": image, "m": image > 0.5})["x"]
    assert float(np.mean(masked[image > 0.5])) == pytest.approx(0.5, abs=0.05)
    assert (EqualizeHistogram()(np.ones(shape, np.float32)) == 0).all()
    assert EqualizeHistogramDict is EqualizeHistogramd


def test_clahe_in_3d_uses_volume_tiles_and_stays_in_range():
    base = phantom((1, 32, 32), seed=2)[..., None]
    volume = np.repeat(base, 12, axis=-1)  # identical slices: 3D CLAHE must keep them identical
    out = EqualizeAdaptiveHistogram(clip_limit=0.02)(make("metatensor", volume, modality="MR"))
    assert isinstance(out, MetaTensor) and out.shape == volume.shape and torch.equal(out.affine, AFFINE)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    np.testing.assert_allclose(out[..., 0], out[..., 7], atol=1e-6)
    assert out.meta["intensity_normalisation"]["nonlinear"]
    two_d = EqualizeAdaptiveHistogramd("x", kernel_size=8)({"x": base[..., 0]})["x"]
    assert two_d.shape == (1, 32, 32) and EqualizeAdaptiveHistogramD is EqualizeAdaptiveHistogramd
    with pytest.raises(InputError, match="clip_limit"):
        EqualizeAdaptiveHistogram(clip_limit=0)


def test_gamma_contrast_keeps_the_range():
    image = np.linspace(0.0, 1.0, 50, dtype=np.float32)[None, None]
    np.testing.assert_allclose(AdjustGammaContrast()(image), image, atol=1e-6)
    bright = AdjustGammaContrast(gamma=0.5)(image)
    assert bright.min() == 0.0 and bright.max() == 1.0 and bright.mean() > image.mean()
    hu = image * 2000 - 1000
    out = AdjustGammaContrastd("x", gamma=2.0, contrast=1.5)({"x": hu})["x"]
    assert out.min() >= -1000 - 1e-3 and out.max() <= 1000 + 1e-3
    assert AdjustGammaContrastD is AdjustGammaContrastDict is AdjustGammaContrastd
    with pytest.raises(InputError, match="positive"):
        AdjustGammaContrast(gamma=0)


def test_histogram_matching_to_a_reference_key_or_array():
    rng = np.random.default_rng(1)
    image = rng.random((1, 20, 20)).astype(np.float32)
    reference = (rng.normal(size=(1, 30, 30)) * 5 + 100).astype(np.float32)
    out = HistogramMatchd("x", reference_key="ref")({"x": image, "ref": reference})["x"]
    assert np.corrcoef(out.ravel(), image.ravel())[0, 1] > 0.95  # order kept
    np.testing.assert_allclose(np.percentile(out, [10, 50, 90]), np.percentile(reference, [10, 50, 90]), rtol=0.02)
    fixed = HistogramMatch(reference)(image)
    np.testing.assert_allclose(fixed, out)
    with pytest.raises(KeyError):
        HistogramMatchd("x", reference_key="ref")({"x": image})
    assert HistogramMatchd("x", reference_key="ref", allow_missing_keys=True)({"x": image})["x"] is image
    with pytest.raises(InputError, match="exactly one of"):
        HistogramMatchd("x")
    with pytest.raises(InputError, match="reference"):
        HistogramMatch()(image)
    assert HistogramMatchD is HistogramMatchd


# ----------------------------------------------------------------------------------------------- random


def two_identical(shape=(1, 24, 24), modality="MR"):
    image = phantom(shape)
    return {"a": make("metatensor", image.copy(), modality=modality), "b": make("metatensor", image.copy(), modality=modality)}


@pytest.mark.parametrize("cls, kwargs", [
    (RandGammaContrastd, {}),
    (RandMRBiasFieldd, {}),
    (RandModalityNoised, {}),
])
def test_joint_draw_is_shared_and_independent_draws_differ(cls, kwargs):
    joint = cls(("a", "b"), prob=1.0, joint=True, **kwargs).set_random_state(5)(two_identical())
    if cls is RandModalityNoised:  # joint = same severity; the noise realisations stay independent
        noise_a, noise_b = (joint[k] - two_identical()[k] for k in "ab")
        assert float(noise_a.std() / noise_b.std()) == pytest.approx(1.0, abs=0.1)
        assert not torch.equal(noise_a, noise_b)
        ratios = []
        for seed in range(4):
            independent = cls(("a", "b"), prob=1.0, joint=False).set_random_state(seed)(two_identical())
            noise_a, noise_b = (independent[k] - two_identical()[k] for k in "ab")
            ratios.append(float(noise_a.std() / noise_b.std()))
        assert max(abs(np.log(ratios))) > np.log(1.3)  # own severities
        return
    assert torch.equal(joint["a"], joint["b"])
    independent = cls(("a", "b"), prob=1.0, joint=False, **kwargs).set_random_state(5)(two_identical())
    assert not torch.allclose(independent["a"], independent["b"])


@pytest.mark.parametrize("transform", [
    lambda: RandGammaContrastd(("a", "b"), prob=0.7),
    lambda: RandMRBiasFieldd(("a", "b"), prob=0.7),
    lambda: RandModalityNoised(("a", "b"), prob=0.7, joint=True),
])
def test_random_intensity_transforms_are_deterministic_with_a_seed(transform):
    first = [transform().set_random_state(11)(two_identical()) for _ in range(2)]
    for key in "ab":
        assert torch.equal(first[0][key], first[1][key])
        assert isinstance(first[0][key], MetaTensor) and torch.equal(first[0][key].affine, AFFINE)
    array = RandGammaContrast(prob=1.0).set_random_state(3)
    assert torch.equal(array(two_identical()["a"]), RandGammaContrast(prob=1.0).set_random_state(3)(two_identical()["a"]))


def test_bias_field_touches_only_mr_keys():
    data = {"mri": make("metatensor", phantom(), modality="MR"),
            "ct": make("metatensor", phantom() * 100, modality="CT", units="HU")}
    out = RandMRBiasFieldd(("mri", "ct"), prob=1.0).set_random_state(0)(data)
    assert out["ct"] is data["ct"]
    ratio = (out["mri"] / data["mri"]).as_tensor()
    assert float(ratio.std()) > 0.01 and float(ratio.min()) > 0  # smooth multiplicative field
    assert torch.equal(out["mri"].affine, AFFINE)
    unchanged = RandMRBiasField(prob=1.0)(make("metatensor", phantom(), modality="PT"))
    assert unchanged.meta["modality"] == "PT"
    assert RandMRBiasFieldDict is RandMRBiasFieldd


def test_mr_noise_is_rician_with_a_positive_floor():
    image = np.zeros((1, 64, 64), np.float32)
    image[:, 16:48, 16:48] = 1.0
    out = RandModalityNoise(prob=1.0, mr_std=(0.1, 0.1), modality="MR").set_random_state(0)(image)
    background = out[:, :8, :8]
    assert background.min() >= 0.0  # Rayleigh floor: never negative
    assert float(background.mean()) == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.15)


def test_ct_noise_is_in_hu_also_on_a_windowed_image():
    hu = MetaTensor(torch.full((1, 64, 64), 40.0), meta={"modality": "CT", "units": "HU"})
    noise = RandModalityNoise(prob=1.0, ct_std=(10, 10)).set_random_state(1)
    assert float((noise(hu) - hu).std()) == pytest.approx(10.0, rel=0.05)
    windowed = NormalizeModality(ct_window="brain")(hu)
    assert float(noise(windowed).std()) == pytest.approx(10.0 / 80.0, rel=0.05)
    with pytest.raises(InputError, match="non-linear"):
        noise(AdjustGammaContrast(0.8)(EqualizeHistogram()(windowed)))
    with pytest.raises(InputError, match="modality"):
        RandModalityNoise(prob=1.0)(np.zeros((1, 4, 4), np.float32))


def test_emission_noise_is_poisson_like():
    image = np.ones((1, 64, 64), np.float32)
    image[:, :, 32:] = 0.25
    out = RandModalityNoise(prob=1.0, counts_range=(100, 100), modality="PT").set_random_state(2)(image)
    high, low = out[:, :, :32], out[:, :, 32:]
    assert float(high.mean()) == pytest.approx(1.0, rel=0.03) and float(low.mean()) == pytest.approx(0.25, rel=0.05)
    assert float(high.std()) == pytest.approx(0.1, rel=0.1)  # 1/sqrt(100) at the reference
    assert float(low.std()) == pytest.approx(0.25 / np.sqrt(25), rel=0.12)  # variance proportional to the mean
    assert RandModalityNoiseD is RandModalityNoised


def test_random_transforms_respect_missing_keys_and_probability():
    data = two_identical()
    with pytest.raises(KeyError):
        RandGammaContrastd(("a", "c"), prob=1.0)(data)
    out = RandGammaContrastd(("a", "c"), prob=1.0, allow_missing_keys=True)(data)
    assert "c" not in out and not torch.equal(out["a"], data["a"])
    untouched = RandGammaContrastd(("a", "b"), prob=0.0)(data)
    assert untouched["a"] is data["a"]
    assert RandGammaContrastDict is RandGammaContrastd
    with pytest.raises(InputError, match="gamma_range"):
        RandGammaContrastd("a", gamma_range=(0, 2))


# ----------------------------------------------------------------------------------------------- real data


def test_real_harvard_pair_and_3d_template_normalise_as_documented():
    mri = load_image(shared_path("harvard", "ct-mri", "mri", "2012.png"), modality="MR")
    ct = load_image(shared_path("harvard", "ct-mri", "ct", "2012.png"), modality="CT")
    ct.meta["units"] = "display"  # the atlas PNGs are display images, not HU
    with pytest.warns(UserWarning, match="not HU"):
        out = NormalizeModalityd(("mri", "ct"))({"mri": mri, "ct": ct})
    for key in ("mri", "ct"):
        assert out[key].shape == (1, 256, 256) and float(out[key].min()) == 0.0 and float(out[key].max()) == 1.0
    noisy = RandModalityNoised(("mri", "ct"), prob=1.0, joint=True).set_random_state(0)(out)
    assert torch.equal(noisy["ct"].affine, ct.affine)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template_ct = load_image(shared_path("templates", "CT.nii"), modality="CT")
    hu = F.cormack_to_hounsfield(template_ct)
    brain = NormalizeModality(ct_window="brain")(hu)
    assert torch.equal(brain.affine, template_ct.affine)
    parenchyma = brain[(hu > 20) & (hu < 60)]
    assert 0.3 < float(parenchyma.median()) < 0.7  # brain tissue sits mid-window
    clahe = EqualizeAdaptiveHistogram()(brain)
    assert clahe.shape == brain.shape and 0 <= float(clahe.min()) and float(clahe.max()) <= 1
