"""Standardised uptake value (body weight) from DICOM PET headers.

``SUVbw = C * W / D_decayed`` with ``C`` the activity concentration in Bq/ml (the PET image in
``Units = BQML`` after its rescale), ``W`` the patient weight in grams (1 g per ml of tissue
assumed) and ``D_decayed`` the injected dose decayed to the time the image activity refers to.

The decay reference follows the DICOM ``DecayCorrection`` attribute, as in the QIBA
vendor-neutral SUV pseudo-code:

* ``START``: the scanner corrected every frame to the acquisition start, so the dose is decayed
  from the injection to the scan start. The scan start is SeriesDate/SeriesTime, unless that
  time is later than the earliest AcquisitionTime (series re-created by post-processing), then
  the earliest acquisition date/time.
* ``ADMIN``: the image is already decay-corrected to the injection time: no dose decay.
* ``NONE`` or anything else, missing weight/dose/half-life/times, ``Units`` other than
  ``BQML``/``GML``, or ``CorrectedImage`` without ``ATTN`` and ``DECY``: no SUV is computed, the
  image stays in its stored units and the reason is returned, for the caller to warn.

``Units = GML`` means the vendor already stored SUVbw: factor 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from pydicom.dataset import Dataset

#: With times only, an injection "after" the scan is read as the day before only if that gives
#: an uptake time this short; anything else is a data error, not a midnight crossing.
_MAX_MIDNIGHT_GAP_S = 12 * 3600

__all__ = ["SuvConversion", "suv_bw_conversion", "parse_dicom_datetime"]


@dataclass(frozen=True)
class SuvConversion:
    """Outcome of the SUV look-up.

    Attributes:
        factor: multiply Bq/ml by this to get SUVbw (g/ml); ``None`` when SUV cannot be computed.
        units: the units the volume ends up in (``"SUVbw"`` or the stored DICOM Units).
        reason: why no SUV was computed ('' when it was).
        decay_seconds: injection-to-reference time used for the decay (0 for ADMIN/GML).
    """

    factor: float | None
    units: str
    reason: str = ""
    decay_seconds: float = 0.0


def parse_dicom_datetime(date: str | None, time: str | None) -> datetime | None:
    """``datetime`` from DICOM DA (YYYYMMDD) and TM (HHMMSS.FFFFFF, parts optional) strings."""
    if not date or not time:
        return None
    date, time = str(date).strip(), str(time).strip().replace(":", "")
    try:
        base = datetime.strptime(date[:8], "%Y%m%d")
        hours = int(time[0:2])
        minutes = int(time[2:4]) if len(time) >= 4 else 0
        seconds = float(time[4:]) if len(time) > 4 else 0.0
    except ValueError:
        return None
    return base + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _parse_dt(value: str | None) -> datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX); the UTC offset is ignored (same clock as TM)."""
    if not value:
        return None
    text = str(value).strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    return parse_dicom_datetime(text[:8], text[8:] or "000000")


def _injection_time(radiopharmaceutical: Dataset, series_date: str | None) -> datetime | None:
    when = _parse_dt(radiopharmaceutical.get("RadiopharmaceuticalStartDateTime"))
    if when is None:
        when = parse_dicom_datetime(series_date, radiopharmaceutical.get("RadiopharmaceuticalStartTime"))
    return when


def _scan_start(headers: Sequence[Dataset]) -> datetime | None:
    first = headers[0]
    series_start = parse_dicom_datetime(first.get("SeriesDate"), first.get("SeriesTime"))
    acquisitions = [
        t for t in (parse_dicom_datetime(h.get("AcquisitionDate") or h.get("SeriesDate"), h.get("AcquisitionTime")) for h in headers) if t
    ]
    earliest = min(acquisitions) if acquisitions else None
    if series_start is None:
        return earliest
    if earliest is not None and series_start > earliest:
        return earliest
    return series_start


def suv_bw_conversion(headers: Sequence[Dataset]) -> SuvConversion:
    """Factor from Bq/ml to SUVbw for a PET series, given the headers of its instances.

    Example:
        >>> conv = suv_bw_conversion(pet_headers)  # doctest: +SKIP
        >>> suv = bq_per_ml * conv.factor if conv.factor else bq_per_ml  # doctest: +SKIP
    """
    first = headers[0]
    units = str(first.get("Units", "") or "").upper()
    if units == "GML":
        return SuvConversion(factor=1.0, units="SUVbw")
    stored = units or "unknown"
    if units != "BQML":
        return SuvConversion(None, stored, f"PET Units is '{stored}', not BQML")
    corrected = {str(v).upper() for v in (first.get("CorrectedImage") or [])}
    if not {"ATTN", "DECY"} <= corrected:
        return SuvConversion(None, stored, "PET image is not both attenuation- and decay-corrected (CorrectedImage)")
    weight_kg = float(first.get("PatientWeight") or 0)
    if weight_kg <= 0:
        return SuvConversion(None, stored, "PatientWeight is missing")
    info = first.get("RadiopharmaceuticalInformationSequence")
    if not info:
        return SuvConversion(None, stored, "RadiopharmaceuticalInformationSequence is missing")
    radiopharmaceutical = info[0]
    dose_bq = float(radiopharmaceutical.get("RadionuclideTotalDose") or 0)
    half_life_s = float(radiopharmaceutical.get("RadionuclideHalfLife") or 0)
    if dose_bq <= 0 or half_life_s <= 0:
        return SuvConversion(None, stored, "injected dose or radionuclide half-life is missing")
    decay_correction = str(first.get("DecayCorrection", "") or "").upper()
    if decay_correction == "ADMIN":
        return SuvConversion(factor=weight_kg * 1000.0 / dose_bq, units="SUVbw")
    if decay_correction != "START":
        return SuvConversion(None, stored, f"DecayCorrection is '{decay_correction or 'missing'}', not START or ADMIN")
    injected = _injection_time(radiopharmaceutical, first.get("SeriesDate"))
    start = _scan_start(headers)
    if injected is None or start is None:
        return SuvConversion(None, stored, "injection or scan start time is missing")
    elapsed = (start - injected).total_seconds()
    if elapsed < 0 and not radiopharmaceutical.get("RadiopharmaceuticalStartDateTime") and elapsed + 86400 <= _MAX_MIDNIGHT_GAP_S:
        elapsed += 86400.0  # only times were recorded: injected before midnight, scanned after
    if elapsed < 0:
        return SuvConversion(None, stored, "injection time is after the scan start")
    decayed_dose = dose_bq * math.exp(-math.log(2.0) * elapsed / half_life_s)
    return SuvConversion(factor=weight_kg * 1000.0 / decayed_dose, units="SUVbw", decay_seconds=elapsed)
