"""``LoadVolume`` / ``LoadVolumed``: MONAI's ``LoadImage(d)`` bound to our reader, with no fallback.

``LoadImage(reader=FusionImageReader())`` tries MONAI's own readers when ours refuses an input,
so a series we reject for a missing slice would still be loaded -- by ITK, with the gap
silently stretched. These transforms always call :class:`~monai_fusion.io.FusionImageReader`,
so a refusal is a refusal. Everything else (``image_only``, ``dtype``,
``ensure_channel_first``, metadata handling) is ``LoadImage``'s.

Example:
    >>> load = LoadVolumed(keys=["ct", "mr"], irregular_slices="error")  # doctest: +SKIP
    >>> data = load({"ct": "mridir/ct", "mr": "mridir/mr"})  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from monai.transforms import LoadImage, LoadImaged

from monai_fusion.io.monai_reader import FusionImageReader

__all__ = ["LoadVolume", "LoadVolumed", "LoadVolumeD", "LoadVolumeDict"]


class LoadVolume(LoadImage):
    """Load one image/series as a channel-first ``MetaTensor`` with :func:`~monai_fusion.io.load_image`.

    Args:
        image_only: return only the image (default) or ``(image, metadata)``.
        dtype: output dtype (float32 by default, as ``load_image`` returns).
        load_kwargs: options of :func:`~monai_fusion.io.load_image` (``modality``,
            ``series_uid``, ``irregular_slices``, ``nonfinite``, ``suv``...).
    """

    def __init__(self, image_only: bool = True, dtype=np.float32, **load_kwargs):
        self.fusion_reader = FusionImageReader(**load_kwargs)
        super().__init__(reader=self.fusion_reader, image_only=image_only, dtype=dtype)

    def __call__(self, filename, reader=None):
        return super().__call__(filename, reader=self.fusion_reader)


class LoadVolumed(LoadImaged):
    """Dictionary twin of :class:`LoadVolume`: loads every key with the same reader options."""

    def __init__(self, keys, image_only: bool = True, dtype=np.float32, allow_missing_keys: bool = False, **load_kwargs):
        self.fusion_reader = FusionImageReader(**load_kwargs)
        super().__init__(keys, reader=self.fusion_reader, image_only=image_only, dtype=dtype,
                         allow_missing_keys=allow_missing_keys)

    def __call__(self, data, reader=None):
        return super().__call__(data, reader=self.fusion_reader)


LoadVolumeD = LoadVolumeDict = LoadVolumed
