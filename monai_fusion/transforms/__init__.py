"""MONAI transforms (array and dictionary twins) built on the library layers."""

from monai_fusion.transforms.colour import (
    FuseColour,
    FuseColourd,
    FuseColourD,
    FuseColourDict,
    RGBToYCbCr,
    RGBToYCbCrd,
    RGBToYCbCrD,
    RGBToYCbCrDict,
    YCbCrToRGB,
    YCbCrToRGBd,
    YCbCrToRGBD,
    YCbCrToRGBDict,
)
from monai_fusion.transforms.fusion import FuseImages, FuseImagesd, FuseImagesD, FuseImagesDict
from monai_fusion.transforms.load import LoadVolume, LoadVolumed, LoadVolumeD, LoadVolumeDict

__all__ = [
    "FuseColour",
    "FuseColourd",
    "FuseColourD",
    "FuseColourDict",
    "FuseImages",
    "FuseImagesd",
    "FuseImagesD",
    "FuseImagesDict",
    "LoadVolume",
    "LoadVolumed",
    "LoadVolumeD",
    "LoadVolumeDict",
    "RGBToYCbCr",
    "RGBToYCbCrd",
    "RGBToYCbCrD",
    "RGBToYCbCrDict",
    "YCbCrToRGB",
    "YCbCrToRGBd",
    "YCbCrToRGBD",
    "YCbCrToRGBDict",
]
