"""Where batch cases run: a local process pool or a Dask cluster, behind one generator interface.

Each executor takes :class:`Job` s and yields ``(job, result)`` as cases finish, in completion
order. ``result`` is always a plain dictionary made by :func:`execute_case` in the worker (status
``ok`` or ``failed``): exceptions never cross process boundaries, so a case that fails with an
exception that cannot be pickled still reports its one-line error.

The process pool isolates worker crashes (a study that exhausts memory and gets the worker killed):
when the pool breaks, the cases that had started are rerun one at a time in a fresh single-worker
pool, so only the case that kills its worker again is recorded as failed; the others go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from monai_fusion.errors import InputError, MonaiFusionError
from monai_fusion.workflows.batch_manifest import SIDECAR_NAME, checksum_tree, write_durably

__all__ = ["Job", "execute_case", "available_cores", "run_in_process_pool", "run_on_dask", "dask_client"]

logger = logging.getLogger(__name__)

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


@dataclass(frozen=True)
class Job:
    """One case attempt: the function to call, its case dictionary, where it writes."""

    case_id: str
    function: Callable[[dict, str], dict]
    payload: dict
    partial_root: Path


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def limit_threads(threads: int | None) -> None:
    """Cap the threads of the maths libraries in this process (torch, OpenMP, BLAS, ITK)."""
    if not threads:
        return
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _relative_outputs(outputs: dict, case_dir: Path) -> dict[str, str]:
    relative = {}
    for name, value in (outputs or {}).items():
        path = Path(value)
        path = path if path.is_absolute() else case_dir / path
        try:
            relative[str(name)] = path.resolve().relative_to(case_dir.resolve()).as_posix()
        except ValueError:
            raise RuntimeError(f"the case function reported output {name!r} outside its output folder") from None
        if not path.exists():
            raise RuntimeError(f"the case function reported output {name!r} but did not write it")
    return relative


def _redact(message: str, payload: dict, case_dir: Path) -> str:
    """Keep errors free of folder names that may identify a patient: inputs by file name only."""
    message = message.replace(str(case_dir), payload["id"])
    for key in ("fixed", "moving"):
        path = Path(payload[key])
        for spelling in {str(path), str(path.resolve())}:
            message = message.replace(spelling, path.name)
    return " ".join(message.split())


def failed_result(payload: dict, error: str, kind: str, started: float, seconds: float = 0.0, details: str = "") -> dict:
    return {"id": payload["id"], "status": "failed", "error": error, "error_kind": kind, "started": started,
            "seconds": round(seconds, 3), "traceback": details}


def execute_case(function: Callable[[dict, str], dict], payload: dict, partial_root: str) -> dict:
    """Run one case in ``<partial_root>/<id>``; checksum and record its outputs there (runs in the worker).

    ``payload`` is the case dictionary (``id``, ``fixed``, ``moving``, ``options``, ``threads``)
    plus the bookkeeping (``inputs`` fingerprints, ``attempt`` token) that goes into the record.
    """
    started, clock = time.time(), time.perf_counter()
    root = Path(partial_root)
    case_dir = root / payload["id"]
    case = {key: payload[key] for key in ("id", "fixed", "moving", "options", "threads")}
    try:
        limit_threads(payload.get("threads"))
        shutil.rmtree(root, ignore_errors=True)  # a rerun of a case whose worker died
        root.mkdir(parents=True)
        returned = function(case, str(case_dir)) or {}
        outputs = _relative_outputs(returned.get("outputs", {}), case_dir)
        files = checksum_tree(case_dir, sync=True) if case_dir.is_dir() else {}
        if not files:
            raise RuntimeError("the case function finished without writing any output")
        record = {"id": payload["id"], "status": "ok", "attempt": payload["attempt"], "inputs": payload["inputs"],
                  "options": payload["options"], "outputs": outputs, "files": files, "started": started,
                  "seconds": round(time.perf_counter() - clock, 3)}
        write_durably(case_dir / SIDECAR_NAME, json.dumps(record, indent=1, sort_keys=True).encode())
        return record
    except MonaiFusionError as err:
        kind, error, details = "input", _redact(str(err), payload, case_dir), ""
    except Exception as err:  # a bug or an unexpected library failure: recorded, the batch goes on
        kind, details = "internal", traceback.format_exc()
        error = _redact(f"internal error: {type(err).__name__}: {err}", payload, case_dir)
    return failed_result(payload, error, kind, started, time.perf_counter() - clock, details)


def _initialise_worker(threads: int | None) -> None:
    limit_threads(threads)


def _pool(workers: int, threads: int | None) -> ProcessPoolExecutor:
    # spawn: no inherited driver threads or locks (tqdm's monitor, logging) in the workers
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_initialise_worker, initargs=(threads,))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor workers keep taking queued cases after a Ctrl-C (Python < 3.14 has no
    # terminate_workers()); what they leave is a .partial-* folder that the next run removes.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _run_alone(job: Job, threads: int | None) -> dict:
    pool = _pool(1, threads)
    try:
        return pool.submit(execute_case, job.function, job.payload, str(job.partial_root)).result()
    except BrokenProcessPool:
        return failed_result(job.payload, "the worker process running this case died (killed, or out of memory); "
                             "try it alone with more memory", "crash", time.time())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_in_process_pool(jobs: Iterable[Job], workers: int, threads: int | None) -> Iterator[tuple[Job, dict]]:
    """Run jobs on ``workers`` local processes, yielding ``(job, result)`` as they finish."""
    queue = list(jobs)
    while queue:
        unfinished: list[Job] = []
        pool, completed = _pool(workers, threads), False
        try:
            futures = {pool.submit(execute_case, job.function, job.payload, str(job.partial_root)): job for job in queue}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    unfinished.append(futures[future])
                    continue
                yield futures[future], result
            completed = True
        finally:
            if not completed:  # interrupted, or the driver failed: stop the workers now, not after the queue
                _stop_workers(pool)
            pool.shutdown(wait=completed and not unfinished, cancel_futures=True)
        started = [job for job in unfinished if job.partial_root.exists()]
        queue = [job for job in unfinished if not job.partial_root.exists()]
        if started:
            logger.warning("a worker process died; rerunning the %d case(s) it may have been running one at a time",
                           len(started))
        for job in started:
            yield job, _run_alone(job, threads)


@contextlib.contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator:
    """A ``distributed.Client``: ``dask-local`` starts a LocalCluster on loopback, else connect to an address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("the Dask scheduler needs the 'distributed' package; pip install 'dask[distributed]'") from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # Dask logs every connection at INFO
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if scheduler == "dask-local":
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       host="127.0.0.1", dashboard_address=None,
                                                       silence_logs=logging.ERROR))
            address = cluster.scheduler_address
        else:
            address = scheduler
        try:
            client = stack.enter_context(Client(address, timeout="20s"))
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({type(err).__name__}); "
                             "check the address and that the scheduler is running") from None
        yield client


