"""The durable record of a batch run: manifest lines, case sidecars, checksums, input fingerprints.

``<OUT>/manifest.jsonl`` is append-only, one JSON object per finished case attempt, and only the
driver process writes it: each line is written with one ``write`` call, flushed and fsynced before
the next case is reported as done. The last line for a case id is the authoritative one. A line cut
short by a kill is removed when the next run opens the manifest (that case is then recovered from
its sidecar or redone, see :mod:`monai_fusion.workflows.batch`).

Every finished case folder also holds ``.monai-fusion-case.json``, the same record the manifest gets,
written (and fsynced) inside the temporary folder before that folder is renamed into place, so the
rename publishes outputs and record together.

Input fingerprints are cheap and content-free: for a file its size and modification time, for a
folder (a DICOM series) the sorted list of (relative name, size, modification time) of every file in
it, hashed. They detect replaced, edited or added input files without reading gigabytes on every
resume. Outputs are checked by their SHA-256.

This module imports nothing heavy (no torch, no MONAI): the driver and every worker load it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from monai_fusion.errors import InputError, OutputError

__all__ = ["MANIFEST_NAME", "SIDECAR_NAME", "Manifest", "checksum_tree", "fingerprint_input", "files_problem",
           "read_sidecar", "write_durably", "fsync_folder", "sha256_file"]

MANIFEST_NAME = "manifest.jsonl"
SIDECAR_NAME = ".monai-fusion-case.json"
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


def sha256_file(path: Path, sync: bool = False) -> str:
    """Hex SHA-256 of a file's bytes; ``sync`` also flushes the file to disk (``fsync``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
        if sync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SIDECAR_NAME)


def checksum_tree(folder: Path, sync: bool = False) -> dict[str, dict]:
    """``{relative posix path: {"sha256", "bytes"}}`` for every file under ``folder`` (sidecar excluded)."""
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p, sync), "bytes": p.stat().st_size}
            for p in _files_under(folder)}


def files_problem(folder: Path, files: dict[str, dict]) -> str | None:
    """Why the files under ``folder`` no longer match their recorded checksums, or None when they do."""
    if not folder.is_dir():
        return "its output folder is missing"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"output {name} is missing"
        if path.stat().st_size != expected.get("bytes") or sha256_file(path) != expected.get("sha256"):
            return f"output {name} does not match its recorded checksum"
    return None


def fingerprint_input(path: Path, role: str) -> dict:
    """``{"name", "kind", "fingerprint"}`` of an input file or folder; :class:`InputError` when missing."""
    try:
        if path.is_dir():
            listing = [(p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                       for p in sorted(path.rglob("*")) if p.is_file()]
            if not listing:
                raise InputError(f"{role} image folder '{path.name}' is empty")
            digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
            return {"name": path.name, "kind": "folder", "fingerprint": digest}
        stat = path.stat()
    except FileNotFoundError:
        raise InputError(f"{role} image '{path.name}' does not exist; check the datalist") from None
    except PermissionError:
        raise InputError(f"{role} image '{path.name}' cannot be read: permission denied") from None
    digest = hashlib.sha256(json.dumps([stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()
    return {"name": path.name, "kind": "file", "fingerprint": digest}


def fsync_folder(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync, rename into place.

    :func:`monai_fusion.io.atomic.atomic_file` does the same without the fsync, which the resume
    guarantees need; importing :mod:`monai_fusion.io` also costs seconds in every worker process.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_sidecar(case_dir: Path) -> dict | None:
    """The record stored in a finished case folder, or None when absent or unreadable."""
    try:
        record = json.loads((case_dir / SIDECAR_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "ok" else None


class Manifest:
    """``manifest.jsonl``: read (tolerating a cut-off last line) and append durably.

    Example:
        >>> manifest = Manifest(Path("out/manifest.jsonl"))  # doctest: +SKIP
        >>> latest = manifest.load()          # {case id: last record}
        >>> manifest.append({"id": "p001", "status": "ok", ...})
        >>> manifest.close()
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def load(self) -> dict[str, dict]:
        """The last record of each case id; repairs a last line cut short by a kill."""
        if not self.path.exists():
            return {}
        data = self._repaired_bytes()
        latest: dict[str, dict] = {}
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                logger.warning("%s line %d is not valid JSON; ignoring it", self.path.name, number)
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                latest[record["id"]] = record
        return latest

    def _repaired_bytes(self) -> bytes:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
            logger.warning("%s: removed an incomplete last line (the previous run was stopped while writing it)",
                           self.path.name)
            data = data[:keep]
        return data

    def append(self, record: dict) -> None:
        """Append one line; it is on disk when this returns."""
        if self._handle is None:
            created = not self.path.exists()
            try:
                self._handle = open(self.path, "ab")
            except OSError as err:
                raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
            if created:
                fsync_folder(self.path.parent)
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
