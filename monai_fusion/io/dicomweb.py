"""DICOMweb: find, fetch and store DICOM series on a PACS (QIDO-RS, WADO-RS, STOW-RS).

A fusion often starts on a PACS and should end there: :class:`DicomWebServer` searches series
(QIDO-RS), retrieves one into a local folder (WADO-RS) and stores a derived series back
(STOW-RS), with `dicomweb-client` doing the HTTP. On top of it sit the two pieces the command line
uses: :func:`dicomweb_inputs` turns ``dicomweb:...`` input specs into local folders, and
:func:`store_outputs` stores the DICOM outputs of a run.

Input specs (see ``docs/dicomweb.md``)::

    dicomweb:1.2.840.113619.2.55.3.2831164355.123.1234567890.1   # a SeriesInstanceUID
    dicomweb:study=1.2.3.4,modality=MR                            # criteria, comma-separated
    dicomweb:modality=CT,number=8,description=Head*               # keys: series study modality number description

Guarantees:

* a retrieved series lands in a temporary folder beside its destination, is checked against the
  instance count the server reported, and only then renamed into place (never half a series);
* a store is checked instance by instance against the server's STOW-RS response: any failed or
  unconfirmed SOP instance is an :class:`~monai_fusion.errors.OutputError`;
* every failure is one line saying what went wrong and what to do (server unreachable, HTTP
  401/403/404/5xx, no matching series, several matching series -- listed by number, modality,
  instance count and description);
* QIDO asks only for the series-level attributes used here; nothing patient-identifying is
  requested, logged or put in an error, and credentials (from environment variables, or
  ``user:password@`` in the URL) are never printed: URLs are shown without them.

Authentication: ``MONAI_FUSION_DICOMWEB_TOKEN`` (sent as ``Authorization: Bearer``), or
``MONAI_FUSION_DICOMWEB_USER`` with ``MONAI_FUSION_DICOMWEB_PASSWORD`` (HTTP basic).
``MONAI_FUSION_DICOMWEB_URL`` is the server used when none is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from monai_fusion.errors import InputError, MonaiFusionError, OutputError
from monai_fusion.io.atomic import atomic_directory
from monai_fusion.io.dicom_scan import is_dicom_file

__all__ = [
    "SPEC_PREFIX",
    "URL_ENV",
    "TOKEN_ENV",
    "USER_ENV",
    "PASSWORD_ENV",
    "SeriesQuery",
    "RemoteSeries",
    "StoreReport",
    "DicomWebServer",
    "is_dicomweb_spec",
    "server_url",
    "store_target",
    "dicomweb_inputs",
    "store_outputs",
]

logger = logging.getLogger(__name__)

SPEC_PREFIX = "dicomweb:"
URL_ENV = "MONAI_FUSION_DICOMWEB_URL"
TOKEN_ENV = "MONAI_FUSION_DICOMWEB_TOKEN"
USER_ENV = "MONAI_FUSION_DICOMWEB_USER"
PASSWORD_ENV = "MONAI_FUSION_DICOMWEB_PASSWORD"

_SPEC_KEYS = ("series", "study", "modality", "number", "description")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TIMEOUT_SECONDS = 60.0
_STORE_BATCH = 32  # instances per STOW-RS request: bounded request size, few round trips

# DICOM JSON tags of the series-level attributes asked for (and the only ones read)
_STUDY_UID, _SERIES_UID, _MODALITY = "0020000D", "0020000E", "00080060"
_SERIES_NUMBER, _DESCRIPTION, _N_INSTANCES = "00200011", "0008103E", "00201209"
_SOP_INSTANCE_UID = "00080018"
_QIDO_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                "NumberOfSeriesRelatedInstances")

# PS3.18 / PS3.4 failure reasons a STOW-RS response may carry
_FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0112: "no such SOP instance",
    0x0117: "invalid object instance",
    0x0118: "no such SOP class",
    0x0119: "class-instance conflict",
    0x0122: "SOP class not supported",
    0x0124: "refused: not authorized",
    0xA700: "out of resources",
    0xA770: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
}


# --------------------------------------------------------------------------------------------
# input specs


@dataclass(frozen=True)
class SeriesQuery:
    """What identifies one series on the server; every given field must match.

    Args:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        modality: DICOM Modality (``CT``, ``MR``, ``PT``...), compared in upper case.
        series_number: SeriesNumber.
        description: SeriesDescription; QIDO wildcards ``*`` and ``?`` are allowed.

    Example:
        >>> str(SeriesQuery.parse("dicomweb:study=1.2.3,modality=mr"))
        'study=1.2.3,modality=MR'
    """

    series_uid: str | None = None
    study_uid: str | None = None
    modality: str | None = None
    series_number: int | None = None
    description: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "SeriesQuery":
        """Parse ``dicomweb:SERIES_UID`` or ``dicomweb:key=value,...`` (the prefix is optional)."""
        text = spec[len(SPEC_PREFIX):] if spec.lower().startswith(SPEC_PREFIX) else spec
        text = text.strip()
        hint = "give dicomweb:SERIES_UID or dicomweb:KEY=VALUE,... with keys " + ", ".join(_SPEC_KEYS)
        if not text:
            raise InputError(f"'{spec}' names no series; {hint}")
        if "=" not in text:
            return cls(series_uid=_checked_uid(text, spec))
        values: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not key or not value:
                raise InputError(f"'{part.strip()}' in '{spec}' is not KEY=VALUE; {hint}")
            if key not in _SPEC_KEYS:
                raise InputError(f"unknown key '{key}' in '{spec}'; use {', '.join(_SPEC_KEYS)}")
            if key in values:
                raise InputError(f"'{key}' is given twice in '{spec}'; give each key once")
            values[key] = value
        number = values.get("number")
        if number is not None and not re.fullmatch(r"[+-]?\d+", number):
            raise InputError(f"number={number} in '{spec}' is not an integer series number")
        return cls(
            series_uid=_checked_uid(values["series"], spec) if "series" in values else None,
            study_uid=_checked_uid(values["study"], spec) if "study" in values else None,
            modality=values["modality"].upper() if "modality" in values else None,
            series_number=int(number) if number is not None else None,
            description=values.get("description"),
        )

    def qido_filters(self) -> dict[str, str]:
        """Search filters for QIDO-RS (the study UID goes in the URL instead; see :meth:`matches`)."""
        filters = {}
        if self.series_uid:
            filters["SeriesInstanceUID"] = self.series_uid
        if self.modality:
            filters["Modality"] = self.modality
        if self.series_number is not None:
            filters["SeriesNumber"] = str(self.series_number)
        if self.description and not any(c in self.description for c in "*?"):
            # wildcards are matched here instead: dicomweb-client percent-encodes them, and some
            # servers (Orthanc among them) then take them literally
            filters["SeriesDescription"] = self.description
        return filters

    def matches(self, series: "RemoteSeries") -> bool:
        """Whether a search result fits, checked here too: some servers ignore filters they do not support."""
        return (
            (self.series_uid is None or series.series_uid == self.series_uid)
            and (self.study_uid is None or series.study_uid == self.study_uid)
            and (self.modality is None or series.modality.upper() == self.modality)
            and (self.series_number is None or series.series_number == self.series_number)
            and (self.description is None or _wildcard_match(self.description, series.description))
        )

    def __str__(self) -> str:
        parts = [("series", self.series_uid), ("study", self.study_uid), ("modality", self.modality),
                 ("number", self.series_number), ("description", self.description)]
        return ",".join(f"{k}={v}" for k, v in parts if v is not None)


def _checked_uid(text: str, spec: str) -> str:
    text = text.strip()
    if not _UID.match(text) or len(text) > 64:
        raise InputError(f"'{text}' in '{spec}' is not a DICOM UID (digits and dots, at most 64 characters)")
    return text


def _wildcard_match(pattern: str, value: str) -> bool:
    """QIDO wildcard matching (``*``, ``?``), case-insensitive; ``[`` is literal in DICOM."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


def is_dicomweb_spec(value) -> bool:
    """True for strings that start with ``dicomweb:`` (any case)."""
    return isinstance(value, str) and value.lower().startswith(SPEC_PREFIX)


def server_url(url: str | None = None) -> str | None:
    """The DICOMweb root to use: ``url`` when given, else ``$MONAI_FUSION_DICOMWEB_URL``, else ``None``."""
    return url or os.environ.get(URL_ENV) or None


def store_target(store_to: str | None, source_url: str | None = None, formats=None) -> str | None:
    """The server a ``--store-to [URL]`` option means, checked before any work is done.

    ``None`` (option absent): no store. ``""`` (the option without a URL): the source server
    (``--dicomweb``, else ``$MONAI_FUSION_DICOMWEB_URL``). Anything else: that URL. ``formats``
    (a sequence or a comma-separated string), when given, must include ``dicom``.

    Raises:
        OutputError: the option was given without a URL and there is no source server either,
            or no DICOM output is asked for.
    """
    if store_to is None:
        return None
    if formats is not None:
        names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
        if "dicom" not in names:
            raise OutputError("--store-to sends the DICOM outputs, but none is asked for; add dicom to --format "
                              "(e.g. --format nifti,dicom)")
    url = store_to or server_url(source_url)
    if not url:
        raise OutputError(f"--store-to without a URL stores to the --dicomweb server, but none is given; "
                          f"give --store-to URL, --dicomweb URL or set {URL_ENV}")
    DicomWebServer(url)  # a malformed URL or inconsistent credentials fail now, not after the run
    return url


# --------------------------------------------------------------------------------------------
# search results and store reports


@dataclass(frozen=True)
class RemoteSeries:
    """One series as a QIDO-RS search describes it (series-level attributes only)."""

    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    description: str
    instances: int | None  # NumberOfSeriesRelatedInstances; None when the server does not say

    @classmethod
    def from_json(cls, item: Mapping) -> "RemoteSeries":
        number = _json_value(item, _SERIES_NUMBER)
        count = _json_value(item, _N_INSTANCES)
        return cls(
            study_uid=str(_json_value(item, _STUDY_UID) or ""),
            series_uid=str(_json_value(item, _SERIES_UID) or ""),
            modality=str(_json_value(item, _MODALITY) or "OT"),
            series_number=_as_int(number),
            description=str(_json_value(item, _DESCRIPTION) or ""),
            instances=_as_int(count),
        )

    def label(self) -> str:
        """``series 8 CT 103 instance(s) 'CT' uid=...``: what error messages and logs show."""
        number = "-" if self.series_number is None else str(self.series_number)
        count = "?" if self.instances is None else str(self.instances)
        return f"series {number} {self.modality} {count} instance(s) '{self.description}' uid={self.series_uid}"


def _json_value(item: Mapping, tag: str):
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _as_int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass
class StoreReport:
    """What a STOW-RS store did: instances sent and confirmed, per series."""

    url: str
    sent: int = 0
    stored: int = 0
    series_uids: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"url": self.url, "sent": self.sent, "stored": self.stored,
                "series_instance_uids": self.series_uids, "study_instance_uids": self.study_uids}

    def line(self) -> str:
        """One line for the command line's summary."""
        return f"stored {self.stored} instance(s) of {len(self.series_uids)} DICOM series on {self.url} (STOW-RS)"


