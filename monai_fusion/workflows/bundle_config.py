"""Small helpers the bundle configs call in ``$`` expressions (the bundles themselves hold no Python).

* :func:`fragment_transforms` instantiates sections of a shared transform fragment
  (``transforms/<task>.json``) from a path the config computes from ``bundle_root``: a ``%`` macro
  would resolve its path against the working directory instead.
* :func:`input_spatial_dims` tells 2D images (PNG, JPEG...) from volumes, so an inference config can
  pick its inferer, preprocessing and writer from its datalist.
* :func:`latest_checkpoint` finds the checkpoint a training run resumes from.

Example:
    >>> from monai_fusion.workflows.bundle_config import input_spatial_dims
    >>> input_spatial_dims([{"mri": "a/mri/1001.png", "ct": "a/ct/1001.png"}])
    2
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from monai.bundle import ConfigParser

from monai_fusion.errors import InputError

__all__ = ["IMAGE_2D_SUFFIXES", "fragment_transforms", "input_spatial_dims", "latest_checkpoint"]

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def fragment_transforms(path, sections: str | Sequence[str], overrides: Mapping[str, object] | None = None) -> list:
    """The instantiated transforms of ``sections`` (joined in order) of the fragment file at ``path``.

    Args:
        path: a ``transforms/<task>.json`` (or ``.yaml``) fragment.
        sections: one section name or several (e.g. ``["atlas_2d", "stack"]``).
        overrides: ``{"section#index#argument": value}`` applied before instantiation, as on the
            MONAI bundle command line (e.g. ``{"patches_atlas#0#spatial_size": [96, 96]}``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"transform fragment {path} not found (set 'fragment_file' in the bundle config)")
    parser = ConfigParser()
    parser.read_config(path)
    for section in [sections] if isinstance(sections, str) else sections:
        if section not in parser:
            raise InputError(f"transform fragment {path.name} has no section {section!r}")
    for key, value in (overrides or {}).items():
        parser[key] = value
    transforms = []
    for section in [sections] if isinstance(sections, str) else sections:
        transforms += list(parser.get_parsed_content(section))
    return transforms


def _first_path(item, key: str) -> str:
    if not isinstance(item, Mapping) or key not in item:
        raise InputError(f"datalist items must be mappings with a {key!r} entry, got {item!r}")
    value = item[key]
    return str(value[0] if isinstance(value, (list, tuple)) and value else value)


def input_spatial_dims(datalist: Sequence[Mapping], key: str = "mri") -> int:
    """2 when the first item's ``key`` is a 2D image file (:data:`IMAGE_2D_SUFFIXES`), else 3.

    Every item must agree: a datalist that mixes 2D images and volumes raises :class:`InputError`.
    """
    if not datalist:
        raise InputError("the datalist is empty: nothing to run on")
    dims = {2 if _first_path(item, key).lower().endswith(IMAGE_2D_SUFFIXES) else 3 for item in datalist}
    if len(dims) > 1:
        raise InputError(f"the datalist mixes 2D images and volumes in {key!r}; run them as two datalists")
    return dims.pop()


def latest_checkpoint(folder, prefix: str = "checkpoint") -> str | None:
    """The ``<prefix>_*epoch=N.pt`` file with the largest N in ``folder``, or None (no folder, no checkpoint)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob(f"{prefix}*.pt"):
        match = re.search(r"epoch=(\d+)", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return str(max(found)[1]) if found else None