def execute_on_dask_worker(function: Callable[[dict, str], dict], payload: dict, partial_root: str) -> dict:
    """:func:`execute_case` with the thread count chosen for this worker when the driver left it open."""
    if not payload.get("threads"):
        from distributed import get_worker

        payload = {**payload, "threads": max(1, available_cores() // max(1, get_worker().state.nthreads))}
    return execute_case(function, payload, partial_root)


def run_on_dask(jobs: Iterable[Job], client) -> Iterator[tuple[Job, dict]]:
    """Run jobs on a Dask cluster, yielding ``(job, result)`` as they finish."""
    from distributed import as_completed as dask_as_completed

    futures = {client.submit(execute_on_dask_worker, job.function, job.payload, str(job.partial_root),
                             key=f"monai-fusion-batch-{job.case_id}-{job.payload['attempt']}", pure=False): job
               for job in jobs}
    try:
        for future in dask_as_completed(list(futures)):
            job = futures[future]
            try:
                result = future.result()
            except Exception as err:  # KilledWorker, CancelledError, a worker that lost the case
                result = failed_result(job.payload, f"the Dask worker running this case failed: {type(err).__name__}: "
                                       f"{' '.join(str(err).split())[:300]}", "crash", time.time())
            yield job, result
    finally:
        client.cancel([f for f in futures if not f.done()])
