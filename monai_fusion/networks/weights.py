"""Loading backbone weights from a local file, with a one-line error when they do not fit.

:func:`load_backbone_weights` reads ``.pt``/``.pth`` files as written by ``torch.save`` (always
with ``weights_only=True``: no code from the file runs) and accepts the usual wrappings:

* a plain state dict, or one inside ``{"state_dict": ...}``, ``{"model": ...}``,
  ``{"model_state_dict": ...}``, ``{"network": ...}``, ``{"net": ...}`` (training checkpoints,
  MONAI's ``CheckpointSaver``; a MONAI bundle's ``models/model.pt`` is a plain state dict);
* wrapper prefixes on every key: ``module.`` (DataParallel, MedicalNet), ``_orig_mod.``
  (``torch.compile``), ``model.``; or the sub-network under one prefix (``encoder.``) when that
  covers the whole model;
* torchvision's DenseNet names (``denselayer1.norm1``), renamed to MONAI's (``denselayer1.layers.norm1``);
* classification heads (``fc``, ``classifier``, ``class_layers``, ``conv_seg``, ``head``):
  feature extractors have none, so these keys are skipped and listed in the report.

Anything else that does not fit (missing or unexpected keys, different shapes) raises
:class:`~monai_fusion.errors.InputError` saying how many keys, with examples, and which
architecture the file seems to hold. Nothing is ever downloaded.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from monai_fusion.errors import InputError

__all__ = ["LoadedWeights", "load_backbone_weights", "read_checkpoint", "extract_state_dict", "describe_state_dict"]

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "network", "net")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
HEAD_MODULES = ("fc", "classifier", "class_layers", "conv_seg", "head")
_EXAMPLES = 3
_TORCHVISION_DENSE_LAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?(\d)\.(.+)$")
_DENSENET_DEPTHS = {(6, 12, 24, 16): 121, (6, 12, 32, 32): 169, (6, 12, 48, 32): 201, (6, 12, 64, 48): 264}
_RESNET_DEPTHS = {(1, 1, 1, 1): 10, (2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152,
                  (3, 24, 36, 3): 200}
_VGG_DEPTHS = {8: 11, 10: 13, 13: 16, 16: 19}


@dataclass(frozen=True)
class LoadedWeights:
    """What :func:`load_backbone_weights` did: the file, how many tensors it loaded, which head keys it skipped."""

    path: Path
    loaded: int
    skipped_head_keys: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path):
    """The object stored in a local ``torch.save`` file, read with ``weights_only=True``."""
    text = str(path)
    if "://" in text:
        raise InputError(f"{text} is a URL; monai-fusion never downloads weights: download the file yourself and give its path")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's input problem
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path.name} cannot be read as PyTorch weights ({reason}); "
                         "save a state dict with torch.save(model.state_dict(), path)") from None


def extract_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """The tensor dictionary inside a checkpoint (see the module docstring for the wrappings)."""
    if isinstance(checkpoint, nn.Module):  # e.g. a TorchScript archive that torch.load handed over
        return dict(checkpoint.state_dict())
    for _ in range(3):
        if not isinstance(checkpoint, dict):
            break
        if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return {str(key): value for key, value in checkpoint.items()}
        inner = next((checkpoint[key] for key in CHECKPOINT_KEYS if isinstance(checkpoint.get(key), (dict, nn.Module))), None)
        if inner is None:
            break
        checkpoint = inner.state_dict() if isinstance(inner, nn.Module) else inner
    found = f"keys {sorted(map(str, checkpoint))[:5]}" if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
    raise InputError(f"no state dict found in the weights file (it holds {found}); "
                     f"expected a dict of tensors, possibly under one of {', '.join(CHECKPOINT_KEYS)}")


def _strip(state: dict, prefix: str) -> dict:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _adapt_keys(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes and rename torchvision DenseNet keys so ``state`` can match ``model_keys``."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state) and not any(key.startswith(prefix) for key in model_keys):
                state, stripped = _strip(state, prefix), True
    if model_keys and not model_keys & set(state):  # the model may be one part of the file's network (e.g. "encoder.")
        for prefix in sorted({key.split(".", 1)[0] + "." for key in state if "." in key}):
            part = _strip(state, prefix)
            if model_keys <= set(part):
                return part
    if any(".layers." in key for key in model_keys) and not any(".layers." in key for key in state):
        state = {_TORCHVISION_DENSE_LAYER.sub(r"\1.layers.\2\3.\4", key): value for key, value in state.items()}
    return state


def _is_head(key: str) -> bool:
    return key.split(".", 1)[0] in HEAD_MODULES


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """A guess at the architecture a state dict was written for, e.g. ``"ResNet-18 (2D, 3-channel input, ...)"``."""
    state = _adapt_keys(dict(state), set())
    keys = list(state)
    kernels = [value for value in state.values() if value.ndim >= 4]
    if not kernels:
        return f"an unrecognised network (no convolution kernels; first keys {', '.join(keys[:_EXAMPLES])})"
    geometry = f"{kernels[0].ndim - 2}D, {kernels[0].shape[1]}-channel input"
    if any("denseblock" in key for key in keys):
        layers = defaultdict(set)
        for key in keys:
            match = re.search(r"denseblock(\d+)\.denselayer(\d+)\.", key)
            if match:
                layers[int(match.group(1))].add(int(match.group(2)))
        counts = tuple(len(layers[block]) for block in sorted(layers))
        layout = "MONAI" if any(".layers." in key for key in keys) else "torchvision"
        name = f"DenseNet-{_DENSENET_DEPTHS[counts]}" if counts in _DENSENET_DEPTHS else f"a DenseNet with blocks {counts}"
        return f"{name} ({geometry}, {layout} layout)"
    if "layer1.0.conv1.weight" in state:
        blocks = defaultdict(set)
        for key in keys:
            match = re.match(r"layer(\d)\.(\d+)\.", key)
            if match:
                blocks[int(match.group(1))].add(int(match.group(2)))
        counts = tuple(len(blocks[layer]) for layer in sorted(blocks))
        bottleneck = any(re.match(r"layer\d\.\d+\.conv3\.", key) for key in keys)
        depth = 50 if counts == (3, 4, 6, 3) and bottleneck else _RESNET_DEPTHS.get(counts)
        name = f"ResNet-{depth}" if depth else f"a ResNet with blocks {counts}"
        shortcut = "projection shortcuts" if any(".downsample." in key for key in keys) else \
            "no shortcut weights (type-A shortcuts, as MedicalNet ResNet-18/34: use layout='medicalnet')"
        return f"{name} ({geometry}, {shortcut})"
    if all(re.match(r"features\.\d+\.", key) or _is_head(key) for key in keys):
        convs = sum(1 for key, value in state.items() if key.startswith("features.") and value.ndim >= 4)
        batch_norm = "_bn" if any("running_mean" in key for key in keys) else ""
        name = f"VGG-{_VGG_DEPTHS[convs]}{batch_norm}" if convs in _VGG_DEPTHS else f"a VGG-style stack of {convs} convolutions"
        return f"{name} ({geometry}, torchvision layout)"
    if keys[0].startswith("stages."):
        return f"the monai-fusion fusion encoder ({geometry}, {len({key.split('.')[1] for key in keys})} stages)"
    return f"an unrecognised network ({geometry}; first keys {', '.join(keys[:_EXAMPLES])})"


def _examples(items: list[str]) -> str:
    return ", ".join(items[:_EXAMPLES]) + (", ..." if len(items) > _EXAMPLES else "")


def load_backbone_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadedWeights:
    """Load a local weights file into a backbone (a :class:`FeatureExtractor` or any module).

    Args:
        model: the network; for a :class:`~monai_fusion.networks.extractor.FeatureExtractor` the
            weights go into its ``backbone``.
        path: a local ``.pt``/``.pth`` file (state dict or checkpoint; see the module docstring).
        strict: refuse files with missing or unexpected (non-head) keys; with ``strict=False``
            the keys that fit are loaded and the rest left as they are. Different shapes are
            always refused.

    Returns:
        :class:`LoadedWeights` with the number of tensors loaded and the head keys skipped.

    Raises:
        InputError: unreadable file, no state dict in it, or weights that do not fit (one line:
        counts and examples of missing, unexpected and misshapen keys, and the architecture the
        file seems to be for).

    Example:
        >>> import tempfile, torch
        >>> from monai_fusion.networks import build_backbone
        >>> source, target = build_backbone("vgg11"), build_backbone("vgg11")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     torch.save({"state_dict": source.backbone.state_dict()}, f"{folder}/vgg11.pth")
        ...     load_backbone_weights(target, f"{folder}/vgg11.pth").loaded
        16
    """
    target = getattr(model, "backbone", model)
    name = getattr(model, "name", type(target).__name__)
    expected = target.state_dict()
    state = _adapt_keys(extract_state_dict(read_checkpoint(path)), set(expected))
    heads = sorted(key for key in state if key not in expected and _is_head(key))
    unexpected = [key for key in state if key not in expected and not _is_head(key)]  # in file order
    missing = [key for key in expected if key not in state]  # in model order
    misshapen = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    if misshapen or not (set(expected) & set(state)) or (strict and (missing or unexpected)):
        problems = []
        if missing:
            problems.append(f"{len(missing)} keys missing (e.g. {_examples(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {_examples(unexpected)})")
        if misshapen:
            shapes = [f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}" for key in misshapen]
            problems.append(f"{len(misshapen)} of a different shape (e.g. {_examples(shapes)})")
        raise InputError(f"{Path(path).name} does not fit {name}: {'; '.join(problems)}; "
                         f"the file looks like {describe_state_dict(state)}")
    fitting = {key: value for key, value in state.items() if key in expected}
    target.load_state_dict(fitting, strict=False)
    return LoadedWeights(Path(path), len(fitting), heads)
