"""The JSON transform-chain fragments in ../transforms parse with MONAI's ConfigParser and run on a pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

import monai_fusion.transforms
from monai_fusion.transforms import intensity, patches, spatial

# MONAI 1.6 warns that a parsed config file can run code (the allow-list warning of its bundle
# entry points; ConfigParser itself is quiet in 1.6.1): these fragments are ours, filter exactly that
pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file .* no allow list:UserWarning")

FRAGMENTS = Path(__file__).resolve().parents[1] / "transforms"
TASKS = {"ct_mri": ("mri", "ct"), "mri_pet": ("mri", "pet"), "mri_spect": ("mri", "spect")}
AFFINE = torch.tensor([[-2.0, 0, 0, 40], [0, 2.0, 0, -40], [0, 0, 2.0, -30], [0, 0, 0, 1]], dtype=torch.float64)


@pytest.fixture(autouse=True)
def exported_transforms(monkeypatch):
    """Make ``monai_fusion.transforms.<Name>`` resolve, whether or not the package exports them yet."""
    for module in (intensity, patches, spatial):
        for name in module.__all__:
            monkeypatch.setattr(monai_fusion.transforms, name, getattr(module, name), raising=False)


def synthetic_pair(other: str, shape=(40, 40, 32)) -> dict:
    """A head-like phantom: MR tissue, CT in HU (air, brain, skull), PET in SUV, SPECT in counts."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    brain, skull = radius < 0.7, (radius >= 0.7) & (radius < 0.8)
    texture = np.random.default_rng(0).random(shape)
    mri = np.where(brain, 80 + 40 * texture, np.where(skull, 20.0, 0.0))
    images = {
        "ct": np.where(brain, 30 + 20 * texture, np.where(skull, 900.0, -1000.0)),
        "pet": np.where(brain, 4 + 6 * texture, 0.2),
        "spect": np.where(brain, 300 + 500 * texture, 5.0),
    }
    meta = {"ct": ("CT", "HU"), "pet": ("PT", "SUVbw"), "spect": ("NM", "counts")}
    as_meta = lambda a, modality, units: MetaTensor(torch.as_tensor(a[None], dtype=torch.float32), affine=AFFINE.clone(),
                                                  meta={"modality": modality, "units": units})
    return {"mri": as_meta(mri, "MR", "arbitrary"), other: as_meta(images[other], *meta[other])}


def parser_for(task: str, small: bool = True) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(FRAGMENTS / f"{task}.json")
    for index, entry in enumerate(parser["augmentation"]):
        if "prob" in entry:
            parser[f"augmentation#{index}#prob"] = 1.0  # exercise every step
    if small:
        parser["patches_3d#0#spatial_size"] = [16, 16, 16]
        parser["patches_3d#0#num_samples"] = 2
        parser["patches_2d#0#spatial_size"] = [24, 24]
        parser["patches_2d#0#num_samples"] = 2
    return parser


def test_every_task_has_a_fragment_listed_in_the_readme():
    readme = (FRAGMENTS / "README.md").read_text()
    for task in TASKS:
        content = json.loads((FRAGMENTS / f"{task}.json").read_text())
        assert {"preprocessing", "augmentation", "patches_3d", "patches_2d", "stack"} <= set(content)
        assert content["_meta_"]["keys"] == list(TASKS[task])
        assert f"`{task}.json`" in readme


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("patch_section", ["patches_3d", "patches_2d"])
def test_fragment_chains_run_on_a_synthetic_pair(task, patch_section):
    keys = TASKS[task]
    parser = parser_for(task)
    if patch_section == "patches_3d" and task != "ct_mri":
        parser["augmentation#2#prob"] = 0.0  # 3D elastic is slow on CPU: run it in one task only
    chain = [t for section in ("preprocessing", patch_section, "augmentation", "stack")
             for t in parser.get_parsed_content(section)]
    compose = Compose(chain)
    compose.set_random_state(0)
    samples = compose(synthetic_pair(keys[1]))
    size = (16, 16, 16) if patch_section == "patches_3d" else (24, 24)
    assert len(samples) == 2
    for sample in samples:
        image = sample["image"]
        assert isinstance(image, MetaTensor) and image.shape == (2, *size) and image.dtype == torch.float32
        assert torch.isfinite(image).all() and float(image.min()) >= 0.0 and float(image.max()) <= 1.0 + 1e-6
        assert sample[keys[1]].meta["intensity_normalisation"]["modality"] in ("CT", "PT", "NM")


