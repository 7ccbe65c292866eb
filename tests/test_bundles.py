"""The MONAI model-zoo checks, offline, for the three bundles in ../bundles.

Per bundle: required files; metadata version in its changelog; metadata against MONAI's schema
(a local copy in ../shared/monai, never downloaded); network input/output shapes; TorchScript
export equal to the eager network; inference runs (``ConfigWorkflow``, properties checked) on a
synthetic 2D pair and a synthetic 3D pair with and without registration; one tiny training epoch
on a synthetic Harvard-like folder, resumed from its checkpoint; the evaluation writes its metrics.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from monai_fusion.io import load_image
from monai_fusion.io.writers import write_nifti
from monai_fusion.metrics import METRICS
from monai_fusion.networks.detail_fusion import DetailFusionNet
from monai_fusion.workflows.bundle_config import latest_checkpoint
from monai_fusion.workflows.harvard import HARVARD_TASKS

# MONAI 1.6 warns on every config parse that configs can run code: these configs are ours
pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file .* no allow list:UserWarning")

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"
BUNDLES = {"ct_mri_fusion": "ct-mri", "mri_pet_fusion": "pet-mri", "mri_spect_fusion": "spect-mri"}
VALIDATION = {"ct-mri": "37", "pet-mri": "30", "spect-mri": "4"}
REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "configs/train.json",
                  "configs/evaluate.json", "configs/logging.conf", "models/model.pt", "docs/README.md")


def bundle_root(name: str) -> Path:
    return REPO / "bundles" / name


def other_key(name: str) -> str:
    return HARVARD_TASKS[BUNDLES[name]][1]


def configs(name: str, *stems: str) -> list[str]:
    return [str(bundle_root(name) / "configs" / f"{stem}.json") for stem in stems]


def phantom_2d(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mri, colour)`` uint8: MRI zero on the left half; an RGB 'uptake' image of luma >= 0.3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    mri = (60 + 120 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.7) ** 2) * 20) + 20 * rng.random((size, size)))
    mri[:, : size // 2] = 0
    colour = np.stack([200 * (0.5 + 0.5 * np.sin(6 * yy)), 120 + 60 * xx, 90 + 30 * rng.random((size, size))], -1)
    return mri.astype(np.uint8), np.clip(colour, 0, 255).astype(np.uint8)


def write_pair(folder: Path, task: str, name: str, seed: int = 0) -> dict:
    """A Harvard-like PNG pair ``<folder>/<task>/{mri,other}/<name>.png``; the functional one RGB unless CT."""
    anatomical, functional = HARVARD_TASKS[task]
    mri, colour = phantom_2d(seed=seed)
    other = colour if functional != "ct" else colour.mean(-1).astype(np.uint8)
    paths = {}
    for key, pixels in ((anatomical, mri), (functional, other)):
        path = folder / task / key / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths[key] = str(path)
    return paths


def write_volume_pair(folder: Path, other: str) -> dict:
    """A 3D MRI and a functional volume on different grids (NIfTI), the MRI the reference."""
    shape = (24, 24, 10)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    brain, skull = radius < 0.7, (radius >= 0.7) & (radius < 0.85)
    texture = np.random.default_rng(0).random(shape)
    mri = np.where(brain, 80 + 40 * texture, np.where(skull, 20.0, 0.0))
    functional = {"ct": np.where(brain, 30 + 20 * texture, np.where(skull, 900.0, -1000.0)),
                  "pet": np.where(brain, 2 + 6 * texture, 0.1), "spect": np.where(brain, 300 + 500 * texture, 5.0)}[other]
    mri_affine = np.diag([2.0, 2.0, 4.0, 1.0])
    mri_affine[:3, 3] = [-24, -24, -20]
    other_affine = np.diag([2.5, 2.5, 5.0, 1.0])
    other_affine[:3, 3] = [-25, -26, -22]
    small = torch.nn.functional.interpolate(torch.as_tensor(functional, dtype=torch.float32)[None, None],
                                            size=(19, 19, 8), mode="trilinear")[0]
    paths = {"mri": folder / "mri3d.nii.gz", other: folder / f"{other}3d.nii.gz"}
    write_nifti(torch.as_tensor(mri, dtype=torch.float32)[None], paths["mri"], affine=mri_affine)
    write_nifti(small, paths[other], affine=other_affine)
    return {key: str(path) for key, path in paths.items()}


def run_workflow(config_file, workflow_type: str, **override) -> ConfigWorkflow:
    workflow = ConfigWorkflow(config_file=config_file, workflow_type=workflow_type, **override)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory) -> str:
    """An untrained network's state dict: a soft per-pixel maximum (hard with a large ``selection_gain``)."""
    path = tmp_path_factory.mktemp("weights") / "untrained.pt"
    torch.manual_seed(0)
    torch.save(DetailFusionNet().state_dict(), path)
    return str(path)


