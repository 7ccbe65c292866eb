"""DICOMweb source and sink (monai_fusion.io.dicomweb) against a real Orthanc server.

Spec parsing, URL and credential handling run without a server. The rest starts Orthanc with its
DICOMweb plugin on loopback (tests/orthanc.py; skips when Orthanc is not installed), stores the
real MRI-DIR CT and MR series with STOW-RS (skips when ../shared/data is absent), and checks
QIDO-RS search, WADO-RS retrieval against the local files, the error messages, and storing a
derived series back into the reference's study.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom import Dataset

from monai_fusion.errors import InputError, OutputError
from monai_fusion.io import load_image, write_dicom_series
from monai_fusion.io.dicomweb import (
    PASSWORD_ENV,
    TOKEN_ENV,
    URL_ENV,
    USER_ENV,
    DicomWebServer,
    RemoteSeries,
    SeriesQuery,
    dicomweb_inputs,
    is_dicomweb_spec,
    store_outputs,
    store_target,
)
from tests.conftest import shared_path
from tests.orthanc import start_orthanc

MRIDIR_CT_SERIES = "1.3.6.1.4.1.14519.5.2.1.1706.4996.115936088547498980797393821518"
MRIDIR_MR_SERIES = "1.3.6.1.4.1.14519.5.2.1.1706.4996.123065603063404191260103927213"
MRIDIR_MR_STUDY = "1.3.6.1.4.1.14519.5.2.1.1706.4996.291528693030619821462351338745"
UNREACHABLE = "http://127.0.0.1:1/dicom-web"  # loopback port 1: nothing listens, refused at once


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch):
    """Tests see only the DICOMweb environment they set themselves."""
    for name in (URL_ENV, TOKEN_ENV, USER_ENV, PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# specs, URLs and credentials (no server)


def test_spec_with_a_bare_uid_selects_the_series():
    assert is_dicomweb_spec("DICOMweb:1.2.3") and not is_dicomweb_spec("ct/")
    assert SeriesQuery.parse("dicomweb:1.2.840.10008.9") == SeriesQuery(series_uid="1.2.840.10008.9")


def test_spec_with_criteria():
    query = SeriesQuery.parse("dicomweb: study=1.2.3 , modality=mr,number=6,description=T2*")
    assert query == SeriesQuery(study_uid="1.2.3", modality="MR", series_number=6, description="T2*")
    assert str(query) == "study=1.2.3,modality=MR,number=6,description=T2*"
    assert query.qido_filters() == {"Modality": "MR", "SeriesNumber": "6"}  # wildcards are matched locally


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dicomweb:", "names no series"),
        ("dicomweb:modality", "not a DICOM UID"),
        ("dicomweb:modality=", "is not KEY=VALUE"),
        ("dicomweb:patient=X", "unknown key 'patient'"),
        ("dicomweb:modality=CT,modality=MR", "given twice"),
        ("dicomweb:study=abc", "not a DICOM UID"),
        ("dicomweb:number=six", "not an integer"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(InputError, match=message) as err:
        SeriesQuery.parse(spec)
    assert "\n" not in str(err.value)


def test_query_matching_is_checked_locally():
    series = RemoteSeries("1.2", "1.2.3", "MR", 6, "T2 axial", 94)
    assert SeriesQuery(description="t2*").matches(series)
    assert SeriesQuery(description="T?").matches(RemoteSeries("1.2", "1.2.3", "MR", 6, "T2", 94))
    assert not SeriesQuery(modality="CT").matches(series)
    assert not SeriesQuery(series_number=7).matches(series)


@pytest.mark.parametrize("url", ["ftp://host/dicom-web", "localhost:8042", "http://"])
def test_bad_urls(url):
    with pytest.raises(InputError, match="is not a DICOMweb URL"):
        DicomWebServer(url)


def test_unreachable_server_is_one_line_without_credentials():
    server = DicomWebServer("http://someone:s3cret@127.0.0.1:1/dicom-web/")
    assert server.url == UNREACHABLE and "s3cret" not in repr(server)
    with pytest.raises(InputError) as err:
        server.find_series(SeriesQuery(modality="CT"))
    message = str(err.value)
    assert "cannot reach the DICOMweb server at http://127.0.0.1:1/dicom-web (connection refused)" in message
    assert "s3cret" not in message and "someone" not in message and "\n" not in message


def test_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "tok-123")
    server = DicomWebServer(UNREACHABLE)
    assert server.client._session.headers["Authorization"] == "Bearer tok-123"
    monkeypatch.setenv(USER_ENV, "alice")
    with pytest.raises(InputError, match="keep only one"):
        DicomWebServer(UNREACHABLE)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(InputError, match=f"{PASSWORD_ENV} is not"):
        DicomWebServer(UNREACHABLE)
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert DicomWebServer(UNREACHABLE).client._session.auth == ("alice", "pw")


def test_a_spec_needs_a_server_url():
    with pytest.raises(InputError, match=f"give --dicomweb URL or set {URL_ENV}"):
        with dicomweb_inputs(["dicomweb:modality=CT"]):
            pass
    with dicomweb_inputs(["a.nii.gz", Path("b")]) as values:  # nothing to fetch: passed through
        assert values == ["a.nii.gz", Path("b")]


def test_failed_instances_in_the_stow_response_are_an_error(tmp_path, synthetic_series):
    folder, _, _ = synthetic_series(n_slices=3)
    server = DicomWebServer(UNREACHABLE)
    files = sorted(folder.iterdir())

    def refuse_one(datasets):
        import pydicom

        uids = [pydicom.dcmread(f).SOPInstanceUID for f in files]
        answer = Dataset()
        answer.ReferencedSOPSequence = [Dataset() for _ in uids[:2]]
        for item, uid in zip(answer.ReferencedSOPSequence, uids[:2]):
            item.ReferencedSOPInstanceUID = uid
        failed = Dataset()
        failed.ReferencedSOPInstanceUID = uids[2]
        failed.FailureReason = 0xA700
        answer.FailedSOPSequence = [failed]
        return answer

    server.client.store_instances = refuse_one
    with pytest.raises(OutputError, match=r"refused 1 of 3 instance\(s\) \(out of resources \(0xA700\)\); 2 were stored"):
        server.store(folder)


def test_a_failed_store_says_the_local_outputs_are_complete(synthetic_series, tmp_path):
    folder, _, _ = synthetic_series(n_slices=2, folder=tmp_path / "out" / "fused_dicom")
    with pytest.raises(OutputError, match=r"cannot reach .*; the local outputs in .*out are complete$"):
        store_outputs({"fused_dicom": folder}, UNREACHABLE)


def test_store_outputs_needs_a_dicom_output(tmp_path):
    (tmp_path / "fused.nii.gz").write_bytes(b"not dicom")
    with pytest.raises(OutputError, match="no DICOM output"):
        store_outputs({"nifti": tmp_path / "fused.nii.gz"}, UNREACHABLE)
    with pytest.raises(OutputError, match="needs a DICOMweb server"):
        store_outputs({"nifti": tmp_path / "fused.nii.gz"})


def test_store_target():
    assert store_target(None, "http://a/dicom-web") is None
    assert store_target("", "http://a/dicom-web") == "http://a/dicom-web"
    assert store_target("http://b/dicom-web", "http://a/dicom-web") == "http://b/dicom-web"
    with pytest.raises(OutputError, match="none is given"):
        store_target("", None)
    with pytest.raises(InputError, match="not a DICOMweb URL"):
        store_target("pacs:8042", None)


@pytest.fixture
def broken_server():
    """A loopback HTTP server answering every GET with the status in its path (/500/...) or an HTML page."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = int(self.path.split("/")[1]) if self.path.split("/")[1].isdigit() else 200
            body = b"<html>not DICOMweb</html>"
            self.send_response(code)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "path, message",
    [
        ("/500/dicom-web", r"failed while searching for series modality=CT \(HTTP 500 Internal Server Error\); try again later"),
        ("/503/dicom-web", r"failed while searching .*\(HTTP 503 Service Unavailable\)"),
        ("/400/dicom-web", r"rejected the request while searching .*\(HTTP 400 Bad Request\)"),
        ("/html/dicom-web", r"did not answer as a DICOMweb service while searching .*check that the URL is the DICOMweb root"),
    ],
    ids=["500", "503-after-retries", "400", "html"],
)
def test_server_failures(broken_server, path, message):
    with pytest.raises(InputError, match=message) as err:
        DicomWebServer(broken_server + path).find_series(SeriesQuery(modality="CT"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# against Orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def credentials(orthanc, monkeypatch):
    for name, value in orthanc.auth_env().items():
        monkeypatch.setenv(name, value)
    return orthanc


@pytest.fixture(scope="module")
def mridir_on_server(orthanc):
    """The real MRI-DIR CT and MR stored once per module with STOW-RS; the local folders."""
    ct, mr = shared_path("mridir", "ct"), shared_path("mridir", "mr")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in orthanc.auth_env().items():
            patch.setenv(name, value)
        server = DicomWebServer(orthanc.dicomweb_url)
        reports = [server.store(ct), server.store(mr)]
    assert [(r.sent, r.stored) for r in reports] == [(103, 103), (94, 94)]
    assert reports[0].series_uids == [MRIDIR_CT_SERIES] and reports[1].series_uids == [MRIDIR_MR_SERIES]
    return {"ct": ct, "mr": mr}


def test_qido_finds_the_stored_series(credentials, mridir_on_server):
    server = DicomWebServer(credentials.dicomweb_url)
    ct = server.find_series(SeriesQuery.parse("dicomweb:modality=CT"))
    assert (ct.series_uid, ct.modality, ct.series_number, ct.instances) == (MRIDIR_CT_SERIES, "CT", 8, 103)
    mr = server.find_series(SeriesQuery.parse(f"dicomweb:study={MRIDIR_MR_STUDY},description=t2"))
    assert (mr.series_uid, mr.modality, mr.series_number, mr.instances) == (MRIDIR_MR_SERIES, "MR", 6, 94)
    assert server.count_instances(mr) == 94


def test_wado_reproduces_the_local_series(credentials, mridir_on_server, tmp_path):
    with dicomweb_inputs([f"dicomweb:{MRIDIR_CT_SERIES}", "dicomweb:modality=MR,number=6"],
                         credentials.dicomweb_url) as (ct_folder, mr_folder):
        for name, folder in (("ct", ct_folder), ("mr", mr_folder)):
            remote, local = load_image(folder), load_image(mridir_on_server[name])
            assert remote.shape == local.shape
            assert torch.equal(remote.as_tensor(), local.as_tensor())
            np.testing.assert_allclose(remote.affine.numpy(), local.affine.numpy(), atol=1e-4)
            assert remote.meta["series_instance_uid"] == local.meta["series_instance_uid"]
        temporary = Path(ct_folder).parent
    assert not temporary.exists()  # the temporary download is gone once the block ends


def test_no_patient_identifier_is_logged(credentials, mridir_on_server, caplog, tmp_path):
    header = pydicom.dcmread(next(mridir_on_server["ct"].iterdir()), stop_before_pixels=True)
    identifiers = {str(header.PatientName), str(header.PatientID)} - {""}
    caplog.set_level("DEBUG")  # everything: ours, dicomweb-client's, urllib3's
    server = DicomWebServer(credentials.dicomweb_url)
    server.fetch_series(SeriesQuery(modality="CT"), tmp_path)
    with pytest.raises(InputError) as err:
        server.find_series(SeriesQuery(description="*"))
    text = caplog.text + str(err.value)
    assert "QIDO-RS" in text and "WADO-RS" in text
    assert identifiers and not any(name in text for name in identifiers)
    assert credentials.password not in text


def test_the_cache_is_reused(credentials, mridir_on_server, tmp_path):
    with dicomweb_inputs([f"dicomweb:{MRIDIR_MR_SERIES}"], credentials.dicomweb_url, tmp_path) as (first,):
        pass
    stamp = {f: f.stat().st_mtime_ns for f in Path(first).iterdir()}
    with dicomweb_inputs([f"dicomweb:{MRIDIR_MR_SERIES}"], credentials.dicomweb_url, tmp_path) as (second,):
        assert second == first == tmp_path / MRIDIR_MR_SERIES and len(stamp) == 94
        assert {f: f.stat().st_mtime_ns for f in Path(second).iterdir()} == stamp


def test_a_short_retrieval_leaves_nothing_behind(credentials, mridir_on_server, tmp_path):
    server = DicomWebServer(credentials.dicomweb_url)
    series = server.find_series(SeriesQuery(series_uid=MRIDIR_MR_SERIES))
    claims_more = RemoteSeries(**{**series.__dict__, "instances": 95})
    with pytest.raises(InputError, match=r"retrieved 94 of the 95 instance\(s\) of series 6 MR"):
        server.retrieve_series(claims_more, tmp_path / "mr")
    assert list(tmp_path.iterdir()) == []


def test_unknown_series(credentials, mridir_on_server):
    server = DicomWebServer(credentials.dicomweb_url)
    with pytest.raises(InputError, match=r"no series on the DICOMweb server at http://127.0.0.1:\d+/dicom-web matches 'series=1.2.3'"):
        server.find_series(SeriesQuery.parse("dicomweb:1.2.3"))
    with pytest.raises(InputError, match="matches 'modality=PT'"):
        server.find_series(SeriesQuery.parse("dicomweb:modality=PT"))


def test_ambiguous_spec_lists_the_candidates(credentials, mridir_on_server):
    server = DicomWebServer(credentials.dicomweb_url)
    with pytest.raises(InputError) as err:
        server.find_series(SeriesQuery.parse("dicomweb:description=*T*"))
    message = str(err.value)
    assert message.startswith("2 series on the DICOMweb server match 'description=*T*'; narrow the spec")
    assert "series 8 CT 103 instance(s) 'CT'" in message and "series 6 MR 94 instance(s) 'T2'" in message
    assert "\n" not in message


def test_http_errors(orthanc, monkeypatch, mridir_on_server):
    query = SeriesQuery(modality="CT")
    with pytest.raises(InputError, match=r"requires authentication \(HTTP 401 Unauthorized\); set MONAI_FUSION"):
        DicomWebServer(orthanc.dicomweb_url).find_series(query)
    monkeypatch.setenv(USER_ENV, orthanc.user)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    with pytest.raises(InputError, match=r"refused the credentials .* \(HTTP 401") as err:
        DicomWebServer(orthanc.dicomweb_url).find_series(query)
    assert "wrong-password" not in str(err.value)
    monkeypatch.setenv(PASSWORD_ENV, orthanc.password)
    with pytest.raises(InputError, match=r"answered HTTP 404 Not Found .*check that the URL is the DICOMweb root"):
        DicomWebServer(orthanc.http_url + "/no-such-root").find_series(query)


def test_a_derived_series_is_stored_into_the_reference_study(credentials, mridir_on_server, tmp_path):
    """The sink without the fuse pipeline: a derived series of the downloaded MR goes back by STOW-RS."""
    with dicomweb_inputs([f"dicomweb:{MRIDIR_MR_SERIES}"], credentials.dicomweb_url) as (mr_folder,):
        mr = load_image(mr_folder)
        derived = mr[:, ::4, ::4, :]  # a coarser grid in the same world: derived geometry is not the reference's
        derived.affine = mr.affine @ torch.diag(torch.tensor([4.0, 4.0, 1.0, 1.0], dtype=torch.float64))
        write_dicom_series(derived, tmp_path / "derived", series_description="monai-fusion test derived")
    (tmp_path / "derived.nii.gz").write_bytes(b"")  # a non-DICOM output is skipped
    report = store_outputs({"dicom": tmp_path / "derived", "nifti": tmp_path / "derived.nii.gz"}, credentials.dicomweb_url)
    assert (report.sent, report.stored, report.study_uids) == (94, 94, [MRIDIR_MR_STUDY])

    server = DicomWebServer(credentials.dicomweb_url)
    stored = server.find_series(SeriesQuery(study_uid=MRIDIR_MR_STUDY, description="monai-fusion test*"))
    assert (stored.series_uid, stored.modality, stored.instances) == (report.series_uids[0], "MR", 94)
    back_folder = server.retrieve_series(stored, tmp_path / "back")
    back = load_image(back_folder)
    np.testing.assert_allclose(back.affine.numpy(), derived.affine.numpy(), atol=1e-4)
    slope = float(pydicom.dcmread(next(back_folder.iterdir()), stop_before_pixels=True).get("RescaleSlope", 1))
    np.testing.assert_allclose(back.numpy(), derived.numpy(), atol=slope / 2 + 1e-6)


# ---------------------------------------------------------------------------------------------
# end to end: `monai-fusion fuse` with the server as source and sink


def _strided_copy(folder: Path, out: Path, stride: int) -> Path:
    """The real series on every ``stride``-th row and column (voxel values unchanged), written as a
    derived series of the same study: a fast but real input for the end-to-end run."""
    image = load_image(folder)
    small = image[:, ::stride, ::stride, :]
    small.affine = image.affine @ torch.diag(torch.tensor([stride, stride, 1.0, 1.0], dtype=torch.float64))
    write_dicom_series(small, out, reference=image.meta["dicom_files"], modality=image.meta["modality"],
                       series_description=f"{image.meta['series_description']} every {stride}th row/column")
    return out


@pytest.fixture
def small_mridir_server(tmp_path):
    """A fresh Orthanc holding the MRI-DIR CT and MR on every 4th row/column (128 x 128 slices)."""
    ct = _strided_copy(shared_path("mridir", "ct"), tmp_path / "ct_small", 4)
    mr = _strided_copy(shared_path("mridir", "mr"), tmp_path / "mr_small", 4)
    server = start_orthanc(tmp_path / "orthanc")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.auth_env().items():
                patch.setenv(name, value)
            client = DicomWebServer(server.dicomweb_url)
            uids = {name: client.store(folder).series_uids[0] for name, folder in (("ct", ct), ("mr", mr))}
        yield server, uids
    finally:
        server.stop()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--mri", "dicomweb:modality=MR", "--ct", "ct/"], f"needs a DICOMweb server: give --dicomweb URL or set {URL_ENV}"),
        (["--mri", "dicomweb:modality=MR", "--ct", "ct/", "--dicomweb", UNREACHABLE],
         "cannot reach the DICOMweb server at http://127.0.0.1:1/dicom-web (connection refused)"),
        (["--mri", "dicomweb:patient=X", "--ct", "ct/", "--dicomweb", UNREACHABLE], "unknown key 'patient'"),
        (["--mri", "mr/", "--ct", "ct/", "--store-to", UNREACHABLE], "add dicom to --format"),
        (["--mri", "mr/", "--ct", "ct/", "--format", "dicom", "--store-to"], "none is given"),
    ],
    ids=["no-url", "unreachable", "bad-spec", "store-without-dicom", "store-without-url"],
)
def test_fuse_command_errors(options, message, tmp_path, capsys):
    from monai_fusion.cli import main

    code = main(["fuse", *options, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("monai-fusion: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_fuse_reads_from_and_stores_to_the_server(small_mridir_server, monkeypatch, tmp_path, capsys):
    from monai_fusion.cli import main

    orthanc, uids = small_mridir_server
    for name, value in orthanc.auth_env().items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "fused"
    code = main(["fuse", "--mri", "dicomweb:modality=MR,description=T2*", "--ct", f"dicomweb:{uids['ct']}",
                 "--dicomweb", orthanc.dicomweb_url, "--store-to", "--registration", "rigid",
                 "--format", "nifti,dicom", "--no-qc", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert orthanc.password not in captured.out + captured.err
    summary = json.loads(captured.out)
    assert summary["stored"]["sent"] == summary["stored"]["stored"] > 0
    assert summary["stored"]["study_instance_uids"] == [MRIDIR_MR_STUDY]

    local = load_image(out / "fused_dicom")
    server = DicomWebServer(orthanc.dicomweb_url)
    stored = server.find_series(SeriesQuery(series_uid=local.meta["series_instance_uid"]))
    mr_reference = server.find_series(SeriesQuery(series_uid=uids["mr"]))
    assert stored.study_uid == mr_reference.study_uid == MRIDIR_MR_STUDY
    assert (stored.modality, stored.instances) == ("MR", local.shape[-1])
    back = load_image(server.retrieve_series(stored, tmp_path / "back"))
    fused_nifti = load_image(out / "fused.nii.gz")
    assert back.shape == fused_nifti.shape
    np.testing.assert_allclose(back.affine.numpy(), fused_nifti.affine.numpy(), atol=1e-4)
    slope = float(pydicom.dcmread(next((tmp_path / "back").iterdir()), stop_before_pixels=True).get("RescaleSlope", 1))
    np.testing.assert_allclose(back.numpy(), fused_nifti.numpy(), atol=slope / 2 + 1e-6)