# --------------------------------------------------------------------------------------------
# the server


class DicomWebServer:
    """A DICOMweb service (QIDO-RS, WADO-RS, STOW-RS under one root URL).

    Args:
        url: the DICOMweb root, e.g. ``http://localhost:8042/dicom-web`` for Orthanc. A
            ``user:password@`` part is used for basic authentication and never shown.
        token: bearer token; defaults to ``$MONAI_FUSION_DICOMWEB_TOKEN``.
        user, password: basic authentication; default to ``$MONAI_FUSION_DICOMWEB_USER`` and
            ``$MONAI_FUSION_DICOMWEB_PASSWORD``.
        timeout: seconds to wait for the server to connect or answer.

    Example:
        >>> server = DicomWebServer("http://localhost:8042/dicom-web")  # doctest: +SKIP
        >>> series = server.find_series(SeriesQuery.parse("dicomweb:modality=CT"))  # doctest: +SKIP
        >>> server.retrieve_series(series, "cache/ct")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None,
                 password: str | None = None, timeout: float = _TIMEOUT_SECONDS) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.url, url_user, url_password = _split_credentials(url)
        self.timeout = timeout
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        user = user if user is not None else os.environ.get(USER_ENV) or url_user
        password = password if password is not None else os.environ.get(PASSWORD_ENV, url_password)
        if token and user:
            raise InputError(f"both a bearer token ({TOKEN_ENV}) and a user name ({USER_ENV} or the URL) are set "
                             "for DICOMweb; keep only one")
        if user and password is None:
            raise InputError(f"{USER_ENV} is set but {PASSWORD_ENV} is not; set both for basic authentication")
        self._authenticated = bool(token or user)
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif user:
            session.auth = (user, password)
        try:
            self.client = DICOMwebClient(self.url, session=session, timeout=timeout)
        except ValueError:
            raise InputError(f"'{self.url}' is not a DICOMweb URL; give http(s)://host[:port]/path "
                             "(the DICOMweb root, e.g. http://localhost:8042/dicom-web)") from None
        # refused connections and 429/503/504 are tried 3 times within ~1 s, not the library's default half minute
        self.client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=200)

    def __repr__(self) -> str:
        return f"DicomWebServer({self.url!r})"

    # -- search -------------------------------------------------------------------------------

    def search_series(self, query: SeriesQuery) -> list[RemoteSeries]:
        """All series matching ``query`` (QIDO-RS), ordered by study, series number and UID."""
        with self._talking(f"searching for series {query}"):
            items = self.client.search_for_series(
                study_instance_uid=query.study_uid,
                fields=list(_QIDO_FIELDS),
                search_filters=query.qido_filters(),
            )
        found = [RemoteSeries.from_json(item) for item in items]
        found = [s for s in found if s.series_uid and query.matches(s)]
        found.sort(key=lambda s: (s.study_uid, s.series_number is None, s.series_number or 0, s.series_uid))
        logger.info("QIDO-RS %s: %d series match %s", self.url, len(found), query)
        return found

    def find_series(self, query: SeriesQuery) -> RemoteSeries:
        """The one series matching ``query``.

        Raises:
            InputError: none matches, or several do (the message lists them so the user can choose).
        """
        found = self.search_series(query)
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputError(f"no series on the DICOMweb server at {self.url} matches '{query}'; "
                             "check the UIDs and criteria (modality, number, description are exact; description allows *)")
        raise InputError(f"{len(found)} series on the DICOMweb server match '{query}'; narrow the spec with "
                         f"series=UID, study=UID, number=N or modality=: " + "; ".join(s.label() for s in found))

    def count_instances(self, series: RemoteSeries) -> int:
        """Number of instances in a series, asked with QIDO-RS at instance level."""
        with self._talking(f"counting the instances of series {series.series_uid}"):
            items = self.client.search_for_instances(
                study_instance_uid=series.study_uid, series_instance_uid=series.series_uid,
                fields=["SOPInstanceUID"], get_remaining=True,
            )
        return len({_json_value(item, _SOP_INSTANCE_UID) for item in items})

    # -- retrieve -----------------------------------------------------------------------------

    def retrieve_series(self, series: RemoteSeries, folder: str | os.PathLike, overwrite: bool = True) -> Path:
        """Download every instance of ``series`` into ``folder`` (WADO-RS), atomically.

        Instances are written as received (any transfer syntax the server holds) into a temporary
        folder beside ``folder``, named by order of arrival; the folder is renamed into place only
        when the number of instances matches what the server reported.

        Raises:
            InputError: the server failed, sent instances of another series, or too few/many.
        """
        folder = Path(folder)
        expected = series.instances if series.instances is not None else self.count_instances(series)
        received = 0
        with atomic_directory(folder, overwrite=overwrite) as tmp:
            with self._talking(f"retrieving {series.label()}"):
                for dataset in self.client.iter_series(series.study_uid, series.series_uid,
                                                       media_types=(("application/dicom", "*"),)):
                    if str(dataset.get("SeriesInstanceUID", "")) != series.series_uid:
                        raise InputError(f"the DICOMweb server at {self.url} sent an instance of another series when "
                                         f"asked for {series.series_uid}; report this to the server's administrator")
                    received += 1
                    dataset.save_as(tmp / f"{received:05d}.dcm", enforce_file_format=True)
            if received != expected:
                raise InputError(f"retrieved {received} of the {expected} instance(s) of {series.label()} from "
                                 f"{self.url}; the series may still be arriving on the server, try again later")
        logger.info("WADO-RS %s: retrieved %d instance(s) of series %s (%s) into %s",
                    self.url, received, series.series_number, series.modality, folder)
        return folder

    def fetch_series(self, query: SeriesQuery, cache_dir: str | os.PathLike) -> Path:
        """The folder ``cache_dir/<SeriesInstanceUID>`` holding the one series matching ``query``.

        A complete copy already there (as many DICOM files as the server reports) is reused.
        """
        series = self.find_series(query)
        folder = Path(cache_dir) / series.series_uid
        expected = series.instances if series.instances is not None else self.count_instances(series)
        if folder.is_dir() and sum(1 for f in folder.iterdir() if f.is_file() and is_dicom_file(f)) == expected:
            logger.info("using the cached copy of series %s (%s) in %s", series.series_number, series.modality, folder)
            return folder
        return self.retrieve_series(dataclasses.replace(series, instances=expected), folder, overwrite=True)

    # -- store --------------------------------------------------------------------------------

    def store(self, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> StoreReport:
        """Store DICOM files (a folder, a file, or a list of them) with STOW-RS and check the answer.

        Every instance sent must come back in the response's ReferencedSOPSequence; when the
        server answers without a body, the instances are looked up with QIDO-RS instead.

        Raises:
            OutputError: nothing to store, server unreachable/refusing, or any instance failed
                (with the server's failure reasons and how many were stored).
        """
        import pydicom

        files = _dicom_files(paths)
        report = StoreReport(url=self.url)
        failures: list[str] = []
        for start in range(0, len(files), _STORE_BATCH):
            datasets = []
            for file in files[start:start + _STORE_BATCH]:
                try:
                    datasets.append(pydicom.dcmread(file))
                except Exception as err:
                    raise OutputError(f"{file} cannot be read for storing ({type(err).__name__}); rewrite the output") from None
            for ds in datasets:
                _append_unique(report.series_uids, str(ds.get("SeriesInstanceUID", "")))
                _append_unique(report.study_uids, str(ds.get("StudyInstanceUID", "")))
            report.sent += len(datasets)
            with self._talking(f"storing {len(files)} instance(s)", OutputError):
                response = self._post(datasets)
            stored, failed = self._stow_outcome(response, datasets)
            report.stored += stored
            failures.extend(failed)
        if failures:
            reasons = sorted(set(failures))
            raise OutputError(f"the DICOMweb server at {self.url} refused {len(failures)} of {report.sent} instance(s) "
                              f"({', '.join(reasons)}); {report.stored} were stored; fix the cause and store again")
        logger.info("STOW-RS %s: stored %d instance(s) of %d series", self.url, report.stored, len(report.series_uids))
        return report

    def _post(self, datasets):
        """STOW-RS; a 4xx answer that carries a store response (e.g. 409 Conflict) is returned, not raised."""
        import requests
        from pydicom import Dataset

        try:
            return self.client.store_instances(datasets)
        except requests.HTTPError as err:
            response = err.response
            if response is not None and response.status_code in (400, 409) and "json" in response.headers.get("Content-Type", ""):
                try:
                    answer = Dataset.from_json(response.json())
                except Exception:
                    raise err from None
                if "FailedSOPSequence" in answer:
                    return answer
            raise

    def _stow_outcome(self, response, datasets) -> tuple[int, list[str]]:
        """(instances confirmed, failure reasons) for one STOW-RS request."""
        sent = {str(ds.SOPInstanceUID) for ds in datasets}
        referenced = {str(item.get("ReferencedSOPInstanceUID", "")) for item in response.get("ReferencedSOPSequence", [])}
        failed = {str(item.get("ReferencedSOPInstanceUID", "")): _failure_reason(item.get("FailureReason"))
                  for item in response.get("FailedSOPSequence", [])}
        if "ReferencedSOPSequence" not in response and "FailedSOPSequence" not in response:
            referenced = self._stored_instances(datasets)  # no response body: ask the server
        reasons = [failed.get(uid, "not confirmed by the server") for uid in sorted(sent - referenced)]
        return len(sent & referenced), reasons

    def _stored_instances(self, datasets) -> set[str]:
        found: set[str] = set()
        series = {(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) for ds in datasets}
        with self._talking("checking the stored instances", OutputError):
            for study_uid, series_uid in series:
                items = self.client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                                         fields=["SOPInstanceUID"], get_remaining=True)
                found |= {str(_json_value(item, _SOP_INSTANCE_UID)) for item in items}
        return found

    # -- errors -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _talking(self, action: str, error: type[MonaiFusionError] = InputError) -> Iterator[None]:
        """Turn what HTTP and the client raise into one-line user errors."""
        import requests
        import retrying

        try:
            yield
        except MonaiFusionError:
            raise
        except retrying.RetryError as err:  # retries on 429/503/504 ran out
            response = err.last_attempt.value
            raise error(self._http_message(getattr(response, "status_code", 0), getattr(response, "reason", ""), action)) from None
        except requests.HTTPError as err:
            response = err.response
            raise error(self._http_message(getattr(response, "status_code", 0), getattr(response, "reason", ""), action)) from None
        except requests.Timeout:
            raise error(f"the DICOMweb server at {self.url} did not answer within {self.timeout:g} s while {action}; "
                        "try again later") from None
        except requests.exceptions.SSLError as err:
            raise error(f"TLS with the DICOMweb server at {self.url} failed while {action} ({_connection_reason(err)}); "
                        "check the certificate or the URL's scheme") from None
        except requests.ConnectionError as err:
            raise error(f"cannot reach the DICOMweb server at {self.url} ({_connection_reason(err)}); "
                        "check the URL and that the server is running") from None
        except (requests.exceptions.JSONDecodeError, ValueError) as err:
            raise error(f"the server at {self.url} did not answer as a DICOMweb service while {action} "
                        f"({_first_line(err)}); check that the URL is the DICOMweb root") from None

    def _http_message(self, status: int, reason: str, action: str) -> str:
        where = f"the DICOMweb server at {self.url}"
        what = f"HTTP {status}{' ' + reason if reason else ''}"
        if status in (401, 403):
            if self._authenticated:
                return f"{where} refused the credentials while {action} ({what}); check {USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV}"
            return f"{where} requires authentication ({what}); set {USER_ENV} and {PASSWORD_ENV}, or {TOKEN_ENV}"
        if status == 404:
            return (f"{where} answered {what} while {action}; check that the URL is the DICOMweb root "
                    "(for Orthanc: http://host:8042/dicom-web)")
        if status >= 500 or status in (429, 408):
            return f"{where} failed while {action} ({what}); try again later or check the server's log"
        return f"{where} rejected the request while {action} ({what}); check the URL and the input spec"


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(URL without ``user:password@`` and trailing slash, user, password)."""
    url = str(url).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"'{_redact(url)}' is not a DICOMweb URL; give http(s)://host[:port]/path "
                         "(the DICOMweb root, e.g. http://localhost:8042/dicom-web)")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))
    return clean, parts.username, parts.password


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def _connection_reason(err: BaseException) -> str:
    text = str(err)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().rstrip(".").lower()
    for known in ("Connection refused", "Name or service not known", "timed out", "certificate verify failed"):
        if known.lower() in text.lower():
            return known.lower()
    return "connection failed"


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:160]


