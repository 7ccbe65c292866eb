"""Pretrain our 2D fusion encoder self-supervised, and measure whether the pretraining transfers.

Two entry points, both deterministic for a given seed, torch version and thread count:

* :func:`pretrain_encoder` (``pretrain``): masked and noisy image reconstruction. Random 96x96
  crops of every modality in the shared data (Harvard atlas MRI, CT, PET and SPECT luma; axial,
  coronal and sagittal slices of the seven SPM/CT templates; axial slices of the MRI-DIR CT and
  MR) have 8x8 blocks blanked out (40 %) and Gaussian noise added; :class:`FusionEncoder` plus
  a light :class:`FeatureDecoder` learn to give back the clean crop (L1, three times heavier on
  the blanked blocks, plus an L1 on image gradients). The encoder is written with its training
  log (loss per epoch, seed, data counts, time) next to it, as JSON.
* :func:`transfer_experiment` (``transfer``): train :class:`EncoderFusionNet` on Harvard pairs
  with an unsupervised fusion loss (SSIM, intensity and gradient terms against both sources),
  once from the pretrained encoder and once from random initialisation, same seed, same steps,
  same batches; report validation-loss curves and the steps each needs to reach a given loss.

Held-out validation is by patient (:data:`VALIDATION_PATIENTS`), the same patients in both
entry points, so the transfer experiment validates on patients the encoder never saw. Templates
and the MRI-DIR phantom have no patients to hold out and serve training only.

The command line (``python examples/pretrain_encoder.py pretrain|transfer --help``) is
:func:`main`. The full recipe takes 10-15 minutes on one CPU thread of this 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from monai_fusion.errors import InputError
from monai_fusion.io import load_image
from monai_fusion.io.atomic import atomic_file
from monai_fusion.networks.fusion_encoder import (
    FeatureDecoder,
    FusionEncoder,
    decoder_checkpoint,
    encoder_checkpoint,
    fusion_decoder_weights_path,
    fusion_encoder_weights_path,
    load_fusion_decoder,
    load_fusion_encoder,
)
from monai_fusion.networks.fusion_net import EncoderFusionNet
from monai_fusion.workflows.evaluate import load_grey
from monai_fusion.workflows.harvard import (  # noqa: F401  (re-exported: the Harvard split lives there)
    HARVARD_TASKS,
    VALIDATION_PATIENTS,
    default_data_root,
    harvard_patient,
    task_pairs,
)

__all__ = [
    "HARVARD_TASKS",
    "TEMPLATES",
    "VALIDATION_PATIENTS",
    "PretrainConfig",
    "TransferConfig",
    "TrainingImage",
    "collect_images",
    "harvard_pairs",
    "main",
    "split_by_patient",
    "pretrain_encoder",
    "transfer_experiment",
]

TEMPLATES = {"T1": "MR", "T2": "MR", "PD": "MR", "PET": "PET", "SPECT": "SPECT", "CT": "CT", "Transm": "PET-transmission"}
_HARVARD_MODALITY = {"mri": "MR", "ct": "CT", "pet": "PET", "spect": "SPECT"}


@dataclass(frozen=True)
class TrainingImage:
    """One 2D training image: where it came from, its modality, its patient group, its pixels (uint8, 0..255)."""

    source: str
    modality: str
    group: str
    pixels: np.ndarray = field(repr=False)


# ---------------------------------------------------------------------------------------- data


def spread(items: Sequence, count: int | None) -> list:
    """``count`` items evenly spaced through ``items`` (all of them when ``count`` is None)."""
    items = list(items)
    if count is None or count >= len(items):
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, max(count, 0)).round()]


def harvard_pairs(data_root: Path, max_per_task: int | None = None) -> list[tuple[str, str, Path, Path]]:
    """``(task, patient, mri_path, other_path)`` for every registered Harvard pair found under ``data_root``."""
    pairs = []
    for task in HARVARD_TASKS:
        found = spread(task_pairs(Path(data_root) / "harvard" / task, task), max_per_task)
        pairs += [(task, patient, mri, other) for patient, mri, other in found]
    return pairs


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _percentile_scaled(volume: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume, (0.5, 99.5))
    return (volume - low) / max(float(high - low), 1e-6)


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def _harvard_images(data_root: Path, max_per_task: int | None) -> list[TrainingImage]:
    images = []
    for task, patient, mri, other in harvard_pairs(data_root, max_per_task):
        for path in (mri, other):
            modality = _HARVARD_MODALITY[path.parent.name]
            relative = path.relative_to(data_root).as_posix()
            images.append(TrainingImage(relative, modality, f"harvard:{patient}", _to_uint8(load_grey(path) / 255.0)))
    return images


def _volume_slices(volume: np.ndarray, spacing: Sequence[float], axes: Sequence[int], step: int,
                   min_foreground: float) -> list[tuple[int, int, np.ndarray]]:
    """``(axis, index, plane)`` of a 0..1 volume every ``step`` slices, resampled to 1 mm pixels."""
    slices = []
    for axis in axes:
        for index in range(0, volume.shape[axis], step):
            plane = np.take(volume, index, axis=axis)
            if (plane > 0.05).mean() < min_foreground:
                continue
            in_plane = [s for a, s in enumerate(spacing) if a != axis]
            size = tuple(max(1, round(n * s)) for n, s in zip(plane.shape, in_plane))
            slices.append((axis, index, _resize(plane, size)))
    return slices


def _template_images(data_root: Path, step: int, limit: int | None) -> list[TrainingImage]:
    images = []
    for name, modality in TEMPLATES.items():
        path = Path(data_root) / "templates" / f"{name}.nii"
        if not path.is_file():
            continue
        volume = load_image(path)
        unit = _percentile_scaled(volume[0].numpy())
        for axis, index, plane in spread(_volume_slices(unit, volume.meta["spacing"], (0, 1, 2), step, 0.15), limit):
            images.append(TrainingImage(f"templates/{name}.nii axis {axis} slice {index}", modality, "templates", _to_uint8(plane)))
    return images


def _mridir_images(data_root: Path, step: int, limit: int | None) -> list[TrainingImage]:
    images = []
    for name, modality in (("ct", "CT"), ("mr", "MR")):
        folder = Path(data_root) / "mridir" / name
        if not folder.is_dir():
            continue
        volume = load_image(folder)
        unit = _percentile_scaled(volume[0].numpy())
        for axis, index, plane in spread(_volume_slices(unit, volume.meta["spacing"], (2,), step, 0.10), limit):
            images.append(TrainingImage(f"mridir/{name} slice {index}", modality, "mridir", _to_uint8(plane)))
    return images


def collect_images(data_root: Path, include_mridir: bool = True, template_step: int = 3, mridir_step: int = 4,
                   max_per_source: int | None = None) -> list[TrainingImage]:
    """Every 2D image of the pretraining set (see the module docstring), intensities scaled to 0..255.

    ``max_per_source`` keeps that many pairs of each Harvard task and slices of each template and
    MRI-DIR series, evenly spread (for quick runs and tests).
    """
    data_root = Path(data_root)
    images = _harvard_images(data_root, max_per_source) + _template_images(data_root, template_step, max_per_source)
    if include_mridir:
        images += _mridir_images(data_root, mridir_step, max_per_source)
    if not images:
        raise InputError(f"no training images found under {data_root} (expected harvard/, templates/ or mridir/; "
                         "set --data or MONAI_FUSION_DATA to the shared data folder)")
    return images


def split_by_patient(items: Sequence, group_of, validation: Sequence[str] = VALIDATION_PATIENTS) -> tuple[list, list]:
    """``(train, validation)``: items whose group is ``harvard:<a validation patient>`` go to validation."""
    held_out = {f"harvard:{patient}" for patient in validation}
    train = [item for item in items if group_of(item) not in held_out]
    return train, [item for item in items if group_of(item) in held_out]


def _counts(images: Sequence[TrainingImage]) -> dict:
    return {
        "images": len(images),
        "by_modality": dict(sorted(Counter(image.modality for image in images).items())),
        "by_source": dict(sorted(Counter(image.group.split(":")[0] for image in images).items())),
        "patients": sorted({image.group.split(":")[1] for image in images if image.group.startswith("harvard:")}, key=int),
    }


# ------------------------------------------------------------------------------- batches, losses


def _random_crop(pixels: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    pad = [(0, max(0, crop - n)) for n in pixels.shape]
    if any(after for _, after in pad):
        pixels = np.pad(pixels, pad)
    top, left = (int(rng.integers(0, n - crop + 1)) for n in pixels.shape)
    patch = pixels[top:top + crop, left:left + crop]
    patch = np.rot90(patch, int(rng.integers(0, 4)))
    return patch[:, ::-1] if rng.random() < 0.5 else patch


def _crop_batch(images: Sequence[np.ndarray], batch_size: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    chosen = rng.integers(0, len(images), size=batch_size)
    patches = [_random_crop(images[int(i)], crop, rng) for i in chosen]
    return torch.from_numpy(np.stack(patches).astype(np.float32) / 255.0)[:, None]


def corrupt(images: torch.Tensor, generator: torch.Generator, mask_ratio: float, block: int, noise_max: float):
    """``(corrupted, mask)``: blocks of ``block`` pixels blanked with probability ``mask_ratio``, Gaussian noise elsewhere."""
    n, _, height, width = images.shape
    coarse = torch.rand(n, 1, math.ceil(height / block), math.ceil(width / block), generator=generator) < mask_ratio
    mask = coarse.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :height, :width].float()
    sigma = torch.rand(n, 1, 1, 1, generator=generator) * noise_max
    noisy = images + sigma * torch.randn(images.shape, generator=generator)
    return noisy * (1.0 - mask), mask


def _gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images[..., 1:, :] - images[..., :-1, :], images[..., :, 1:] - images[..., :, :-1]


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 (three times heavier on blanked pixels) plus half the L1 between image gradients."""
    error = (output - target).abs()
    gradient = sum((go - gt).abs().mean() for go, gt in zip(_gradients(output), _gradients(target)))
    return error.mean() + 2.0 * (error * mask).mean() + 0.5 * gradient


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """|dx| + |dy| of ``(N, 1, H, W)`` images by forward differences, zero at the far border."""
    dy, dx = _gradients(images)
    return F.pad(dy.abs(), (0, 0, 0, 1)) + F.pad(dx.abs(), (0, 1, 0, 0))


