"""Montage of every fusion rule on one Harvard MRI-PET pair and one CT-MRI pair (numpy + Pillow only)."""
import sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from monai_fusion.rules import RULES, fuse, rgb_to_ycbcr
from monai_fusion.transforms import FuseColour

DATA = Path("/work/shared/data/harvard")
TILE, LABEL, GAP, TITLE = int(sys.argv[2]) if len(sys.argv) > 2 else 256, 20, 4, 26
font = ImageFont.load_default(size=14)
title_font = ImageFont.load_default(size=17)


def grey_tile(x):
    x = np.asarray(x, np.float64).squeeze()
    return Image.fromarray(np.uint8(np.clip(x, 0, 1) * 255 + 0.5)).convert("RGB")


def colour_tile(x):
    return Image.fromarray(np.moveaxis(np.asarray(x), 0, -1).astype(np.uint8))


def read(task, folder, name):
    image = Image.open(DATA / task / folder / name)
    return np.array(image.convert("RGB" if image.mode == "RGB" else "L"))


def legend_tile():
    tile = Image.new("RGB", (256, 256), (40, 40, 40))
    draw = ImageDraw.Draw(tile)
    for i, (value, text) in enumerate([(255, "1: detail from A (MRI)"), (128, "0.5: no detail in either"), (0, "0: detail from B")]):
        y = 40 + 60 * i
        draw.rectangle([16, y, 56, y + 40], fill=(value,) * 3, outline=(200, 200, 200))
        draw.text((66, y + 12), text, fill=(255, 255, 255), font=font)
    draw.text((16, 10), "Laplacian weight map:", fill=(255, 255, 255), font=font)
    draw.text((16, 225), "finest level, after CV", fill=(200, 200, 200), font=font)
    return tile


def pair_tiles(task, name):
    other_folder = {"pet-mri": "pet", "ct-mri": "ct"}[task]
    mri = read(task, "mri", name)
    other = read(task, other_folder, name)
    tiles = [("A: MRI", grey_tile(mri / 255.0))]
    if other.ndim == 3:  # pseudo-colour PET: colour fusion on the luma
        colour = np.moveaxis(other, -1, 0)
        tiles.append(("B: PET (pseudo-colour)", colour_tile(colour)))
        for method in RULES:
            tiles.append((method, colour_tile(FuseColour(method)(mri[None], colour))))
        weight = fuse(mri[None] / 255.0, rgb_to_ycbcr(colour)[:1] / 255.0, "laplacian_pyramid").weight
    else:
        tiles.append(("B: CT", grey_tile(other / 255.0)))
        a, b = torch.from_numpy(mri[None] / 255.0), torch.from_numpy(other[None] / 255.0)
        for method in RULES:
            tiles.append((method + ("  (clipped)" if method in ("laplacian_pyramid", "dwt", "guided_filter") else ""),
                          grey_tile(fuse(a, b, method).fused)))
        weight = fuse(a, b, "laplacian_pyramid").weight
    tiles.append(("laplacian_pyramid weight of A", grey_tile(weight)))
    tiles.append(("", legend_tile()))
    return tiles


def block(title, tiles, columns=6):
    rows = -(-len(tiles) // columns)
    width = columns * TILE + (columns + 1) * GAP
    height = TITLE + rows * (TILE + LABEL + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP + 2, 4), title, fill=(255, 255, 160), font=title_font)
    for index, (label, tile) in enumerate(tiles):
        r, c = divmod(index, columns)
        x, y = GAP + c * (TILE + GAP), TITLE + r * (TILE + LABEL + GAP)
        draw.text((x + 2, y + 2), label, fill=(255, 255, 255), font=font)
        if tile.size != (TILE, TILE):
            tile = tile.resize((TILE, TILE), Image.Resampling.LANCZOS)
        canvas.paste(tile, (x, y + LABEL))
    return canvas


top = block("MRI-PET, Harvard 25034: colour fusion (rule applied to MRI and PET luma, PET chroma kept; YCbCr BT.601)",
            pair_tiles("pet-mri", "25034.png"))
bottom = block("CT-MRI, Harvard 20010: A = MRI, B = CT (grey-level fusion; values outside 0..1 clipped for display)",
               pair_tiles("ct-mri", "20010.png"))
montage = Image.new("RGB", (top.width, top.height + bottom.height), (20, 20, 20))
montage.paste(top, (0, 0))
montage.paste(bottom, (0, top.height))
out = Path(sys.argv[1])
out.parent.mkdir(parents=True, exist_ok=True)


def palette_image(image, greys=64):
    """256-colour PNG: ``greys`` exact grey levels for the grey tiles + an octree palette of the colour pixels."""
    rgb = np.asarray(image).astype(int)
    colourful = (rgb.max(-1) - rgb.min(-1)) > 6
    colours = Image.fromarray(rgb[colourful].astype(np.uint8)[None]).quantize(256 - greys, method=Image.Quantize.FASTOCTREE)
    levels = np.round(np.linspace(0, 255, greys)).astype(int)
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(v) for g in levels for v in (g, g, g)] + colours.getpalette()[: 3 * (256 - greys)])
    return image.quantize(palette=palette, dither=Image.Dither.NONE)


montage.save(out.with_suffix(".lossless.png"), optimize=True)
palette_image(montage).save(out, optimize=True)
print(out, montage.size, out.stat().st_size // 1024, "KiB")