# ------------------------------------------------------------------------ model-zoo file checks


@pytest.mark.parametrize("name", list(BUNDLES))
def test_required_files_and_version_in_changelog(name):
    root = bundle_root(name)
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert meta["required_packages_version"] == {"monai-fusion": version}
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 2 and image["channel_def"]["0"] == "MRI"
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 1
    for stem in ("inference", "train"):  # evaluate.json is merged over inference.json
        assert "$import monai_fusion" in json.loads((root / "configs" / f"{stem}.json").read_text())["imports"]
    assert not list(root.rglob("*.py")), "bundles hold no Python code"


@pytest.mark.parametrize("name", list(BUNDLES))
def test_metadata_against_the_schema(name):
    if not SCHEMA.is_file():
        pytest.skip(f"MONAI metadata schema not found at {SCHEMA} (copy meta_schema_20240725.json to ../shared/monai)")
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (pip install -e '.[dev]')")
    verify_metadata(meta_file=str(bundle_root(name) / "configs" / "metadata.json"), filepath=str(SCHEMA))


@pytest.mark.parametrize("name", list(BUNDLES))
def test_network_input_and_output(name):
    root = bundle_root(name)
    verify_net_in_out(net_id="network_def", meta_file=str(root / "configs" / "metadata.json"),
                      config_file=configs(name, "inference")[0], device="cpu", any=40, bundle_root=str(root))


@pytest.mark.parametrize("name", list(BUNDLES))
def test_torchscript_export_equals_the_eager_network(name, tmp_path):
    root = bundle_root(name)
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"), config_file=configs(name, "inference")[0],
                bundle_root=str(root))
    scripted = torch.jit.load(str(exported))
    eager = DetailFusionNet()
    eager.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu"))
    eager.eval()
    image = torch.rand(2, 2, 48, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), eager(image))


# ----------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("name", list(BUNDLES))
def test_inference_on_a_2d_pair_writes_the_fused_png_and_the_colour_product(name, tmp_path, untrained_weights):
    task, other = BUNDLES[name], other_key(name)
    pair = write_pair(tmp_path / "in", task, "1001")
    out = tmp_path / "out"
    # the shipped gain (10) is a soft maximum: a hard gain makes the untrained network the maximum rule
    run_workflow(configs(name, "inference"), "infer", bundle_root=str(bundle_root(name)), datalist=[pair],
                 output_dir=str(out), ckpt_path=untrained_weights, selection_gain=1000.0)
    fused = load_image(out / "1001_fused.png")
    mri = load_image(pair["mri"])
    assert fused.shape == mri.shape
    source = load_image(pair[other])
    if other == "ct":
        assert not (out / "1001_fused_rgb.png").exists()
        return
    colour = load_image(out / "1001_fused_rgb.png")
    assert colour.shape == source.shape == (3, *mri.shape[1:])
    # where the MRI is black the untrained network keeps the functional luma: the colour comes back
    dark = mri[0] == 0
    assert float((colour.float() - source.float()).abs()[:, dark].max()) <= 3.0, "colour product must reattach the original chroma"


@pytest.mark.parametrize("register", [False, True])
@pytest.mark.parametrize("name", list(BUNDLES))
def test_inference_on_a_3d_pair_runs_slice_wise_on_the_mri_grid(name, register, tmp_path):
    pair = write_volume_pair(tmp_path, other_key(name))
    out = tmp_path / "out"
    run_workflow(configs(name, "inference"), "infer", bundle_root=str(bundle_root(name)), datalist=[pair],
                 output_dir=str(out), register=register)
    fused, mri = load_image(out / "mri3d_fused.nii.gz"), load_image(pair["mri"])
    assert fused.shape == mri.shape
    np.testing.assert_allclose(np.asarray(fused.affine), np.asarray(mri.affine), atol=1e-5)
    assert 0.0 <= float(fused.min()) and float(fused.max()) <= 1.0 and float(fused.max()) > 0.0


