"""``monai-fusion batch``: fuse every case of a datalist, in parallel, resumably, each case exactly once.

The datalist (JSON or CSV, see :func:`cases_from_batch_datalist` and ``docs/batch.md``) names the
fixed and moving image of each case and, optionally, per-case options that override the
command-line defaults. Each case runs :func:`run_case` (a thin wrapper of
:func:`monai_fusion.workflows.fuse.fuse`) in a worker process of a local pool or on a Dask cluster.

Exactly once, whatever the point at which a run is killed:

1. A case writes into ``<OUT>/.partial-<id>-<token>/<id>``; the worker checksums the outputs and
   writes the case record (``.monai-fusion-case.json``) there, fsynced.
2. The driver renames that folder to ``<OUT>/<id>`` (atomic), then appends the record to
   ``<OUT>/manifest.jsonl`` (flushed and fsynced). Only the driver writes either.
3. On start (under an exclusive lock on ``<OUT>/.batch.lock``) the driver removes every
   ``.partial-*`` entry, drops a manifest line cut short by a kill, and decides per case: *skip*
   (manifest says ok, same inputs and options, every output matches its SHA-256), *recover* (a
   case folder whose record is not in the manifest: killed between rename and append; its sidecar
   is verified the same way and appended), or *run* (everything else; the reason is reported, and
   a stale case folder is moved into a ``.partial-*`` name before it is deleted).

A case that fails (bad input: a :class:`~monai_fusion.errors.MonaiFusionError`; or a bug) is recorded
as ``failed`` with its one-line error and the others go on; failed cases are retried by the next run.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import logging
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from monai_fusion.errors import InputError, OutputError
from monai_fusion.workflows.batch_executors import Job, available_cores, dask_client, run_in_process_pool, run_on_dask
from monai_fusion.workflows.batch_manifest import (
    MANIFEST_NAME,
    Manifest,
    files_problem,
    fingerprint_input,
    fsync_folder,
    read_sidecar,
    write_durably,
)
from monai_fusion.workflows.datalist import read_datalist, resolve_datalist_path

__all__ = ["BatchCase", "BatchResult", "cases_from_batch_datalist", "run_case", "run_batch", "load_case_function",
           "default_workers", "LIST_KEYS", "SCHEDULERS"]

logger = logging.getLogger(__name__)

LIST_KEYS = ("testing", "cases", "data")
FIXED_COLUMNS = ("fixed", "mri")
#: moving-image column -> the task it implies (None: take the task option)
MOVING_COLUMNS = {"moving": None, "ct": "ct-mri", "pet": "mri-pet", "spect": "mri-spect"}
OPTION_COLUMNS = ("task", "method", "registration", "formats", "orientation_search")
#: The values of registration.settings.ORIENTATION_SEARCHES, repeated here so that validating a
#: datalist does not import torch (this module runs in every worker and in the CLI's first second).
ORIENTATION_SEARCHES = ("axes", "off")
SCHEDULERS = ("processes", "local", "dask-local", "tcp://HOST:PORT")
SUMMARY_NAME = "summary.csv"
PARTIAL_PREFIX = ".partial-"
_RESERVED_IDS = {MANIFEST_NAME, SUMMARY_NAME, "summary.json"}
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class BatchCase:
    """One case: its id (also its output folder name), the two images, its fuse options."""

    id: str
    fixed: Path
    moving: Path
    options: dict = field(default_factory=dict)


@dataclass
class BatchResult:
    """One row per case (datalist order), the redo notes, and where the records are."""

    out_dir: Path
    rows: list[dict]
    notes: list[str]
    seconds: float

    @property
    def failures(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "failed"]

    def counts(self) -> dict[str, int]:
        counts = {"cases": len(self.rows), "ok": 0, "failed": 0, "ran": 0, "skipped": 0, "recovered": 0}
        for row in self.rows:
            counts[row["status"]] += 1
            counts[row["action"]] = counts.get(row["action"], 0) + 1
        return counts

    def report(self) -> str:
        """The closing summary the command prints (case ids and counts only)."""
        counts = self.counts()
        lines = [f"{counts['cases']} case(s): {counts['ok']} ok, {counts['failed']} failed "
                 f"({counts['ran']} run now, {counts['skipped']} already done, {counts['recovered']} recovered) "
                 f"in {self.seconds:.1f} s", f"outputs: {self.out_dir}", f"summary: {self.out_dir / SUMMARY_NAME}",
                 f"manifest: {self.out_dir / MANIFEST_NAME}"]
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"out_dir": str(self.out_dir), "manifest": str(self.out_dir / MANIFEST_NAME),
                "summary_csv": str(self.out_dir / SUMMARY_NAME), "seconds": round(self.seconds, 3),
                "counts": self.counts(), "notes": self.notes, "cases": self.rows}


# --- the datalist ---------------------------------------------------------------------------------

def _formats(value, where: str) -> list[str]:
    names = re.split(r"[;,\s]+", value) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{where}: formats must be a list of names or a string like 'nifti;nrrd'")
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise InputError(f"{where}: formats is empty; name at least one output format")
    return names


def _one_column(item: dict, columns: Sequence[str], role: str, where: str) -> str:
    present = [c for c in columns if item.get(c) not in (None, "")]
    if len(present) != 1:
        names = " or ".join(repr(c) for c in columns)
        found = ", ".join(repr(k) for k in item) or "none"
        problem = f"both {present[0]!r} and {present[1]!r}" if present else f"no {role} image column ({names})"
        raise InputError(f"{where} has {problem}; give exactly one {role} image per case (columns found: {found})")
    return present[0]


def _case_options(item: dict, moving_column: str, defaults: dict, where: str) -> dict:
    options = {k: v for k, v in defaults.items() if v is not None}
    implied = MOVING_COLUMNS[moving_column]
    if implied:
        options["task"] = implied
    for column in OPTION_COLUMNS:
        value = item.get(column, item.get("format") if column == "formats" else None)
        if value in (None, ""):
            continue
        if column != "formats" and not isinstance(value, str):
            raise InputError(f"{where}: {column} must be a text value")
        if column == "task" and implied and value != implied:
            raise InputError(f"{where} has a {moving_column!r} image but task {value!r}; "
                             f"use the 'moving' column for task {value!r}, or task {implied!r}")
        options[column] = value
    if options.get("orientation_search", "axes") not in ORIENTATION_SEARCHES:
        raise InputError(f"{where}: orientation_search must be one of {', '.join(ORIENTATION_SEARCHES)}, "
                         f"not {options['orientation_search']!r}")
    if "formats" in options:
        options["formats"] = _formats(options["formats"], where)
    return options


def _case_id(item: dict, number: int, where: str) -> str:
    value = item.get("id")
    case_id = f"case-{number:04d}" if value in (None, "") else str(value)
    if not _ID_PATTERN.fullmatch(case_id) or case_id.lower() in _RESERVED_IDS:
        raise InputError(f"{where}: id {case_id!r} cannot name an output folder; use up to 128 letters, digits, "
                         "'.', '_' and '-', starting with a letter or digit")
    return case_id


def _image_path(item: dict, column: str, datalist: Path, where: str) -> Path:
    value = item[column]
    if not isinstance(value, str):
        raise InputError(f"{where}: {column!r} must be one path (a file, or the folder of a DICOM series)")
    return resolve_datalist_path(value, datalist).absolute()


def _warn_unknown_columns(items: list[dict], path: Path) -> None:
    known = {"id", "format", *FIXED_COLUMNS, *MOVING_COLUMNS, *OPTION_COLUMNS}
    unknown = sorted({key for item in items for key in item} - known)
    if unknown:
        logger.warning("%s: ignoring unknown column(s) %s", path.name, ", ".join(repr(k) for k in unknown))


def cases_from_batch_datalist(path: str | Path, defaults: dict | None = None) -> list[BatchCase]:
    """The cases of a batch datalist, validated as a whole before anything runs.

    JSON: ``{"testing" | "cases" | "data": [case, ...]}`` or a bare list; CSV: the same columns.
    Each case has a fixed image (``fixed`` or ``mri``), one moving image (``moving``, ``ct``,
    ``pet`` or ``spect``; the last three imply the task ``ct-mri``, ``mri-pet``, ``mri-spect``),
    and optionally ``id``, ``task``, ``method``, ``registration`` and ``formats`` (list, or
    ``"nifti;nrrd"``), which override ``defaults``. Relative paths are resolved against the
    datalist's folder. Cases without an id are named ``case-0001``... by position.

    Raises:
        InputError: unreadable datalist, a case without its images, two moving images, an id that
            cannot name a folder, or a duplicate id (one line naming the case).
    """
    path = Path(path)
    items = read_datalist(path, list_keys=LIST_KEYS)
    if not items:
        raise InputError(f"{path} lists no case")
    _warn_unknown_columns(items, path)
    cases, seen = [], {}
    for number, item in enumerate(items, 1):
        where = f"{path.name}: case {number}"
        case_id = _case_id(item, number, where)
        if case_id.casefold() in seen:
            raise InputError(f"{path.name}: case id {case_id!r} appears twice (cases {seen[case_id.casefold()]} and "
                             f"{number}); ids must be unique (letter case ignored)")
        seen[case_id.casefold()] = number
        where = f"{path.name}: case {number} ({case_id})"
        fixed_column = _one_column(item, FIXED_COLUMNS, "fixed", where)
        moving_column = _one_column(item, tuple(MOVING_COLUMNS), "moving", where)
        cases.append(BatchCase(case_id, _image_path(item, fixed_column, path, where),
                               _image_path(item, moving_column, path, where),
                               _case_options(item, moving_column, defaults or {}, where)))
    return cases


# --- the default case function --------------------------------------------------------------------

def run_case(case: dict, out_dir: str) -> dict:
    """Fuse one case with :func:`monai_fusion.workflows.fuse.fuse` into ``out_dir`` (runs in a worker).

    ``case`` holds ``id``, ``fixed``, ``moving``, ``options`` (task, method, registration, formats,
    orientation_search)
    and ``threads``. Returns ``{"outputs": {name: path}}``. Any replacement (``--case-function``)
    must be a picklable top-level function with this contract.
    """
    from monai_fusion.workflows.fuse import fuse

    options = dict(case["options"])
    if "formats" in options:
        options["formats"] = tuple(options["formats"])
    if "orientation_search" in options:
        options["registration_options"] = {"orientation_search": options.pop("orientation_search")}
    run = fuse(case["fixed"], case["moving"], out_dir=out_dir, threads=case.get("threads"), progress=False, **options)
    return {"outputs": {name: str(path) for name, path in run.outputs.items()}}


def load_case_function(reference: str) -> Callable[[dict, str], dict]:
    """``"package.module:function"`` -> the function (the hidden ``--case-function`` option)."""
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise InputError(f"cannot import case function {reference!r}; give it as module:function") from None
    if not callable(function):
        raise InputError(f"case function {reference!r} is not callable")
    return function


def default_workers() -> int:
    """Parallel cases when ``--workers`` is not given: half the cores, at most 4 (fusion is memory-hungry)."""
    return max(1, min(4, available_cores() // 2))


# --- planning -------------------------------------------------------------------------------------

@dataclass
class _Decision:
    case: BatchCase
    action: str  # "skip", "recover", "run", "fail"
    inputs: dict | None = None
    record: dict | None = None
    reason: str | None = None
    remove: bool = False  # an existing case folder must go before the case runs


def _record_problem(record: dict, inputs: dict, options: dict, case_dir: Path) -> str | None:
    if record.get("inputs") != inputs:
        changed = [role for role in ("fixed", "moving") if (record.get("inputs") or {}).get(role) != inputs[role]]
        return f"its {' and '.join(changed) or 'input'} image changed since it was processed"
    if record.get("options") != options:
        return "its options changed since it was processed"
    return files_problem(case_dir, record.get("files") or {})


def _plan_case(case: BatchCase, out_dir: Path, record: dict | None) -> _Decision:
    case_dir = out_dir / case.id
    try:
        inputs = {"fixed": fingerprint_input(case.fixed, "fixed"), "moving": fingerprint_input(case.moving, "moving")}
    except InputError as err:  # an existing case folder is kept: it is recovered once the input is back
        return _Decision(case, "fail", reason=str(err))
    ok_record = record if record and record.get("status") == "ok" else None
    sidecar = read_sidecar(case_dir) if case_dir.is_dir() else None
    if case_dir.exists() and sidecar is None and ok_record is None:
        raise OutputError(f"{case_dir} exists but was not written by monai-fusion batch; "
                          "move it away or choose another --out")
    if sidecar is not None and (ok_record is None or sidecar.get("attempt") != ok_record.get("attempt")):
        problem = _record_problem(sidecar, inputs, case.options, case_dir)
        if problem is None:
            return _Decision(case, "recover", inputs, record=sidecar)
        return _Decision(case, "run", inputs, reason=f"unrecorded output folder: {problem}", remove=True)
    if ok_record is not None:
        problem = _record_problem(ok_record, inputs, case.options, case_dir)
        if problem is None:
            return _Decision(case, "skip", inputs, record=ok_record)
        return _Decision(case, "run", inputs, reason=problem, remove=case_dir.exists())
    return _Decision(case, "run", inputs, remove=case_dir.exists())


# --- the run --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, documented
        yield
        return
    with open(out_dir / ".batch.lock", "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another monai-fusion batch run is writing to {out_dir}; "
                              "wait for it to finish or choose another --out") from None
        yield


def _prepare_out_dir(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir).absolute()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {out_dir}: {err.strerror or err}; choose another --out") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out_dir}: permission denied; choose another --out")
    return out_dir


def _remove_stale_partials(out_dir: Path) -> None:
    for entry in out_dir.glob(PARTIAL_PREFIX + "*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _discard_case_folder(out_dir: Path, case_id: str) -> None:
    """Move a stale case folder to a ``.partial-`` name first: a kill mid-delete leaves nothing half-valid."""
    doomed = out_dir / f"{PARTIAL_PREFIX}{case_id}-{uuid.uuid4().hex[:8]}-old"
    os.replace(out_dir / case_id, doomed)
    fsync_folder(out_dir)
    shutil.rmtree(doomed, ignore_errors=True)


def _row(case: BatchCase, record: dict, action: str, out_dir: Path) -> dict:
    outputs = {name: str(out_dir / case.id / rel) for name, rel in (record.get("outputs") or {}).items()}
    return {"id": case.id, "status": record["status"], "action": action, "seconds": record.get("seconds", 0.0),
            "error": record.get("error", ""), "outputs": outputs}


def _manifest_record(result: dict, payload: dict, run_token: str) -> dict:
    record = {key: value for key, value in result.items() if key != "traceback"}
    record.update({"attempt": payload["attempt"], "inputs": payload["inputs"], "options": payload["options"],
                   "finished": time.time(), "run": run_token})
    return record


def _publish(job: Job, result: dict, out_dir: Path) -> dict:
    """Move a finished case folder into place; a failure to do so fails the case."""
    if result["status"] == "ok":
        try:
            os.replace(job.partial_root / job.case_id, out_dir / job.case_id)
            fsync_folder(out_dir)
        except OSError as err:
            result = {"id": job.case_id, "status": "failed", "error_kind": "output", "seconds": result["seconds"],
                      "started": result["started"],
                      "error": f"its output folder could not be moved into place ({err.strerror or err}); on a "
                               "Dask cluster --out must be a folder every machine sees at the same path"}
    shutil.rmtree(job.partial_root, ignore_errors=True)
    return result


def _payload(decision: _Decision, threads: int | None) -> dict:
    case = decision.case
    return {"id": case.id, "fixed": str(case.fixed), "moving": str(case.moving), "options": case.options,
            "threads": threads, "inputs": decision.inputs, "attempt": uuid.uuid4().hex[:12]}


def _executor(scheduler: str, jobs: list[Job], workers: int, threads: int | None, stack: contextlib.ExitStack):
    if scheduler in ("processes", "local"):
        return run_in_process_pool(jobs, workers, threads)
    if scheduler == "dask-local" or scheduler.startswith("tcp://") or scheduler.startswith("tls://"):
        return run_on_dask(jobs, stack.enter_context(dask_client(scheduler, workers)))
    raise InputError(f"unknown scheduler {scheduler!r}; choose processes (default), dask-local or tcp://HOST:PORT")


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="batch", unit="case", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


def run_batch(
    cases: Sequence[BatchCase],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str = "processes",
    case_function: Callable[[dict, str], dict] | None = None,
    progress: bool = False,
) -> BatchResult:
    """Run every case not yet done into ``out_dir/<id>``; returns one row per case.

    Args:
        cases: from :func:`cases_from_batch_datalist` (ids must be unique).
        out_dir: where case folders, ``manifest.jsonl`` and ``summary.csv`` go; rerunning with the
            same folder resumes (see the module docstring).
        workers: cases run in parallel (default :func:`default_workers`); each gets
            ``cores // workers`` threads (a remote Dask cluster: ``cores // nthreads`` of its worker).
        scheduler: ``"processes"`` (local pool), ``"dask-local"`` (a Dask ``LocalCluster`` on
            loopback) or a Dask scheduler address ``"tcp://host:port"``.
        case_function: picklable top-level ``f(case, out_dir) -> {"outputs": {...}}``; default
            :func:`run_case`.
        progress: show a progress bar on stderr.
    """
    if len({case.id.casefold() for case in cases}) != len(cases):
        raise InputError("case ids must be unique (letter case ignored)")
    workers = workers or default_workers()
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    threads = None if scheduler.startswith(("tcp://", "tls://")) else max(1, available_cores() // workers)
    clock = time.perf_counter()
    out_dir = _prepare_out_dir(out_dir)
    with _exclusive(out_dir), contextlib.ExitStack() as stack:
        _remove_stale_partials(out_dir)
        manifest = Manifest(out_dir / MANIFEST_NAME)
        stack.callback(manifest.close)
        latest = manifest.load()
        decisions = [_plan_case(case, out_dir, latest.get(case.id)) for case in cases]
        run_token = uuid.uuid4().hex[:8]
        rows, notes, jobs = {}, [], []
        for decision in decisions:
            rows_or_job = _apply(decision, out_dir, manifest, run_token, threads, case_function or run_case, notes)
            if isinstance(rows_or_job, Job):
                jobs.append(rows_or_job)
            else:
                rows[decision.case.id] = rows_or_job
        bar = stack.enter_context(_progress(len(cases), len(rows), progress))
        by_id = {decision.case.id: decision.case for decision in decisions}
        for job, result in (_executor(scheduler, jobs, workers, threads, stack) if jobs else ()):
            if result.get("error_kind") == "internal":
                logger.debug("case %s: %s", job.case_id, result.get("traceback", ""))
            result = _publish(job, result, out_dir)
            manifest.append(_manifest_record(result, job.payload, run_token))
            rows[job.case_id] = _row(by_id[job.case_id], result, "ran", out_dir)
            bar.update(1)
        ordered = [rows[case.id] for case in cases]
        result = BatchResult(out_dir, ordered, notes, time.perf_counter() - clock)
        write_summary_csv(result)
    return result


def _apply(decision: _Decision, out_dir: Path, manifest: Manifest, run_token: str, threads: int | None,
           function: Callable, notes: list[str]) -> dict | Job:
    """Carry out a planning decision: a finished row, or a job to run."""
    case = decision.case
    if decision.action == "skip":
        return _row(case, decision.record, "skipped", out_dir)
    if decision.action == "recover":
        record = {**decision.record, "recovered": True, "finished": time.time(), "run": run_token}
        manifest.append(record)
        notes.append(f"case {case.id}: recovered its finished output folder (the manifest line was missing)")
        return _row(case, record, "recovered", out_dir)
    if decision.remove:
        _discard_case_folder(out_dir, case.id)
    if decision.action == "fail":
        record = {"id": case.id, "status": "failed", "error": decision.reason, "error_kind": "input",
                  "options": case.options, "seconds": 0.0, "started": time.time(), "finished": time.time(),
                  "run": run_token}
        manifest.append(record)
        return _row(case, record, "ran", out_dir)
    if decision.reason:
        notes.append(f"case {case.id}: redoing: {decision.reason}")
        logger.warning("case %s: redoing: %s", case.id, decision.reason)
    payload = _payload(decision, threads)
    return Job(case.id, function, payload, out_dir / f"{PARTIAL_PREFIX}{case.id}-{payload['attempt']}")


def write_summary_csv(result: BatchResult) -> Path:
    """``summary.csv``: id, status, action, seconds, error, outputs (``;``-separated paths), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "status", "action", "seconds", "error", "outputs"])
    for row in result.rows:
        writer.writerow([row["id"], row["status"], row["action"], f"{float(row['seconds']):.3f}", row["error"],
                         ";".join(row["outputs"].values())])
    path = result.out_dir / SUMMARY_NAME
    write_durably(path, buffer.getvalue().encode())
    return path
