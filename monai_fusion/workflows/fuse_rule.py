"""``monai-fusion fuse-rule``: fuse two co-registered images with a classical rule.

Inputs are any pair :func:`~monai_fusion.io.load_image` reads (PNG pairs, NIfTI/NRRD volumes,
DICOM series) that already share one grid: same shape and, for volumes, affines equal to 1e-4
(registration arrives with its own command; until then resample first).

Intensities. Rules do not rescale, so this command puts both sources on 0..1 first:
8-bit inputs (PNG, RGB) are divided by 255; anything else is scaled robustly from its 0.5th to
its 99.5th percentile (``--normalize percentile``, the default), or by min-max, or left as is
(``none``). The fused image is clipped to 0..1 unless ``--no-clip`` (pyramid, wavelet and
guided-filter rules overshoot near strong edges), then written on 0..255 for PNG and on 0..1
for NIfTI/NRRD.

Colour. When one source is RGB (pseudo-colour PET/SPECT) and the other grey, the grey image is
fused with the colour image's luma (BT.601 YCbCr) and the colour image's chroma is reattached:
the output is RGB. The weight map always gives the weight of the first source (``A``) per voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_fusion.errors import InputError, OutputError
from monai_fusion.io import load_image, write_nifti, write_nrrd, write_png, write_rgb_nifti, write_rgb_nrrd
from monai_fusion.rules import check_rule, fuse, rgb_to_ycbcr, ycbcr_to_rgb
from monai_fusion.transforms.fusion import check_same_grid

__all__ = ["fuse_rule_files", "normalise_intensity", "RuleFusionOutput", "NORMALISATIONS"]

NORMALISATIONS = ("percentile", "minmax", "none")
_GREY_WRITERS = {".png": write_png, ".nii": write_nifti, ".nii.gz": write_nifti, ".nrrd": write_nrrd}
_RGB_WRITERS = {".png": write_png, ".nii": write_rgb_nifti, ".nii.gz": write_rgb_nifti, ".nrrd": write_rgb_nrrd}


@dataclass
class RuleFusionOutput:
    """What :func:`fuse_rule_files` wrote, for the command's report."""

    fused: Path
    weight: Path | None
    method: str
    colour: bool
    shape: tuple[int, ...]
    weight_of_a: float


def _is_colour(image: MetaTensor) -> bool:
    return bool(image.meta.get("is_rgb")) and image.shape[0] == 3


def normalise_intensity(image: MetaTensor, how: str) -> torch.Tensor:
    """A float64 copy on 0..1 (see the module docstring); 8-bit data is divided by 255."""
    data = image.as_tensor().double()
    if image.dtype == torch.uint8 or image.meta.get("source_format") in ("png", "jpg", "jpeg", "bmp"):
        return data / 255.0
    if how == "none":
        return data
    if how == "minmax":
        low, high = float(data.min()), float(data.max())
    elif how == "percentile":
        low, high = (float(v) for v in np.percentile(data.numpy(), [0.5, 99.5]))
    else:
        raise InputError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALISATIONS)}")
    if high <= low:
        raise InputError(f"{image.meta.get('filename_or_obj', 'an input')} is constant; there is nothing to fuse")
    return ((data - low) / (high - low)).clamp(0.0, 1.0)


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _writer(path: Path, colour: bool):
    writers = _RGB_WRITERS if colour else _GREY_WRITERS
    suffix = _suffix(path)
    if suffix not in writers:
        raise OutputError(f"{path}: write .png, .nii.gz or .nrrd")
    return writers[suffix], suffix


def _as_output(values: torch.Tensor, reference: MetaTensor, suffix: str) -> MetaTensor:
    scaled = values * 255.0 if suffix == ".png" else values
    return MetaTensor(scaled.float(), meta={k: v for k, v in reference.meta.items() if k != "dicom_files"})


def fuse_rule_files(
    a_path: str | Path,
    b_path: str | Path,
    out_path: str | Path,
    method: str = "laplacian_pyramid",
    weight_path: str | Path | None = None,
    normalize: str = "percentile",
    clip: bool = True,
    **rule_kwargs,
) -> RuleFusionOutput:
    """Read two images, fuse them with ``method``, write the fused image (and the weight map)."""
    check_rule(method, rule_kwargs)
    if normalize not in NORMALISATIONS:
        raise InputError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALISATIONS)}")
    a, b = load_image(a_path, require_3d=False), load_image(b_path, require_3d=False)
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        raise InputError(f"the images have different sizes {tuple(a.shape[1:])} and {tuple(b.shape[1:])}; "
                         "register and resample one onto the other's grid first")
    check_same_grid(a, b)
    colour_a, colour_b = _is_colour(a), _is_colour(b)
    if colour_a and colour_b:
        raise InputError("both images are colour; fuse-rule takes a grey image and a grey or colour one")
    out_path, weight_path = Path(out_path), Path(weight_path) if weight_path else None
    write_fused, suffix = _writer(out_path, colour_a or colour_b)
    write_weight, weight_suffix = _writer(weight_path, False) if weight_path else (None, None)
    grid = a if not colour_a else b
    a01, b01 = normalise_intensity(a, normalize), normalise_intensity(b, normalize)
    if colour_a or colour_b:
        grey, colour = (b01, a01) if colour_a else (a01, b01)
        ycbcr = rgb_to_ycbcr(colour, max_value=1)
        result = fuse(grey, ycbcr[0:1], method=method, **rule_kwargs) if not colour_a else fuse(ycbcr[0:1], grey, method=method, **rule_kwargs)
        ycbcr[0:1] = result.fused.clamp(0, 1) if clip else result.fused
        fused = ycbcr_to_rgb(ycbcr, max_value=1, clip=True)
    else:
        result = fuse(a01, b01, method=method, **rule_kwargs)
        fused = result.fused.clamp(0, 1) if clip else result.fused
    write_fused(_as_output(fused, grid, suffix), out_path)
    if weight_path:
        write_weight(_as_output(result.weight, grid, weight_suffix), weight_path)
    return RuleFusionOutput(out_path, weight_path, method, colour_a or colour_b, tuple(fused.shape),
                            float(result.weight.double().mean()))
