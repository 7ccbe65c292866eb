"""Convert an image (DICOM folder/file, NIfTI, NRRD) to NIfTI, NRRD and a DICOM derived series,
read each back and print the geometry difference.

    python examples/convert_and_check.py ../shared/data/mridir/ct out/
"""

import sys
from pathlib import Path

import numpy as np

from monai_fusion.io import load_image, write_dicom_series, write_nifti, write_nrrd


def main(source: str, out_dir: str) -> None:
    image = load_image(source)
    out = Path(out_dir)
    print(f"{source}: shape {tuple(image.shape)}, spacing {image.meta['spacing']}, units {image.meta['units']}")
    targets = {
        "nifti": write_nifti(image, out / "image.nii.gz"),
        "nrrd": write_nrrd(image, out / "image.nrrd"),
        "dicom": write_dicom_series(image, out / "image_dicom", overwrite=True)[0].parent,
    }
    for kind, path in targets.items():
        back = load_image(path)
        print(f"{kind:6s} {path}: max affine difference {np.abs(back.affine.numpy() - image.affine.numpy()).max():.2e} mm")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