class FusionLoss(torch.nn.Module):
    """Unsupervised fusion loss: mean of ``1 - SSIM`` to both sources, L1 to their maximum, and L1
    between the fused gradient magnitude and the larger of the sources' (weights 1, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0)

    def forward(self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        structure = 0.5 * (self.ssim(fused, a) + self.ssim(fused, b))
        intensity = (fused - torch.maximum(a, b)).abs().mean()
        texture = (gradient_magnitude(fused) - torch.maximum(gradient_magnitude(a), gradient_magnitude(b))).abs().mean()
        return structure + intensity + texture


@contextlib.contextmanager
def reproducible(seed: int, threads: int) -> Iterator[None]:
    """Seeded torch RNG, ``threads`` CPU threads and deterministic algorithms inside the block;
    the caller's RNG state, thread count and determinism setting are restored afterwards."""
    threads_before, deterministic_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(threads_before)
            torch.use_deterministic_algorithms(deterministic_before)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, content: dict) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n")


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)


# ---------------------------------------------------------------------------------- pretraining


@dataclass
class PretrainConfig:
    """The pretraining recipe; its defaults are the shipped weights' recipe."""

    data_root: Path = field(default_factory=default_data_root)
    out: Path = field(default_factory=lambda: fusion_encoder_weights_path(2))
    epochs: int = 30
    steps_per_epoch: int = 30
    batch_size: int = 16
    crop: int = 96
    learning_rate: float = 2e-3
    final_learning_rate: float = 1e-4
    seed: int = 0
    threads: int = 1
    mask_ratio: float = 0.4
    mask_block: int = 8
    noise_max: float = 0.1
    include_mridir: bool = True
    max_per_source: int | None = None
    validation_stride: int = 4
    channels: tuple = (16, 32, 64, 96)


