"""Medical image input/output with exact geometry: DICOM series, NIfTI, NRRD, MHA."""

from monai_fusion.io.dicom_scan import DicomSeries, scan_dicom, select_series
from monai_fusion.io.geometry import (
    LPS_TO_RAS,
    affine_from_itk_geometry,
    affine_from_sitk,
    itk_geometry_from_affine,
    orientation_code,
    spacing_from_affine,
)
from monai_fusion.io.pet_suv import SuvConversion, suv_bw_conversion
from monai_fusion.io.reader import list_series, load_image

__all__ = [
    "DicomSeries",
    "LPS_TO_RAS",
    "SuvConversion",
    "affine_from_itk_geometry",
    "affine_from_sitk",
    "itk_geometry_from_affine",
    "list_series",
    "load_image",
    "orientation_code",
    "scan_dicom",
    "select_series",
    "spacing_from_affine",
    "suv_bw_conversion",
]

from monai_fusion.io.dicom_writer import ReferenceSeries, write_dicom_series, write_rgb_dicom
from monai_fusion.io.monai_reader import FusionImageReader
from monai_fusion.io.monai_writers import (
    DicomSeriesImageWriter,
    NiftiImageWriter,
    NrrdImageWriter,
    RgbDicomImageWriter,
    RgbNiftiImageWriter,
    RgbNrrdImageWriter,
    register_dicom_writer,
)
from monai_fusion.io.writers import write_nifti, write_nrrd, write_png, write_rgb_nifti, write_rgb_nrrd

register_dicom_writer()

__all__ += [
    "FusionImageReader",
    "DicomSeriesImageWriter",
    "NiftiImageWriter",
    "NrrdImageWriter",
    "ReferenceSeries",
    "RgbDicomImageWriter",
    "RgbNiftiImageWriter",
    "RgbNrrdImageWriter",
    "register_dicom_writer",
    "write_dicom_series",
    "write_nifti",
    "write_nrrd",
    "write_png",
    "write_rgb_dicom",
    "write_rgb_nifti",
    "write_rgb_nrrd",
]