def test_preprocessing_alone_is_deterministic_and_normalises_by_modality():
    parser = parser_for("ct_mri")
    preprocess = Compose(parser.get_parsed_content("preprocessing"))
    out = preprocess(synthetic_pair("ct"))
    assert out["ct"].meta["intensity_normalisation"]["windows"] == [[80.0, 40.0]]
    assert float(out["ct"].min()) == 0.0 and float(out["ct"].max()) == 1.0
    torch.testing.assert_close(preprocess(synthetic_pair("ct"))["mri"], out["mri"])


def test_a_bundle_config_includes_fragments_with_macros(tmp_path):
    fragment = FRAGMENTS / "mri_pet.json"
    config = {
        "imports": ["$import monai_fusion"],
        "preprocessing": f"%{fragment}#preprocessing",
        "augmentation": f"%{fragment}#augmentation",
        "stack": f"%{fragment}#stack",
        "train_transforms": {"_target_": "Compose", "transforms": "$@preprocessing + @augmentation + @stack"},
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    parser = ConfigParser()
    parser.read_config(path)
    parser.resolve_macro_and_relative_ids()  # copy the fragments in, then override as usual
    parser["augmentation#2#prob"] = 0.0  # no 3D elastic on the whole volume
    train = parser.get_parsed_content("train_transforms")
    out = train(synthetic_pair("pet"))
    assert out["image"].shape == (2, 40, 40, 32)


@pytest.mark.parametrize("task", ["mri_pet", "mri_spect"])
def test_atlas_colour_to_luma_and_the_colour_product_round_trip(task):
    """8-bit pseudo-colour in: the key keeps the luma on 0..1, and fused luma + chroma gives the colour back."""
    key = TASKS[task][1]
    parser = parser_for(task)
    rng = np.random.default_rng(0)
    rgb = torch.as_tensor(rng.integers(0, 256, (3, 24, 20)), dtype=torch.float32)
    mri = torch.as_tensor(rng.integers(0, 256, (1, 24, 20)), dtype=torch.float32)
    out = Compose(parser.get_parsed_content("atlas_2d") + parser.get_parsed_content("stack"))({"mri": mri, key: rgb})
    expected_luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0
    assert out["image"].shape == (2, 24, 20) and out[f"{key}_chroma"].shape == (2, 24, 20)
    torch.testing.assert_close(out["image"][1], expected_luma, atol=1e-5, rtol=0)
    product = Compose(parser.get_parsed_content("colour_product"))({"pred": out["image"][1:], f"{key}_chroma": out[f"{key}_chroma"]})
    torch.testing.assert_close(torch.as_tensor(product["pred_rgb"]), rgb / 255.0, atol=1e-4, rtol=0)


def test_atlas_grey_pngs_scale_to_unit_range():
    parser = parser_for("ct_mri")
    pair = {"mri": torch.full((1, 8, 8), 255.0), "ct": torch.zeros(1, 8, 8)}
    out = Compose(parser.get_parsed_content("atlas_2d") + parser.get_parsed_content("stack"))(pair)
    assert float(out["image"][0].min()) == 1.0 and float(out["image"][1].max()) == 0.0


@pytest.mark.parametrize("task", list(TASKS))
def test_the_yaml_twin_equals_the_json_fragment(task):
    yaml = pytest.importorskip("yaml")
    twin = FRAGMENTS / f"{task}.yaml"
    assert yaml.safe_load(twin.read_text()) == json.loads((FRAGMENTS / f"{task}.json").read_text()), (
        f"{twin.name} is out of date: regenerate it from {task}.json (transforms/README.md)")
    parser = ConfigParser()
    parser.read_config(twin)
    assert len(parser.get_parsed_content("stack")) == 1