def _validation_loss(encoder, decoder, images: torch.Tensor, masks: torch.Tensor, corrupted: torch.Tensor) -> float:
    with torch.no_grad():
        losses = [float(reconstruction_loss(decoder(encoder(corrupted[i:i + 16])), images[i:i + 16], masks[i:i + 16]))
                  * len(images[i:i + 16]) for i in range(0, len(images), 16)]
    return sum(losses) / len(images)


def _validation_set(images: Sequence[TrainingImage], stride: int, config: PretrainConfig):
    if not images:
        return None
    chosen = [image.pixels for image in images[::stride]]
    size = min(min(p.shape) for p in chosen) // 8 * 8
    clean = torch.from_numpy(np.stack([p[:size, :size] for p in chosen]).astype(np.float32) / 255.0)[:, None]
    generator = torch.Generator().manual_seed(config.seed + 1)
    corrupted, masks = corrupt(clean, generator, config.mask_ratio, config.mask_block, config.noise_max)
    return clean, masks, corrupted


def pretrain_encoder(config: PretrainConfig, verbose: bool = True) -> dict:
    """Run the pretraining recipe; write the encoder to ``config.out`` and its log beside it (``.json``).

    Returns:
        the training log (also written as JSON).
    """
    with reproducible(config.seed, config.threads):
        return _pretrain(config, verbose)


