"""A throw-away Orthanc DICOMweb server for tests: loopback only, storage in a temporary folder.

Orthanc and its DICOMweb plugin come from the Debian packages ``orthanc`` and
``orthanc-dicomweb`` (``make test-deps`` installs them when missing and root). Without them the
tests that need a server skip, saying what to install.

The server is started as a subprocess with a generated configuration: a free HTTP port on
127.0.0.1, remote access refused, the DICOM (DIMSE) server disabled, basic authentication with one
generated user, and the DicomWeb plugin loaded from the path the package installs it to.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["OrthancServer", "find_orthanc", "start_orthanc"]

# Where Debian's orthanc-dicomweb puts the plugin (`dpkg -L orthanc-dicomweb`); the first one found wins.
PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
STARTUP_SECONDS = 30.0


@dataclass
class OrthancServer:
    """A running Orthanc: its DICOMweb root URL and the credentials it accepts."""

    process: subprocess.Popen
    http_url: str
    user: str
    password: str
    log_path: Path

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    def auth_env(self) -> dict[str, str]:
        """Environment variables with which monai-fusion authenticates to this server."""
        return {"MONAI_FUSION_DICOMWEB_USER": self.user, "MONAI_FUSION_DICOMWEB_PASSWORD": self.password}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def find_orthanc() -> tuple[str, str]:
    """(Orthanc binary, DicomWeb plugin), or skip the test saying what to install."""
    binary = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc",) if os.access(p, os.X_OK)), None)
    if binary is None:
        pytest.skip("Orthanc not installed (apt-get install orthanc orthanc-dicomweb, or `make test-deps` as root)")
    plugin = os.environ.get("ORTHANC_DICOMWEB_PLUGIN") or next((p for p in PLUGIN_CANDIDATES if os.path.exists(p)), None)
    if plugin is None or not os.path.exists(plugin):
        pytest.skip("Orthanc DICOMweb plugin not installed (apt-get install orthanc-dicomweb; "
                    "or set ORTHANC_DICOMWEB_PLUGIN to libOrthancDicomWeb.so)")
    return binary, plugin


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(folder: Path, port: int, plugin: str, user: str, password: str) -> dict:
    return {
        "Name": "monai-fusion-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "Plugins": [plugin],
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # Orthanc answers 127.0.0.1 only
        "DicomServerEnabled": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},
        "HttpThreadsCount": 4,
        "ConcurrentJobs": 1,
        "StorageCompression": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1", "Ssl": False},
    }


def _wait_until_up(process: subprocess.Popen, url: str, user: str, password: str, log_path: Path) -> None:
    import requests

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode}; see {log_path}")
        try:
            if requests.get(f"{url}/system", auth=(user, password), timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer /system within {STARTUP_SECONDS:.0f} s; see {log_path}")


def start_orthanc(folder: Path, attempts: int = 3) -> OrthancServer:
    """Start Orthanc with storage in ``folder``; retried on another port if the chosen one was taken."""
    binary, plugin = find_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    user, password = "monai-fusion", secrets.token_urlsafe(12)
    error = None
    for attempt in range(attempts):
        port = _free_port()
        config_path = folder / "orthanc.json"
        config_path.write_text(json.dumps(_config(folder, port, plugin, user, password), indent=2))
        log_path = folder / f"orthanc-{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, url, user, password, log_path)
            return OrthancServer(process, url, user, password, log_path)
        except RuntimeError as err:
            error = err
            OrthancServer(process, url, user, password, log_path).stop()
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(f"{error}\n{tail}")
