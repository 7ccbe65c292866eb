"""Montages of every augmentation on a real Harvard CT-MRI pair and on slices of the 3D templates.

Run from the repository root: python make_pictures.py OUT_DIR. Needs ../shared/data; numpy + Pillow only.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from monai_fusion.io.reader import load_image
from monai_fusion.transforms.functional import intensity as F
from monai_fusion.transforms.functional.patches import foreground_map
from monai_fusion.transforms.intensity import (
    EqualizeAdaptiveHistogramd, EqualizeHistogramd, HistogramMatchd, NormalizeModalityd, RandGammaContrastd,
    RandModalityNoised, RandMRBiasFieldd,
)
from monai_fusion.transforms.patches import InformationMapd, RandInformativePatchd
from monai_fusion.transforms.spatial import (
    RandPairedAffined, RandPairedElasticd, RandPairedFlipd, RandPairedRotate90d, RandPairedRotated,
)

DATA = Path(__file__).resolve().parent.parent / "shared" / "data" if len(sys.argv) < 3 else Path(sys.argv[2])
TILE = 150
LABEL_WIDTH = 190
GAP = 3
BOX_COLOURS = [(255, 80, 80), (80, 220, 80), (90, 150, 255), (255, 210, 60)]


def seeded(transform, seed=3):
    transform.set_random_state(seed)
    return transform


def display(image, slice_index=None, low=None, high=None, flip_j=False) -> np.ndarray:
    """2D display array (rows, cols) in 0..255 from a (C, I, J) image or a (C, I, J, K) volume at slice K."""
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)[0]
    if array.ndim == 3:
        array = array[:, :, slice_index][:, ::-1]  # RAS volume: anterior at the top
    elif flip_j:
        array = array[:, ::-1]
    array = array.T
    low = float(array.min()) if low is None else low
    high = float(array.max()) if high is None else high
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 6) -> np.ndarray:
    rows, cols = a.shape
    r, c = np.meshgrid(np.arange(rows) * tiles // rows, np.arange(cols) * tiles // cols, indexing="ij")
    return np.where((r + c) % 2 == 0, a, b)


def tile(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array).convert("RGB")
    scale = TILE / max(image.size)
    return image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))), Image.BILINEAR)


def montage(rows: list[tuple[str, list]], header: list[str], title: str) -> Image.Image:
    columns = len(header)
    width = LABEL_WIDTH + columns * (TILE + GAP)
    height = 34 + 18 + len(rows) * (TILE + GAP)
    sheet = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill=(255, 255, 255))
    for j, name in enumerate(header):
        draw.text((LABEL_WIDTH + j * (TILE + GAP) + 4, 34), name, fill=(230, 230, 230))
    for i, (label, tiles) in enumerate(rows):
        top = 52 + i * (TILE + GAP)
        for n, line in enumerate(label.split("\n")):
            draw.text((6, top + 6 + 12 * n), line, fill=(255, 255, 255))
        for j, item in enumerate(tiles):
            if item is None:
                continue
            picture = item if isinstance(item, Image.Image) else tile(item)
            sheet.paste(picture, (LABEL_WIDTH + j * (TILE + GAP) + (TILE - picture.size[0]) // 2,
                                  top + (TILE - picture.size[1]) // 2))
    return sheet


def boxes_on(array: np.ndarray, boxes) -> Image.Image:
    picture = tile(array)
    scale = picture.size[0] / array.shape[1]
    draw = ImageDraw.Draw(picture)
    for colour, (r0, c0, r1, c1) in zip(BOX_COLOURS, boxes):
        draw.rectangle([c0 * scale, r0 * scale, c1 * scale - 1, r1 * scale - 1], outline=colour, width=2)
    return picture


def grid_of(patches: list[np.ndarray]) -> Image.Image:
    half = TILE // 2 - 1
    sheet = Image.new("RGB", (TILE, TILE), (20, 20, 20))
    for n, patch in enumerate(patches[:4]):
        picture = Image.fromarray(patch).convert("RGB").resize((half, half), Image.BILINEAR)
        ImageDraw.Draw(picture).rectangle([0, 0, half - 1, half - 1], outline=BOX_COLOURS[n], width=2)
        sheet.paste(picture, ((n % 2) * (half + 2), (n // 2) * (half + 2)))
    return sheet


def quantise(sheet: Image.Image) -> Image.Image:
    """Palette PNG: 240 greys plus the box and text colours keep the files small."""
    palette = [v for g in np.linspace(0, 255, 240).astype(int) for v in (g, g, g)]
    for colour in BOX_COLOURS + [(230, 230, 230), (20, 20, 20)]:
        palette += list(colour)
    palette += [0] * (768 - len(palette))
    reference = Image.new("P", (1, 1))
    reference.putpalette(palette)
    return sheet.quantize(palette=reference, dither=Image.Dither.NONE)


# --------------------------------------------------------------------------- Harvard CT-MRI pair (2D)


def harvard(out: Path) -> None:
    name = "2012.png"
    mri = load_image(DATA / "harvard" / "ct-mri" / "mri" / name, modality="MR")
    ct = load_image(DATA / "harvard" / "ct-mri" / "ct" / name, modality="CT")
    ct.meta["units"] = "display"  # the atlas PNGs are 8-bit display images, not HU
    other_mri = load_image(DATA / "harvard" / "spect-mri" / "mri" / sorted((DATA / "harvard" / "spect-mri" / "mri").iterdir())[40].name,
                           modality="MR")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the documented percentile fallback for the display-unit CT
        norm = NormalizeModalityd(("mri", "ct"))({"mri": mri, "ct": ct})
    keys = ("mri", "ct")

    def pair(d):
        a, b = display(d["mri"], low=0, high=1), display(d["ct"], low=0, high=1)
        return [a, b, checkerboard(a, b)]

    rows = [("original\n(min-max display)", [display(mri), display(ct), checkerboard(display(mri), display(ct))]),
            ("NormalizeModalityd\nMR: percentiles 0.5-99.5\nCT PNG (not HU):\n percentile fallback", pair(norm))]
    head = {**norm, "head": foreground_map(norm["mri"])[None]}
    rows.append(("EqualizeHistogramd\n(global, per channel,\nhistogram of the head:\nmask_key)",
                 pair(EqualizeHistogramd(keys, mask_key="head")(head))))
    rows.append(("EqualizeAdaptive-\nHistogramd (CLAHE)\nclip_limit 0.01", pair(EqualizeAdaptiveHistogramd(keys)(norm))))
    rows.append(("RandGammaContrastd\njoint: gamma 0.6, one\ndraw for both keys",
                 pair(seeded(RandGammaContrastd(keys, prob=1.0, gamma_range=(0.6, 0.6), contrast_range=(1.2, 1.2), joint=True))(norm))))
    matched = HistogramMatchd("mri", reference_key="ref")({**norm, "ref": NormalizeModalityd("ref", modalities="MR")({"ref": other_mri})["ref"]})
    rows.append(("HistogramMatchd\nMRI -> another\npatient's MRI", pair(matched)))
    rows.append(("RandMRBiasFieldd\n(MR only; CT untouched)\ncoeff +-0.3",
                 pair(seeded(RandMRBiasFieldd(keys, prob=1.0, coeff_range=(-0.3, 0.3), modalities={"mri": "MR", "ct": "CT"}), 5)(norm))))
    rows.append(("RandModalityNoised\nMR Rician 5 %,\nCT Gaussian 10 (PNG\nunits, as 'HU')",
                 pair(seeded(RandModalityNoised(keys, prob=1.0, mr_std=(0.05, 0.05), ct_std=(10, 10), joint=True))(norm))))
    rows.append(("RandPairedFlipd\n(left-right)", pair(seeded(RandPairedFlipd(keys, prob=1.0))(norm))))
    rows.append(("RandPairedRotate90d\n(one quarter turn)", pair(seeded(RandPairedRotate90d(keys, prob=1.0, max_k=1), 1)(norm))))
    rows.append(("RandPairedRotated\n20-25 degrees,\nborder padding", pair(seeded(RandPairedRotated(keys, prob=1.0, range_x=(0.35, 0.44)), 2)(norm))))
    rows.append(("RandPairedAffined\nrotate, scale +-10 %,\nshift +-5 px", pair(seeded(RandPairedAffined(keys, prob=1.0), 4)(norm))))
    rows.append(("RandPairedElasticd\n2D, spacing 32,\nmagnitude 3-5 (strong;\ndefault 1-2)",
                 pair(seeded(RandPairedElasticd(keys, prob=1.0, magnitude_range_2d=(3, 5)), 6)(norm))))
    sampler = seeded(RandInformativePatchd(keys, spatial_size=(64, 64), num_samples=4, weighting="entropy"), 8)
    patches = sampler(norm)
    boxes = []
    for sample in patches:
        start = torch.linalg.solve(norm["mri"].affine, sample["mri"].affine)[:2, 3].round().int().tolist()  # (i, j) start
        boxes.append((start[1], start[0], start[1] + 64, start[0] + 64))  # display rows = j, cols = i
    info = InformationMapd(keys, method="entropy")(norm)["information"]
    rows.append(("RandInformativePatchd\n4 paired 64x64 patches\nweighted by entropy\n(3rd: entropy map)",
                 [boxes_on(display(norm["mri"], low=0, high=1), boxes), boxes_on(display(norm["ct"], low=0, high=1), boxes),
                  display(info)]))
    rows.append(("... the patches\n(MRI | CT), same\nregion in both keys",
                 [grid_of([display(s["mri"], low=0, high=1) for s in patches]),
                  grid_of([display(s["ct"], low=0, high=1) for s in patches]), None]))
    sheet = montage(rows, ["MRI", "CT", "checkerboard MRI/CT"],
                    f"Harvard atlas CT-MRI pair {name}: each augmentation on both keys (one draw)")
    quantise(sheet).save(out / "augmentation_harvard.png", optimize=True)


# --------------------------------------------------------------------------- 3D templates (T1, CT, PET)


def template(out: Path) -> None:
    k = 50
    t1 = load_image(DATA / "templates" / "T1.nii", modality="MR")
    ct = load_image(DATA / "templates" / "CT.nii", modality="CT")
    ct = F.cormack_to_hounsfield(ct)  # the CT template is stored in Cormack units
    ct.meta["units"] = "HU"
    pet = load_image(DATA / "templates" / "PET.nii", modality="PT")
    t2 = load_image(DATA / "templates" / "T2.nii", modality="MR")
    keys = ("t1", "ct", "pet")
    data = {"t1": t1, "ct": ct, "pet": pet}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the template PET is not in SUV: documented percentile fallback
        norm = NormalizeModalityd(keys)(data)
        windows = {w: NormalizeModalityd("ct", ct_window=w)({"ct": ct})["ct"] for w in ("subdural", "bone", "soft_tissue")}

    def triple(d, slice_index=k):
        a = display(d["t1"], slice_index, 0, 1)
        return [a, display(d["ct"], slice_index, 0, 1), display(d["pet"], slice_index, 0, 1),
                checkerboard(a, display(d["ct"], slice_index, 0, 1))]

    raw = [display(t1, k), display(ct, k, -1024, 1000), display(pet, k)]
    rows = [("original (T1, CT in HU\n-1024..1000, PET)", raw + [checkerboard(raw[0], raw[1])]),
            ("NormalizeModalityd\nMR pct 0.5-99.5, CT brain\nW80/L40, PET (not SUV):\n percentile fallback", triple(norm))]
    for window, label in (("subdural", "W200/L80"), ("bone", "W2800/L600"), ("soft_tissue", "W400/L40")):
        rows.append((f"CT window {window}\n{label}", [None, display(windows[window], k, 0, 1), None, None]))
    head = {**norm, "head": foreground_map(norm["t1"])[None]}
    rows.append(("EqualizeHistogramd\n(3D, per channel,\nhead mask)", triple(EqualizeHistogramd(keys, mask_key="head")(head))))
    rows.append(("EqualizeAdaptive-\nHistogramd: 3D CLAHE\n(tiles of 1/8 volume)", triple(EqualizeAdaptiveHistogramd(keys)(norm))))
    rows.append(("RandGammaContrastd\nindependent draws\n(joint=False)",
                 triple(seeded(RandGammaContrastd(keys, prob=1.0, gamma_range=(0.5, 2.0), joint=False), 1)(norm))))
    t2n = NormalizeModalityd("t2", modalities="MR")({"t2": t2})["t2"]
    rows.append(("HistogramMatchd\nT1 -> T2 template\nhistogram", triple(HistogramMatchd("t1", reference=t2n)(norm))))
    rows.append(("RandMRBiasFieldd\n3D field, MR only\ncoeff +-0.15",
                 triple(seeded(RandMRBiasFieldd(keys, prob=1.0, coeff_range=(-0.15, 0.15)), 5)(norm))))
    rows.append(("RandModalityNoised\nRician 5 % | 10 HU |\nPoisson 100 counts",
                 triple(seeded(RandModalityNoised(keys, prob=1.0, mr_std=(0.05, 0.05), ct_std=(10, 10),
                                                  counts_range=(100, 100)))(norm))))
    rows.append(("RandPairedFlipd\n(left-right, axis 0)", triple(seeded(RandPairedFlipd(keys, prob=1.0))(norm))))
    rows.append(("RandPairedRotate90d\n(axial plane, one\nquarter turn)", triple(seeded(RandPairedRotate90d(keys, prob=1.0, max_k=1), 1)(norm))))
    rows.append(("RandPairedRotated\n20-25 deg about z", triple(seeded(RandPairedRotated(keys, prob=1.0, range_x=0, range_y=0,
                                                                                        range_z=(0.35, 0.44)), 2)(norm))))
    rows.append(("RandPairedAffined\n3D rotate/scale/shift", triple(seeded(RandPairedAffined(keys, prob=1.0), 4)(norm))))
    rows.append(("RandPairedElasticd\n3D, sigma 5-7,\nmagnitude 400-500\n(strong; default 100-200)",
                 triple(seeded(RandPairedElasticd(keys, prob=1.0, magnitude_range_3d=(400, 500)), 6)(norm))))
    sampler = seeded(RandInformativePatchd(keys, spatial_size=(48, 48), num_samples=4, weighting="gradient", slice_axis=2), 9)
    patches = sampler(norm)
    first = patches[0]["t1"]
    start = torch.linalg.solve(norm["t1"].affine, first.affine)[:3, 3].round().int().tolist()  # (i, j, k) start
    rows_j = 109 - start[1] - 48  # display rows run along -j (anterior at the top)
    box = [(rows_j, start[0], rows_j + 48, start[0] + 48)]
    information = InformationMapd(keys, method="gradient")(norm)["information"]
    rows.append((f"RandInformativePatchd\n2D 48x48 slices of 3D\n(slice_axis=2), gradient\nweighted: patch 1 at k={first.meta['slice_index']}",
                 [boxes_on(display(norm[key], first.meta["slice_index"], 0, 1), box) for key in keys]
                 + [display(information, first.meta["slice_index"])]))
    rows.append(("... all 4 patches, the\nsame region in every\nmodality (4th: gradient\ninformation at k)",
                 [grid_of([display(s[key], None, 0, 1, flip_j=True) for s in patches]) for key in keys] + [None]))
    sheet = montage(rows, ["T1 (MR)", "CT (HU)", "PET", "checkerboard T1/CT"],
                    f"SPM/Rorden 3D templates, transforms applied to the volumes, axial slice k={k}")
    quantise(sheet).save(out / "augmentation_template.png", optimize=True)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    harvard(target)
    template(target)