def _pretrain(config: PretrainConfig, verbose: bool) -> dict:
    started = time.time()
    images = collect_images(config.data_root, config.include_mridir, max_per_source=config.max_per_source)
    train, validation = split_by_patient(images, lambda image: image.group)
    _log(verbose, f"pretraining on {len(train)} images, validating on {len(validation[::config.validation_stride])} "
                  f"({time.time() - started:.0f} s to load)")
    encoder = FusionEncoder(2, 1, config.channels)
    decoder = FeatureDecoder(2, config.channels, 1)
    parameters = list(encoder.parameters()) + list(decoder.parameters())
    optimiser = torch.optim.Adam(parameters, lr=config.learning_rate)
    total_steps = config.epochs * config.steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_steps, 1), eta_min=config.final_learning_rate)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    validation_set = _validation_set(validation, config.validation_stride, config)
    identity_baseline = None
    if validation_set is not None:
        clean, masks, corrupted = validation_set
        identity_baseline = float(reconstruction_loss(corrupted, clean, masks))
    pixels = [image.pixels for image in train]
    epochs = []
    for epoch in range(1, config.epochs + 1):
        encoder.train(), decoder.train()
        running = 0.0
        for _ in range(config.steps_per_epoch):
            clean = _crop_batch(pixels, config.batch_size, config.crop, rng)
            corrupted, mask = corrupt(clean, generator, config.mask_ratio, config.mask_block, config.noise_max)
            loss = reconstruction_loss(decoder(encoder(corrupted)), clean, mask)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item()
        encoder.eval(), decoder.eval()
        row = {"epoch": epoch, "train_loss": running / max(config.steps_per_epoch, 1),
               "val_loss": _validation_loss(encoder, decoder, *validation_set) if validation_set else None,
               "seconds": round(time.time() - started, 1)}
        epochs.append(row)
        _log(verbose, f"epoch {epoch:3d}  train {row['train_loss']:.4f}  val {row['val_loss'] if row['val_loss'] is None else round(row['val_loss'], 4)}  {row['seconds']:.0f} s")
    out = Path(config.out)
    decoder_out = out.with_name(out.name.replace("encoder", "decoder")) if "encoder" in out.name else out.with_suffix(".decoder.pt")
    for path, checkpoint in ((out, encoder_checkpoint(encoder)), (decoder_out, decoder_checkpoint(decoder, config.channels))):
        buffer = io.BytesIO()  # not straight to the temporary file: torch.save would record its random name
        torch.save(checkpoint, buffer)
        with atomic_file(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
    recipe = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()
              if key not in ("out", "data_root")}
    log = {
        "what": "monai-fusion FusionEncoder 2D, self-supervised masked/noisy reconstruction pretraining",
        "recipe": recipe,
        "seed": config.seed,
        "data": {"train": _counts(train), "validation": _counts(validation),
                 "validation_images_scored": len(validation[::config.validation_stride]),
                 "validation_patients": list(VALIDATION_PATIENTS)},
        "epochs": epochs,
        "val_loss_identity_baseline": identity_baseline,
        "final": epochs[-1] if epochs else None,
        "seconds": round(time.time() - started, 1),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": config.threads,
                        "device": "cpu"},
        "weights": {"file": out.name, "bytes": out.stat().st_size, "sha256": _sha256(out),
                    "parameters": sum(p.numel() for p in encoder.parameters())},
        "decoder_weights": {"file": decoder_out.name, "bytes": decoder_out.stat().st_size,
                            "sha256": _sha256(decoder_out), "parameters": sum(p.numel() for p in decoder.parameters())},
    }
    _write_json(out.with_suffix(".json"), log)
    _log(verbose, f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json').name} "
                  f"in {log['seconds']:.0f} s")
    return log


# ------------------------------------------------------------------------------------- transfer


@dataclass
class TransferConfig:
    """The transfer experiment: the same fusion training from the pretrained encoder and from scratch."""

    data_root: Path = field(default_factory=default_data_root)
    encoder: Path = field(default_factory=lambda: fusion_encoder_weights_path(2))
    decoder: Path | None = field(default_factory=lambda: fusion_decoder_weights_path(2))
    out: Path | None = None
    steps: int = 300
    batch_size: int = 8
    crop: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 1
    eval_every: int = 20
    validation_stride: int = 3
    max_per_task: int | None = None
    freeze_encoder: bool = False