def _failure_reason(code) -> str:
    try:
        value = int(code)
    except (TypeError, ValueError):
        return "failure reason not given"
    return f"{_FAILURE_REASONS.get(value, 'failure')} (0x{value:04X})"


def _append_unique(items: list[str], value: str) -> None:
    if value and value not in items:
        items.append(value)


def _dicom_files(paths) -> list[Path]:
    """DICOM Part 10 files in a folder, a file or a list of those, sorted by path."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(f for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith(".") and is_dicom_file(f))
        elif path.is_file() and is_dicom_file(path):
            files.append(path)
        elif not path.exists():
            raise OutputError(f"{path} does not exist; nothing to store")
    if not files:
        raise OutputError(f"no DICOM file found in {', '.join(str(p) for p in paths)}; nothing to store "
                          "(write a DICOM output, e.g. --format dicom)")
    return files


# --------------------------------------------------------------------------------------------
# what the command line uses


@contextlib.contextmanager
def dicomweb_inputs(values: Sequence, url: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Iterator[list]:
    """Replace the ``dicomweb:...`` entries of ``values`` by local folders holding those series.

    Other entries pass through unchanged. Without ``cache_dir`` the series are downloaded into a
    temporary folder that is removed when the block ends (so whatever reads them -- including a
    DICOM writer that uses them as its reference series -- must run inside the block); with it,
    into ``cache_dir/<SeriesInstanceUID>``, kept and reused.

    Raises:
        InputError: a spec without a server URL, a bad spec, or any retrieval failure.

    Example:
        >>> with dicomweb_inputs(["dicomweb:modality=MR", "ct.nii.gz"], "http://localhost:8042/dicom-web") as (mr, ct):  # doctest: +SKIP
        ...     run = fuse(mr, ct, out_dir="out")
    """
    values = list(values)
    specs = [i for i, v in enumerate(values) if is_dicomweb_spec(v)]
    if not specs:
        yield values
        return
    queries = {i: SeriesQuery.parse(values[i]) for i in specs}  # spec errors before any network
    url = server_url(url)
    if not url:
        raise InputError(f"'{values[specs[0]]}' needs a DICOMweb server: give --dicomweb URL or set {URL_ENV}")
    server = DicomWebServer(url)
    with contextlib.ExitStack() as stack:
        folder = Path(cache_dir) if cache_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="monai-fusion-dicomweb-")))
        resolved = list(values)
        for i, query in queries.items():
            resolved[i] = server.fetch_series(query, folder)
        yield resolved


def store_outputs(outputs: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
                  url: str | None = None) -> StoreReport:
    """STOW-RS every DICOM output (a folder of a derived series, or a DICOM file) of a run.

    Args:
        outputs: ``{name: path}`` as in ``FusionRun.outputs``, or a list of paths; entries that
            are not DICOM (NIfTI, NRRD, PNG, reports) are skipped.
        url: DICOMweb root; defaults to ``$MONAI_FUSION_DICOMWEB_URL``.

    Raises:
        OutputError: no URL, no DICOM output, or the store failed (see :meth:`DicomWebServer.store`).
    """
    paths = list(outputs.values()) if isinstance(outputs, Mapping) else list(outputs)
    url = server_url(url)
    if not url:
        raise OutputError(f"storing outputs needs a DICOMweb server: give its URL or set {URL_ENV}")
    dicom = [Path(p) for p in paths if _holds_dicom(Path(p))]
    if not dicom:
        raise OutputError("the run wrote no DICOM output to store; add the DICOM format to the outputs (--format dicom)")
    try:
        return DicomWebServer(url).store(dicom)
    except MonaiFusionError as err:
        where = Path(os.path.commonpath([str(p.parent) for p in dicom]))
        raise OutputError(f"{err}; the local outputs in {where} are complete") from None


def _holds_dicom(path: Path) -> bool:
    if path.is_file():
        return is_dicom_file(path)
    return path.is_dir() and any(f.is_file() and is_dicom_file(f) for f in path.iterdir())
