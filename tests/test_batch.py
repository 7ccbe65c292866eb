"""``monai-fusion batch``: datalists, resume exactly once after SIGKILL, failure isolation, Dask, corruption."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monai_fusion.cli import main
from monai_fusion.errors import InputError, OutputError
from monai_fusion.workflows.batch import cases_from_batch_datalist, run_batch, run_case
from tests.batch_case_functions import write_case

REPO = Path(__file__).resolve().parents[1]
CASE_FUNCTION = "tests.batch_case_functions:write_case"


def make_datalist(root: Path, n: int, bad=(), boom=(), name="list.json") -> Path:
    (root / "in").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        (root / "in" / f"mri{i}.nii").write_bytes(b"fixed %d" % i)
        content = b"bad" if i in bad else b"boom" if i in boom else b"moving %d" % i
        (root / "in" / f"ct{i}.nii").write_bytes(content)
        items.append({"id": f"p{i:02d}", "mri": f"in/mri{i}.nii", "ct": f"in/ct{i}.nii"})
    path = root / name
    path.write_text(json.dumps({"testing": items}))
    return path


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def markers(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in folder.iterdir():
        counts[marker.name.split(".")[0]] = counts.get(marker.name.split(".")[0], 0) + 1
    return counts


def output_hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith(".")
            and p.name not in ("manifest.jsonl", "summary.csv")}


# --- datalists -------------------------------------------------------------------------------------

def test_json_and_csv_datalists_resolve_relative_paths_and_merge_options(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps({"cases": [
        {"id": "a", "mri": "x/t1.nii.gz", "pet": "/abs/pet", "method": "average"},
        {"fixed": "t2.nii", "moving": "ct", "task": "ct-mri", "formats": ["NIfTI", "nrrd"]}]}))
    cases = cases_from_batch_datalist(tmp_path / "list.json", {"method": "laplacian_pyramid", "registration": "none"})
    assert [c.id for c in cases] == ["a", "case-0002"]
    assert cases[0].fixed == tmp_path / "x" / "t1.nii.gz" and cases[0].moving == Path("/abs/pet")
    assert cases[0].options == {"method": "average", "registration": "none", "task": "mri-pet"}
    assert cases[1].options["formats"] == ["nifti", "nrrd"] and cases[1].options["method"] == "laplacian_pyramid"
    (tmp_path / "list.csv").write_text("\ufeffid,mri,spect,formats\nb, t1.nii ,s.nii,nifti;dicom\n\n")
    (case,) = cases_from_batch_datalist(tmp_path / "list.csv")
    assert case.id == "b" and case.fixed == tmp_path / "t1.nii"
    assert case.options == {"task": "mri-spect", "formats": ["nifti", "dicom"]}
    (tmp_path / "search.csv").write_text("id,mri,ct,orientation_search\nc,t1.nii,ct.nii,off\nd,t1.nii,ct.nii,\n")
    off, default = cases_from_batch_datalist(tmp_path / "search.csv", {"orientation_search": "axes"})
    assert off.options["orientation_search"] == "off" and default.options["orientation_search"] == "axes"


def test_orientation_search_option_reaches_fuse(monkeypatch, tmp_path):
    seen = {}

    def fake_fuse(fixed, moving, **options):
        seen.update(options)
        return type("Run", (), {"outputs": {}})()

    monkeypatch.setattr("monai_fusion.workflows.fuse.fuse", fake_fuse)
    run_case({"id": "a", "fixed": "f", "moving": "m", "options": {"task": "ct-mri", "orientation_search": "off"}},
             str(tmp_path))
    assert seen["registration_options"] == {"orientation_search": "off"} and "orientation_search" not in seen


@pytest.mark.parametrize("content, message", [
    ({"testing": [{"id": "a", "mri": "x"}]}, "no moving image column"),
    ({"testing": [{"id": "a", "ct": "x", "pet": "y", "mri": "z"}]}, "both 'ct' and 'pet'"),
    ({"testing": [{"id": "a", "mri": "x", "ct": "y"}, {"id": "A", "mri": "x", "ct": "y"}]}, "appears twice"),
    ({"testing": [{"id": "../up", "mri": "x", "ct": "y"}]}, "cannot name an output folder"),
    ({"testing": [{"mri": "x", "pet": "y", "task": "ct-mri"}]}, "has a 'pet' image but task 'ct-mri'"),
    ({"testing": [], "cases": []}, "several of them"),
    ({"testing": []}, "lists no case"),
    ({"testing": [{"mri": "x", "ct": "y", "orientation_search": "all"}]}, "orientation_search must be one of"),
])
def test_bad_datalists_fail_up_front_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "list.json").write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        cases_from_batch_datalist(tmp_path / "list.json")
    assert main(["batch", str(tmp_path / "list.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.split("'")[0] in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- running ---------------------------------------------------------------------------------------

def test_failure_isolation_and_summary(tmp_path, capsys, monkeypatch):
    datalist = make_datalist(tmp_path, 5, bad=(1,), boom=(3,))
    (tmp_path / "in" / "mri4.nii").unlink()
    code = main(["batch", str(datalist), "--out", str(tmp_path / "out"), "--workers", "2", "--json",
                 "--case-function", CASE_FUNCTION])
    out, err = capsys.readouterr()
    assert code == 2
    summary = json.loads(out)
    assert summary["counts"]["ok"] == 2 and summary["counts"]["failed"] == 3
    failed = {row["id"]: row["error"] for row in summary["cases"] if row["status"] == "failed"}
    assert failed["p01"] == "modality mismatch: ct1.nii is not a CT; check the datalist"
    assert failed["p03"].startswith("internal error: ZeroDivisionError")
    assert failed["p04"] == "fixed image 'mri4.nii' does not exist; check the datalist"
    assert str(tmp_path / "in") not in out + err  # file names only, never the folders
    assert sorted(line for line in err.splitlines() if "failed:" in line) == [
        f"monai-fusion: case {case} failed: {failed[case]}" for case in ("p01", "p03", "p04")]
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed", "failed"]
    assert rows[0]["outputs"].endswith("p00/qc/report.json") and Path(rows[0]["outputs"].split(";")[0]).is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "manifest.jsonl", "p00", "p02", "summary.csv"]


def test_a_case_that_kills_its_worker_fails_alone(tmp_path):
    datalist = make_datalist(tmp_path, 5)
    (tmp_path / "in" / "ct2.nii").write_bytes(b"die")
    result = run_batch(cases_from_batch_datalist(datalist), tmp_path / "out", workers=2, case_function=write_case)
    assert [row["id"] for row in result.failures] == ["p02"]
    assert "worker process running this case died" in result.failures[0]["error"]
    assert not list((tmp_path / "out").glob(".partial-*"))


def test_sigkill_mid_run_then_rerun_runs_every_case_exactly_once(tmp_path):
    datalist = make_datalist(tmp_path, 20)
    out, marks = tmp_path / "out", tmp_path / "markers"
    marks.mkdir()
    env = {**os.environ, "BATCH_TEST_SLEEP": "0.15", "BATCH_TEST_MARKERS": str(marks),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "monai_fusion.cli", "batch", str(datalist), "--out", str(out), "--workers", "2",
               "--json", "--case-function", CASE_FUNCTION]
    process = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        manifest = out / "manifest.jsonl"
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {line["id"] for line in manifest_lines(out)}
    assert 5 <= len(done_before) < 20, "the kill must land mid-run"
    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    lines = manifest_lines(out)
    assert sorted(line["id"] for line in lines) == [f"p{i:02d}" for i in range(20)]  # 20 ok lines, one per case
    assert all(line["status"] == "ok" for line in lines)
    assert not list(out.glob(".partial-*"))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"p{i:02d}" for i in range(20)]
    executions = markers(marks)
    assert set(executions) == {f"p{i:02d}" for i in range(20)}
    assert all(executions[case] == 1 for case in done_before)  # recorded work is never redone
    rerun = [case for case, count in executions.items() if count > 1]
    assert all(executions[case] == 2 for case in rerun) and len(rerun) <= 4  # only cases in flight at the kill
    assert json.loads(finished.stdout)["counts"]["skipped"] == len(done_before)


def test_resume_redoes_corrupted_outputs_and_recovers_unrecorded_folders(tmp_path, caplog):
    datalist = make_datalist(tmp_path, 4)
    out, marks = tmp_path / "out", tmp_path / "markers"
    marks.mkdir()
    os.environ["BATCH_TEST_MARKERS"] = str(marks)
    try:
        cases = cases_from_batch_datalist(datalist)
        run_batch(cases, out, workers=2, case_function=write_case)
        lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
        last = json.loads(lines[-1])["id"]
        corrupt = "p01" if last != "p01" else "p02"
        (out / corrupt / "fused.bin").write_bytes(b"flipped bits")          # corrupted output
        (out / "manifest.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # killed mid-append
        (out / ".partial-p02-dead").mkdir()                                 # killed mid-case
        result = run_batch(cases, out, workers=2, case_function=write_case)
    finally:
        del os.environ["BATCH_TEST_MARKERS"]
    actions = {row["id"]: row["action"] for row in result.rows}
    assert actions[corrupt] == "ran" and actions[last] == "recovered"
    assert f"case {corrupt}: redoing: output fused.bin does not match its recorded checksum" in result.notes
    assert markers(marks)[corrupt] == 2 and markers(marks)[last] == 1
    assert not list(out.glob(".partial-*")) and all(row["status"] == "ok" for row in result.rows)
    assert len(manifest_lines(out)) == 5  # 3 intact + the redo + the recovered line; every line valid JSON
    (tmp_path / "in" / "ct0.nii").write_bytes(b"another scan")                  # changed input: redone
    result = run_batch(cases, out, workers=1, case_function=write_case)
    assert {row["id"]: row["action"] for row in result.rows}["p00"] == "ran"
    assert "moving image changed" in result.notes[0]


def test_foreign_folders_and_concurrent_runs_are_refused(tmp_path):
    datalist = make_datalist(tmp_path, 2)
    (tmp_path / "out" / "p00").mkdir(parents=True)
    (tmp_path / "out" / "p00" / "mine.txt").write_text("not from batch")
    with pytest.raises(OutputError, match="was not written by monai-fusion batch"):
        run_batch(cases_from_batch_datalist(datalist), tmp_path / "out", workers=1, case_function=write_case)
    assert (tmp_path / "out" / "p00" / "mine.txt").exists()
    import fcntl

    with open(tmp_path / "out" / ".batch.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(OutputError, match="another monai-fusion batch run"):
            run_batch(cases_from_batch_datalist(datalist), tmp_path / "out", workers=1, case_function=write_case)


def test_dask_local_cluster_gives_the_process_pool_outputs_byte_for_byte(tmp_path):
    pytest.importorskip("distributed")
    datalist = make_datalist(tmp_path, 6, bad=(2,))
    cases = cases_from_batch_datalist(datalist, {"method": "average"})
    pool = run_batch(cases, tmp_path / "pool", workers=2, case_function=write_case)
    dask = run_batch(cases, tmp_path / "dask", workers=2, scheduler="dask-local", case_function=write_case)
    assert [r["status"] for r in dask.rows] == [r["status"] for r in pool.rows]
    assert dask.failures[0]["error"] == pool.failures[0]["error"]
    assert output_hashes(tmp_path / "dask") == output_hashes(tmp_path / "pool") != {}


def _tiny_pair(root: Path, index: int) -> tuple[Path, Path]:
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(index)
    grid = np.zeros((24, 24, 24), np.float32)
    grid[6:18, 5:19, 7:17] = 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = []
    for name, values in (("mri", grid * 300 + rng.random(grid.shape) * 20), ("ct", grid * 900 - 500 + rng.random(grid.shape))):
        path = root / f"{name}{index}.nii.gz"
        nib.save(nib.Nifti1Image(values.astype(np.float32), affine), path)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.skipif(importlib.util.find_spec("monai_fusion.workflows.fuse") is None,
                    reason="the fuse pipeline (monai_fusion/workflows/fuse.py) is not there yet")
def test_real_fuse_pipeline_through_the_cli_and_dask(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    items = []
    for i in range(3):
        fixed, moving = _tiny_pair(tmp_path / "in", i)
        items.append({"id": f"r{i}", "mri": str(fixed), "ct": str(moving)})
    (tmp_path / "list.json").write_text(json.dumps({"testing": items}))
    args = ["batch", str(tmp_path / "list.json"), "--registration", "none", "--method", "average", "--json",
            "--workers", "2"]
    code = main(args + ["--out", str(tmp_path / "pool")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0, summary
    assert summary["counts"]["ok"] == 3 and all(row["outputs"] for row in summary["cases"])
    assert main(args + ["--out", str(tmp_path / "dask"), "--scheduler", "dask-local"]) == 0
    capsys.readouterr()
    pool, dask = output_hashes(tmp_path / "pool"), output_hashes(tmp_path / "dask")
    products = {k: v for k, v in pool.items() if not Path(k).name.startswith("report.")}  # reports hold timings
    assert any(k.endswith(".nii.gz") for k in products) and all(dask[k] == v for k, v in products.items())


def test_batch_orientation_values_match_the_registration_settings():
    from monai_fusion.registration.settings import ORIENTATION_SEARCHES as SETTINGS_VALUES
    from monai_fusion.workflows.batch import ORIENTATION_SEARCHES

    assert set(ORIENTATION_SEARCHES) == set(SETTINGS_VALUES)