# ------------------------------------------------------------------------ training, evaluation


@pytest.fixture(scope="module")
def tiny_harvard(tmp_path_factory) -> Path:
    """A Harvard-like folder: two training slices of patient 1 and one validation slice per task."""
    root = tmp_path_factory.mktemp("harvard")
    for task, patient in VALIDATION.items():
        write_pair(root, task, "1001", seed=1)
        write_pair(root, task, "1002", seed=2)
        write_pair(root, task, f"{patient}010", seed=3)
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", list(BUNDLES))
def test_one_tiny_training_epoch_then_resume_from_its_checkpoint(name, tiny_harvard, tmp_path):
    out = tmp_path / "train"
    common = dict(bundle_root=str(bundle_root(name)), dataset_dir=str(tiny_harvard), output_dir=str(out),
                  ckpt_dir=str(out), crop_size=[32, 32], samples_per_image=2, batch_size=2)
    run_workflow(configs(name, "train"), "train", max_epochs=1, **common)
    assert (out / "checkpoint_epoch=1.pt").is_file() and (out / "model.pt").is_file()
    first = read_csv(out / "train_loss.csv")
    assert {row["epoch"] for row in first} == {"1"} and "edge" in first[0]

    run_workflow(configs(name, "train"), "train", max_epochs=2, **common)
    rows = read_csv(out / "train_loss.csv")
    assert [row["epoch"] for row in rows] == ["1"] * len(first) + ["2"] * len(first), "resumed at epoch 2"
    assert int(rows[-1]["iteration"]) == 2 * len(first), "the iteration count continues from the checkpoint"
    assert latest_checkpoint(out) == str(out / "checkpoint_epoch=2.pt")
    history = json.loads((out / "validation_metrics.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2] and {"Qabf", "SSIM"} <= set(history[0])
    network = DetailFusionNet()
    network.load_state_dict(torch.load(out / "model.pt", map_location="cpu"))  # a plain state dict


@pytest.mark.parametrize("name", list(BUNDLES))
def test_evaluation_writes_8bit_pngs_and_the_metrics(name, tiny_harvard, tmp_path, untrained_weights):
    out = tmp_path / "eval"
    defaults = json.loads((bundle_root(name) / "configs" / "evaluate.json").read_text())["eval_metrics"]
    assert set(defaults) <= set(METRICS)
    table = ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]  # MS-SSIM needs 161 pixels: not on 64x64 images
    run_workflow(configs(name, "inference", "evaluate"), "infer", bundle_root=str(bundle_root(name)),
                 dataset_dir=str(tiny_harvard), output_dir=str(out), ckpt_path=untrained_weights, eval_metrics=table)
    patient = VALIDATION[BUNDLES[name]]
    fused = np.asarray(Image.open(out / f"{patient}010_fused.png"))
    assert fused.dtype == np.uint8 and fused.shape == (64, 64)
    rows = read_csv(out / "fusion_metrics_per_image.csv")
    assert len(rows) == 1 and rows[0]["filename"].endswith(f"{patient}010.png")
    summary = json.loads((out / "fusion_metrics_summary.json").read_text())
    assert summary["convention"] == "benchmark" and summary["images"] == 1
    assert {"EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"} <= set(summary["mean"])
    assert all(np.isfinite(value) for value in summary["mean"].values())


def test_training_is_deterministic_for_a_seed(tiny_harvard, tmp_path):
    losses = []
    for run in ("a", "b"):
        out = tmp_path / run
        run_workflow(configs("ct_mri_fusion", "train"), "train", bundle_root=str(bundle_root("ct_mri_fusion")),
                     dataset_dir=str(tiny_harvard), output_dir=str(out), ckpt_dir=str(out), crop_size=[32, 32],
                     samples_per_image=2, batch_size=2, max_epochs=1, seed=3)
        losses.append([row["loss"] for row in read_csv(out / "train_loss.csv")])
    assert losses[0] == losses[1]
