"""Reading elastix ``TransformParameters.N.txt`` files (linear transforms) without itk-elastix.

elastix writes its result as a parameter file: ``(Transform "EulerTransform")``,
``(TransformParameters ...)``, ``(CenterOfRotationPoint ...)``. elastix builds these transforms
on ITK's own classes (Euler = ``Euler3DTransform``/``Euler2DTransform``, similarity =
``Similarity*DTransform``, affine = ``AffineTransform``), with the same parameter order and the same
direction (fixed -> moving, LPS), so the file maps onto a SimpleITK transform and then through
:func:`~monai_fusion.registration.itk_io.transform_from_sitk`.

A file chaining an initial transform (``InitialTransformParametersFileName``) is read
recursively and composed as elastix does by default (``HowToCombineTransforms "Compose"``): the
initial transform is applied to the fixed point first, then this file's transform.
"""

from __future__ import annotations

import re
from pathlib import Path

from monai_fusion.errors import InputError
from monai_fusion.registration.spatial import AffineTransform, SpatialTransform

__all__ = ["parse_elastix_parameters", "read_elastix_transform"]

_ENTRY = re.compile(r"^\s*\((\w+)\s+(.*)\)\s*$")


def parse_elastix_parameters(text: str) -> dict[str, list]:
    """``{key: [values]}`` of an elastix parameter file; numbers as floats, strings unquoted."""
    entries: dict[str, list] = {}
    for line in text.splitlines():
        line = line.split("//", 1)[0]
        match = _ENTRY.match(line)
        if not match:
            continue
        key, raw = match.groups()
        values = []
        for token in re.findall(r'"[^"]*"|\S+', raw):
            if token.startswith('"'):
                values.append(token.strip('"'))
            else:
                try:
                    values.append(float(token))
                except ValueError:
                    values.append(token)
        entries[key] = values
    return entries


def _sitk_linear(entries: dict[str, list]):
    import SimpleITK as sitk

    kind = entries.get("Transform", [""])[0]
    dims = int(entries.get("FixedImageDimension", [3])[0])
    params = [float(v) for v in entries.get("TransformParameters", [])]
    centre = tuple(float(v) for v in entries.get("CenterOfRotationPoint", [0.0] * dims))
    if kind == "TranslationTransform":
        return sitk.TranslationTransform(dims, params)
    if kind == "EulerTransform":
        tx = sitk.Euler3DTransform() if dims == 3 else sitk.Euler2DTransform()
        tx.SetCenter(centre)
        tx.SetParameters(params)
        if dims == 3 and str(entries.get("ComputeZYX", ["false"])[0]).lower() == "true":
            tx.SetComputeZYX(True)
        return tx
    if kind == "SimilarityTransform":
        tx = sitk.Similarity3DTransform() if dims == 3 else sitk.Similarity2DTransform()
        tx.SetCenter(centre)
        tx.SetParameters(params)
        return tx
    if kind == "AffineTransform":
        tx = sitk.AffineTransform(dims)
        tx.SetCenter(centre)
        tx.SetParameters(params)
        return tx
    raise InputError(f"elastix transform {kind!r} cannot be read without itk-elastix; convert it with transformix "
                     "to a deformation field (.nii.gz) or use a linear transform")


def read_elastix_transform(path: str | Path) -> SpatialTransform:
    """An elastix linear transform parameter file (and its chain of initial transforms) as our transform."""
    from monai_fusion.registration.itk_io import transform_from_sitk

    path = Path(path)
    entries = parse_elastix_parameters(path.read_text(errors="replace"))
    transform = transform_from_sitk(_sitk_linear(entries))
    initial = str(entries.get("InitialTransformParametersFileName", ["NoInitialTransform"])[0])
    if initial in ("NoInitialTransform", ""):
        return transform
    if str(entries.get("HowToCombineTransforms", ["Compose"])[0]) != "Compose":
        raise InputError(f"{path.name}: only elastix's 'Compose' combination of transforms is supported")
    initial_path = Path(initial)
    if not initial_path.is_absolute() and not initial_path.exists():
        initial_path = path.parent / initial_path.name
    if not initial_path.is_file():
        raise InputError(f"{path.name} chains {initial}, which does not exist; keep the elastix files together")
    first = read_elastix_transform(initial_path)
    if isinstance(first, AffineTransform) and isinstance(transform, AffineTransform):
        return transform.compose(first)
    from monai_fusion.registration.spatial import CompositeTransform

    return CompositeTransform([first, transform])