def _load_pairs(pairs) -> tuple[np.ndarray, np.ndarray]:
    a = np.stack([_to_uint8(load_grey(mri) / 255.0) for _, _, mri, _ in pairs])
    b = np.stack([_to_uint8(load_grey(other) / 255.0) for _, _, _, other in pairs])
    return a, b


def _pair_batch(a: np.ndarray, b: np.ndarray, batch_size: int, crop: int, rng: np.random.Generator):
    """The same random crops, rotations and flips of both sources."""
    chosen = rng.integers(0, len(a), size=batch_size)
    crops_a, crops_b = [], []
    for index in chosen:
        top, left = int(rng.integers(0, a.shape[1] - crop + 1)), int(rng.integers(0, a.shape[2] - crop + 1))
        turns, flip = int(rng.integers(0, 4)), rng.random() < 0.5
        for source, out in ((a, crops_a), (b, crops_b)):
            patch = np.rot90(source[int(index), top:top + crop, left:left + crop], turns)
            out.append(patch[:, ::-1] if flip else patch)
    as_tensor = lambda patches: torch.from_numpy(np.stack(patches).astype(np.float32) / 255.0)[:, None]  # noqa: E731
    return as_tensor(crops_a), as_tensor(crops_b)


def _fusion_validation(net, loss_fn, a: torch.Tensor, b: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        total = sum(float(loss_fn(net(a[i:i + 8], b[i:i + 8]), a[i:i + 8], b[i:i + 8])) * len(a[i:i + 8])
                    for i in range(0, len(a), 8))
    net.train()
    return total / len(a)


def _train_fusion(net, train: tuple[np.ndarray, np.ndarray], validation: tuple[torch.Tensor, torch.Tensor],
                  config: TransferConfig, verbose: bool, label: str) -> list[dict]:
    loss_fn = FusionLoss()
    if config.freeze_encoder:
        net.encoder.requires_grad_(False)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    curve = [{"step": 0, "val_loss": _fusion_validation(net, loss_fn, *validation)}]
    running, started = [], time.time()
    for step in range(1, config.steps + 1):
        a, b = _pair_batch(*train, config.batch_size, config.crop, rng)
        loss = loss_fn(net(a, b), a, b)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            curve.append({"step": step, "train_loss": float(np.mean(running)),
                          "val_loss": _fusion_validation(net, loss_fn, *validation)})
            running = []
            _log(verbose, f"{label:>10} step {step:4d}  train {curve[-1]['train_loss']:.4f}  "
                          f"val {curve[-1]['val_loss']:.4f}  {time.time() - started:.0f} s")
    return curve


def steps_to_reach(curve: Sequence[dict], target: float) -> int | None:
    """The first evaluated step whose validation loss is at most ``target`` (None if never)."""
    return next((row["step"] for row in curve if row["val_loss"] <= target), None)


def transfer_experiment(config: TransferConfig, verbose: bool = True) -> dict:
    """Train :class:`EncoderFusionNet` from the pretrained encoder and from random initialisation.

    Both runs share the seed (so every batch is identical) and the number of steps. With a decoder
    file (``config.decoder``, the default) the pretrained arm starts encoder *and* decoder from the
    pretraining (DenseFuse's transfer: the autoencoder's halves around a fusion layer) and both arms
    start their fusion layers as the average of the two sources' features; without one, only the
    encoder's start differs (random decoder and fusion layers, shared by the seed). With
    ``freeze_encoder`` the encoder is not trained (how :class:`ExtractFeatures` uses it). Reported:
    the validation-loss curve of each (held-out patients), its best and mean, and the steps each
    needs to reach the random-initialisation run's final validation loss and the losses 50 % and
    90 % of the way from its start to its end.
    """
    started = time.time()
    pairs = harvard_pairs(config.data_root, config.max_per_task)
    train_pairs, validation_pairs = split_by_patient(pairs, lambda pair: f"harvard:{pair[1]}")
    if not train_pairs or not validation_pairs:
        raise InputError(f"the transfer experiment needs Harvard pairs of training and validation patients under "
                         f"{config.data_root}/harvard (validation patients: {', '.join(VALIDATION_PATIENTS)})")
    validation_pairs = validation_pairs[::config.validation_stride]
    train = _load_pairs(train_pairs)
    validation = tuple(torch.from_numpy(x.astype(np.float32) / 255.0)[:, None] for x in _load_pairs(validation_pairs))
    pretrained = load_fusion_encoder(config.encoder)
    pretrained_decoder = load_fusion_decoder(config.decoder) if config.decoder is not None else None
    runs = {}
    for arm in ("pretrained", "random_init"):
        arm_started = time.time()
        with reproducible(config.seed, config.threads):
            net = EncoderFusionNet(2, pretrained.channels, average_start=pretrained_decoder is not None)
            if arm == "pretrained":
                net.encoder.load_state_dict(pretrained.state_dict())
                if pretrained_decoder is not None:
                    net.decoder.load_state_dict(pretrained_decoder.state_dict())
            curve = _train_fusion(net, train, validation, config, verbose, arm)
        losses = [row["val_loss"] for row in curve[1:]]
        runs[arm] = {"curve": curve, "final_val_loss": curve[-1]["val_loss"], "best_val_loss": min(losses),
                     "mean_val_loss": float(np.mean(losses)), "seconds": round(time.time() - arm_started, 1)}
    reference = runs["random_init"]["final_val_loss"]
    start = runs["random_init"]["curve"][0]["val_loss"]
    targets = {"random_init_final": reference,
               **{f"{fraction:.0%}_of_the_way": start - fraction * (start - reference) for fraction in (0.5, 0.9)}}
    result = {
        "what": "EncoderFusionNet on Harvard pairs, unsupervised fusion loss; pretrained encoder vs random init",
        "config": {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(config).items()
                   if key not in ("data_root", "out")},
        "encoder_sha256": _sha256(Path(config.encoder)),
        "decoder_sha256": _sha256(Path(config.decoder)) if config.decoder is not None else None,
        "pairs": {"train": len(train_pairs), "validation_scored": len(validation_pairs),
                  "train_patients": sorted({p[1] for p in train_pairs}, key=int),
                  "validation_patients": sorted({p[1] for p in validation_pairs}, key=int)},
        "runs": runs,
        "targets": targets,
        "steps_to_reach": {name: {arm: steps_to_reach(run["curve"], value) for arm, run in runs.items()}
                           for name, value in targets.items()},
        "seconds": round(time.time() - started, 1),
        "environment": {"torch": torch.__version__, "threads": config.threads, "device": "cpu"},
    }
    if config.out is not None:
        _write_json(Path(config.out), result)
    _log(verbose, json.dumps(result["steps_to_reach"], indent=1))
    return result


# ----------------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pretrain_encoder", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pre, defaults = commands.add_parser("pretrain", help="pretrain the 2D fusion encoder"), PretrainConfig()
    pre.add_argument("--data", type=Path, default=defaults.data_root, help="shared data folder (default: %(default)s)")
    pre.add_argument("--out", type=Path, default=defaults.out, help="weights file to write (default: the shipped one)")
    for name in ("epochs", "steps_per_epoch", "batch_size", "crop", "seed", "threads", "max_per_source"):
        pre.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    pre.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    pre.add_argument("--no-mridir", action="store_true", help="leave the MRI-DIR phantom out")
    transfer, defaults = commands.add_parser("transfer", help="pretrained vs random-init fusion training"), TransferConfig()
    transfer.add_argument("--data", type=Path, default=defaults.data_root)
    transfer.add_argument("--encoder", type=Path, default=defaults.encoder, help="encoder weights (default: the shipped ones)")
    transfer.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    transfer.add_argument("--freeze-encoder", action="store_true", help="train only the fusion layers and the decoder")
    transfer.add_argument("--encoder-only", action="store_true",
                          help="transfer the encoder alone (random decoder and fusion layers), as before the decoder was shipped")
    for name in ("steps", "batch_size", "crop", "seed", "threads", "eval_every", "max_per_task"):
        transfer.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """``pretrain`` or ``transfer`` with options; returns the log or result dictionary."""
    args = _parser().parse_args(argv)
    if args.command == "pretrain":
        config = PretrainConfig(data_root=args.data, out=args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                                batch_size=args.batch_size, crop=args.crop, seed=args.seed, threads=args.threads,
                                max_per_source=args.max_per_source, learning_rate=args.learning_rate,
                                include_mridir=not args.no_mridir)
        return pretrain_encoder(config)
    config = TransferConfig(data_root=args.data, encoder=args.encoder, out=args.out, steps=args.steps,
                            batch_size=args.batch_size, crop=args.crop, seed=args.seed, threads=args.threads,
                            eval_every=args.eval_every, max_per_task=args.max_per_task, freeze_encoder=args.freeze_encoder,
                            decoder=None if args.encoder_only else TransferConfig().decoder)
    return transfer_experiment(config)
