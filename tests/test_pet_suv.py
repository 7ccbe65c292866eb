"""SUVbw from PET headers: decay rules, fall-backs to stored units, and load_image end to end.

Reference values are worked out by hand: 75 kg, 370 MBq of F-18 (half-life 6586.2 s) injected
at 10:00:00, scan start 11:00:00, so the dose at scan start is 370e6 * 2^(-3600/6586.2) Bq and
10 kBq/ml is SUV 75000 * 10000 / that = 2.96075.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from monai_fusion.io import load_image, suv_bw_conversion
from monai_fusion.io.pet_suv import parse_dicom_datetime


def pet_header(**overrides) -> Dataset:
    ds = Dataset()
    ds.Modality = "PT"
    ds.Units = "BQML"
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = 75
    ds.SeriesDate, ds.SeriesTime = "20260105", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20260105", "110000"
    drug = Dataset()
    drug.RadionuclideTotalDose = 370e6
    drug.RadionuclideHalfLife = 6586.2
    drug.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [drug]
    for key, value in overrides.items():
        if key.startswith("drug_"):
            setattr(drug, key[5:], value)
        elif value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def test_start_decay_correction_hand_computed():
    conversion = suv_bw_conversion([pet_header()])
    assert conversion.units == "SUVbw" and conversion.decay_seconds == pytest.approx(3600)
    assert 10000 * conversion.factor == pytest.approx(2.96075, rel=1e-5)


def test_start_datetime_attribute_wins_over_time():
    conversion = suv_bw_conversion([pet_header(drug_RadiopharmaceuticalStartDateTime="20260105093000.00+0100")])
    assert conversion.decay_seconds == pytest.approx(5400)
    assert 10000 * conversion.factor == pytest.approx(3.57827, rel=1e-5)


def test_admin_decay_correction_uses_the_full_dose():
    conversion = suv_bw_conversion([pet_header(DecayCorrection="ADMIN")])
    assert 10000 * conversion.factor == pytest.approx(2.02703, rel=1e-5)


def test_series_time_after_acquisition_uses_earliest_acquisition():
    # a series re-created after the scan: SeriesTime 12:00 but acquisition started at 11:00
    headers = [pet_header(SeriesTime="120000", AcquisitionTime=t) for t in ("110500", "110000", "111000")]
    assert suv_bw_conversion(headers).decay_seconds == pytest.approx(3600)


def test_injection_before_midnight_with_times_only():
    conversion = suv_bw_conversion([pet_header(SeriesTime="003000", AcquisitionTime="003000", drug_RadiopharmaceuticalStartTime="233000")])
    assert conversion.decay_seconds == pytest.approx(3600)


def test_vendor_suv_units_pass_through():
    conversion = suv_bw_conversion([pet_header(Units="GML")])
    assert conversion.factor == 1.0 and conversion.units == "SUVbw"


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"Units": "CNTS"}, "not BQML"),
        ({"PatientWeight": None}, "PatientWeight"),
        ({"drug_RadionuclideTotalDose": 0}, "dose"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection"),
        ({"CorrectedImage": ["ATTN"]}, "decay-corrected"),
        ({"drug_RadiopharmaceuticalStartTime": "120000"}, "after the scan start"),
    ],
)
def test_missing_information_leaves_stored_units_with_a_reason(overrides, reason):
    conversion = suv_bw_conversion([pet_header(**overrides)])
    assert conversion.factor is None and reason in conversion.reason


def test_parse_dicom_datetime_variants():
    assert parse_dicom_datetime("20260105", "1130").minute == 30
    assert parse_dicom_datetime("20260105", "11:30:15.5").second == 15
    assert parse_dicom_datetime("", "1130") is None


def test_load_image_converts_pet_series_to_suv(synthetic_series):
    header = pet_header()
    extra = {k: header.get(k) for k in ("Units", "CorrectedImage", "DecayCorrection", "PatientWeight", "SeriesDate",
                                        "SeriesTime", "AcquisitionDate", "AcquisitionTime",
                                        "RadiopharmaceuticalInformationSequence")}
    folder, volume, _ = synthetic_series(n_slices=4, modality="PT", slopes=[2.0, 3.0, 0.5, 1.0], extra=extra)
    image = load_image(folder)
    factor = 75000 / (370e6 * 2 ** (-3600 / 6586.2))
    assert image.meta["units"] == "SUVbw"
    np.testing.assert_allclose(image[0].numpy(), volume * factor, rtol=1e-5)


def test_load_image_warns_and_keeps_counts_without_dose(synthetic_series):
    folder, volume, _ = synthetic_series(n_slices=3, modality="PT", extra={"Units": "CNTS"})
    with pytest.warns(UserWarning, match="PET left in stored units"):
        image = load_image(folder)
    assert image.meta["units"] == "CNTS"
    np.testing.assert_allclose(image[0].numpy(), volume, rtol=1e-6)
