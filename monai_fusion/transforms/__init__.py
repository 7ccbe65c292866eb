"""MONAI transforms (array and dictionary twins) built on the library layers."""

from monai_fusion.transforms.load import LoadVolume, LoadVolumed, LoadVolumeD, LoadVolumeDict

__all__ = ["LoadVolume", "LoadVolumed", "LoadVolumeD", "LoadVolumeDict"]
