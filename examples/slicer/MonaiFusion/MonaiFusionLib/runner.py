"""Run ``monai-fusion fuse`` out of process and turn its report into what Slicer should load.

This file is the half of the MonaiFusion module that needs no Slicer: it imports only the standard
library (no ``slicer``, ``qt``, ``vtk``, and not ``monai_fusion`` either, which lives in Slicer's
Python but is only ever *run*, never imported, by the module). It must import on Python 3.9 so the
module can still say "Slicer's Python is too old" on old Slicer versions.

The pieces, in the order the module uses them:

* :func:`probe_command` / :func:`parse_probe`: is monai-fusion installed in a given Python, which
  version, does it have the ``fuse`` command and which tasks/methods/registrations does it accept.
* :func:`pip_install_args`: what ``slicer.util.pip_install`` is given for the configured package
  spec (default ``monai-fusion``) and, when the user asks for it, for CPU-only PyTorch.
* :class:`FuseRequest` and :func:`fuse_command`: the command line for the user's choices.
* :class:`FuseProcess`: the running command, its stderr streamed line by line, cancellable
  (the whole process tree: ``PythonSlicer`` is a launcher that starts the real interpreter).
* :func:`files_to_load`: the ``--json`` report turned into the volumes to load and how to show them.
* :func:`error_message`: the one line to show when the command fails.
"""

from __future__ import annotations

import codecs
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_PACKAGE_SPEC", "DISTRIBUTION", "MINIMUM_VERSION", "MINIMUM_PYTHON", "TORCH_CPU_INDEX",
    "PACKAGE_SPEC_ENV", "TASKS", "Task", "REGISTRATIONS", "DEFAULT_METHODS", "PET_COLOR_NODE_ID",
    "RunnerError", "Installation", "probe_command", "parse_probe", "probe_installation", "pip_install_args",
    "torch_cpu_install_args", "package_spec", "parse_version", "version_at_least", "FuseRequest",
    "fuse_command", "new_run_folder", "module_launcher", "find_python_slicer", "LoadItem", "parse_summary", "files_to_load",
    "read_nrrd_header", "error_message", "child_environment", "FuseProcess", "FuseOutcome", "finish", "run_fuse",
]

DISTRIBUTION = "monai-fusion"
DEFAULT_PACKAGE_SPEC = "monai-fusion"
PACKAGE_SPEC_ENV = "MONAI_FUSION_SLICER_PACKAGE"  # overrides the module's setting (CI, site installs)
MINIMUM_VERSION = "0.1.0"
MINIMUM_PYTHON = (3, 10)  # monai-fusion's requires-python; Slicer 5.8 and later ship a newer Python
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROGRAM = "monai-fusion"

# Slicer's procedural PET colour map ("PET-Heat"); the MRI stays grey underneath.
PET_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
GREY_COLOR_NODE_ID = "vtkMRMLColorTableNodeGrey"


class RunnerError(ValueError):
    """A problem the user can fix; the message is one line, shown as is in the module."""


@dataclass(frozen=True)
class Task:
    """One fusion task: which option carries the second image and how the module shows it."""

    name: str
    title: str
    moving_option: str  # --ct / --pet / --spect
    moving_label: str  # what the second image is called in the user interface
    overlay_color_node_id: str
    overlay_opacity: float


TASKS: Dict[str, Task] = {
    "ct-mri": Task("ct-mri", "CT - MRI", "--ct", "CT", GREY_COLOR_NODE_ID, 0.5),
    "mri-pet": Task("mri-pet", "MRI - PET", "--pet", "PET", PET_COLOR_NODE_ID, 0.4),
    "mri-spect": Task("mri-spect", "MRI - SPECT", "--spect", "SPECT", PET_COLOR_NODE_ID, 0.4),
}
REGISTRATIONS: Tuple[str, ...] = ("rigid", "affine", "deformable", "none")
# The classical rules every monai-fusion has; the module asks the installed package for its full
# list (networks included) through the probe and falls back to these.
DEFAULT_METHODS: Tuple[str, ...] = ("laplacian_pyramid", "dwt", "guided_filter", "average", "maximum",
                                    "max_abs", "weighted", "pca")


# --------------------------------------------------------------------------------------------
# Installation: probe, version check, pip arguments
# --------------------------------------------------------------------------------------------

_PROBE_SOURCE = r"""
import argparse, json, sys
info = {"python": list(sys.version_info[:3]), "installed": False, "version": None, "commands": [], "choices": {}}
try:
    from importlib import metadata
    info["version"] = metadata.version("monai-fusion")
    info["installed"] = True
except Exception:
    pass
try:
    from importlib import metadata
    info["torch"] = metadata.version("torch")
except Exception:
    info["torch"] = None
if info["installed"]:
    try:
        from monai_fusion.cli import build_parser
        parser = build_parser()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                info["commands"] = sorted(action.choices)
                fuse = action.choices.get("fuse")
                if fuse is not None:
                    for option in fuse._actions:
                        if option.choices is not None and not isinstance(option, argparse._SubParsersAction):
                            info["choices"][option.dest] = [str(c) for c in option.choices]
    except Exception as error:
        info["error"] = type(error).__name__ + ": " + str(error).splitlines()[0] if str(error) else type(error).__name__
    if "fuse" in info["commands"]:  # the workflow's own lists (the command leaves them free-form)
        try:
            from monai_fusion.workflows.methods import available_methods
            info["choices"].setdefault("method", [str(m) for m in available_methods()])
        except Exception:
            pass
        try:
            from monai_fusion.workflows.fuse import REGISTRATIONS
            info["choices"].setdefault("registration", [str(r) for r in REGISTRATIONS])
        except Exception:
            pass
print("MONAI_FUSION_PROBE " + json.dumps(info))
"""


@dataclass
class Installation:
    """What the probe found in one Python interpreter."""

    python: Tuple[int, ...] = ()
    installed: bool = False
    version: Optional[str] = None
    commands: List[str] = field(default_factory=list)
    choices: Dict[str, List[str]] = field(default_factory=dict)
    error: Optional[str] = None
    torch: Optional[str] = None

    @property
    def has_fuse(self) -> bool:
        return "fuse" in self.commands

    @property
    def usable(self) -> bool:
        return self.problem() is None

    def problem(self, minimum_version: str = MINIMUM_VERSION) -> Optional[str]:
        """None when the fuse command can run, else one line saying what is wrong."""
        if self.python and tuple(self.python[:2]) < MINIMUM_PYTHON:
            return (f"Slicer's Python is {'.'.join(map(str, self.python[:2]))}; monai-fusion needs Python "
                    f"{'.'.join(map(str, MINIMUM_PYTHON))} or later (Slicer 5.8 or later)")
        if not self.installed:
            return f"{DISTRIBUTION} is not installed in Slicer's Python"
        if self.error:
            return f"{DISTRIBUTION} {self.version} is installed but cannot be imported ({self.error})"
        if not version_at_least(self.version or "0", minimum_version):
            return f"{DISTRIBUTION} {self.version} is installed; this module needs {minimum_version} or later"
        if not self.has_fuse:
            return f"{DISTRIBUTION} {self.version} has no 'fuse' command; upgrade it"
        return None

    def methods(self) -> List[str]:
        return list(self.choices.get("method") or DEFAULT_METHODS)

    def registrations(self) -> List[str]:
        return list(self.choices.get("registration") or REGISTRATIONS)

    def tasks(self) -> List[str]:
        offered = self.choices.get("task")
        return [name for name in TASKS if not offered or name in offered]


def probe_command(python_executable: str) -> List[str]:
    """Command that prints one ``MONAI_FUSION_PROBE {json}`` line about ``python_executable``."""
    return [str(python_executable), "-c", _PROBE_SOURCE]


def parse_probe(stdout: str) -> Installation:
    """The :class:`Installation` from the probe's output (other lines, e.g. warnings, are ignored)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("MONAI_FUSION_PROBE "):
            data = json.loads(line[len("MONAI_FUSION_PROBE "):])
            return Installation(python=tuple(data.get("python") or ()), installed=bool(data.get("installed")),
                                version=data.get("version"), commands=list(data.get("commands") or []),
                                choices=dict(data.get("choices") or {}), error=data.get("error"),
                                torch=data.get("torch"))
    raise RunnerError("could not query Slicer's Python for monai-fusion (the probe printed nothing)")


def probe_installation(python_executable: str, env: Optional[dict] = None, timeout: float = 120.0) -> Installation:
    """Run the probe (a few seconds: it imports monai_fusion's command-line module)."""
    try:
        done = subprocess.run(probe_command(python_executable), capture_output=True, text=True, encoding="utf-8",
                              errors="replace", env=env, timeout=timeout, **_no_window())
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RunnerError(f"could not run {python_executable}: {error}") from None
    if done.returncode != 0:
        raise RunnerError(f"querying monai-fusion failed: {error_message(done.stderr, done.returncode)}")
    return parse_probe(done.stdout)


def package_spec(configured: Optional[str] = None, environ: Optional[dict] = None) -> str:
    """The pip requirement to install: environment override, else the setting, else ``monai-fusion``.

    Any pip argument string works: ``monai-fusion==0.2.0``, ``monai-fusion[elastix]``, a wheel path,
    ``-e /path/to/checkout`` or ``git+https://...``.
    """
    environ = os.environ if environ is None else environ
    for candidate in (environ.get(PACKAGE_SPEC_ENV), configured):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_PACKAGE_SPEC


def pip_install_args(spec: str, upgrade: bool = False) -> List[str]:
    """Arguments for ``slicer.util.pip_install`` (a list, so paths with spaces survive when quoted)."""
    try:
        args = shlex.split(spec, posix=(os.name != "nt"))
    except ValueError as error:
        raise RunnerError(f"the package spec {spec!r} cannot be parsed: {error}") from None
    if not args:
        raise RunnerError("the package spec is empty; use e.g. 'monai-fusion'")
    return args + (["--upgrade"] if upgrade and "--upgrade" not in args and "-U" not in args else [])


def torch_cpu_install_args() -> List[str]:
    """CPU-only PyTorch wheels (a fraction of the CUDA download); install before monai-fusion."""
    return ["torch", "--index-url", TORCH_CPU_INDEX]


def parse_version(text: str) -> Tuple[int, ...]:
    """Leading numeric release of a version string: ``'0.2.0rc1+g12ab'`` -> ``(0, 2, 0)``."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    if not match:
        raise RunnerError(f"not a version: {text!r}")
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def version_at_least(version: str, minimum: str) -> bool:
    try:
        return parse_version(version) >= parse_version(minimum)
    except RunnerError:
        return False


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------

def find_python_slicer(which: Callable[[str], Optional[str]] = shutil.which, fallback: Optional[str] = None) -> str:
    """Slicer's ``PythonSlicer`` launcher (sets up Slicer's Python environment), else ``fallback``."""
    found = which("PythonSlicer")
    if found:
        return found
    return fallback or sys.executable


def module_launcher(python_executable: str) -> List[str]:
    """``PythonSlicer -m monai_fusion.cli``: no reliance on the console script being on PATH."""
    return [str(python_executable), "-m", "monai_fusion.cli"]


def new_run_folder(parent, now: Optional[time.struct_time] = None) -> Path:
    """A new, not yet existing folder ``fusion-YYYYmmdd-HHMMSS[-N]`` in ``parent``.

    ``fuse --out`` must be new or empty, so a folder chosen by the user gets one subfolder per run.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", now or time.localtime())
    candidate = Path(parent) / f"fusion-{stamp}"
    number = 1
    while candidate.exists():
        number += 1
        candidate = Path(parent) / f"fusion-{stamp}-{number}"
    return candidate


@dataclass(frozen=True)
class FuseRequest:
    """The user's choices: the anatomical MRI is the reference grid, the other image is moved onto it."""

    mri: Path
    moving: Path
    task: str
    method: str
    registration: str
    out_dir: Path
    formats: Tuple[str, ...] = ("nrrd",)
    extra_args: Tuple[str, ...] = ()

    def validate(self, installation: Optional[Installation] = None) -> None:
        tasks = installation.tasks() if installation else list(TASKS)
        if self.task not in tasks:
            raise RunnerError(f"unknown task {self.task!r}; choose one of {', '.join(tasks)}")
        registrations = installation.registrations() if installation else list(REGISTRATIONS)
        if self.registration not in registrations:
            raise RunnerError(f"unknown registration {self.registration!r}; choose one of {', '.join(registrations)}")
        if not self.method or not re.fullmatch(r"[A-Za-z0-9_.:\-]+", self.method):
            raise RunnerError(f"not a fusion method name: {self.method!r}")
        if installation and installation.choices.get("method") and self.method not in installation.choices["method"]:
            raise RunnerError(f"unknown method {self.method!r}; choose one of {', '.join(installation.choices['method'])}")
        if "nrrd" not in self.formats:
            raise RunnerError("the output formats must include nrrd (what Slicer loads back)")
        for label, path in (("MRI", self.mri), (TASKS[self.task].moving_label, self.moving)):
            if not Path(path).is_file():
                raise RunnerError(f"the {label} file {path} does not exist")


def fuse_command(request: FuseRequest, launcher: Sequence[str]) -> List[str]:
    """The full command line: ``launcher fuse --mri M --pet P --task ... --json``."""
    task = TASKS.get(request.task)
    if task is None:
        raise RunnerError(f"unknown task {request.task!r}; choose one of {', '.join(TASKS)}")
    return [*launcher, "fuse",
            "--mri", str(request.mri), task.moving_option, str(request.moving),
            "--task", request.task, "--method", request.method, "--registration", request.registration,
            "--out", str(request.out_dir), "--format", ",".join(request.formats), "--json",
            *request.extra_args]


# --------------------------------------------------------------------------------------------
# The report: what to load and how to show it
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadItem:
    """One file to load into Slicer.

    ``role``: ``fused`` (the fused grey volume; PET/SPECT: the fused luma), ``overlay`` (the
    PET/SPECT/CT resampled onto the MRI grid, shown in colour over the MRI), ``colour`` (PET/SPECT:
    the RGB colour fusion) or ``transform`` (the registration, loaded, not applied).
    ``layer``: slice-view layer it goes to (``foreground`` or ``None``; the MRI node the user chose is
    the background). ``colour``: an RGB volume (colour fusion), shown without a colour map.
    """

    path: Path
    role: str
    name: str
    layer: Optional[str] = None
    color_node_id: Optional[str] = None
    opacity: Optional[float] = None
    colour: bool = False


def parse_summary(stdout: str) -> dict:
    """The JSON object that ``fuse --json`` printed: all of stdout, or the first object that starts a line."""
    text = stdout.strip()
    if not text:
        raise RunnerError("monai-fusion printed no summary (was --json given?)")
    decoder = json.JSONDecoder()
    starts = [0] + [match.start() + 1 for match in re.finditer(r"\n\{", text)]
    for start in starts:
        try:
            summary, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(summary, dict):
            return summary
    raise RunnerError("monai-fusion's summary is not a JSON object; see the log")


def _paths_in(value, trail: Tuple[str, ...] = ()) -> List[Tuple[Tuple[str, ...], str]]:
    """Every string in a nested summary with the keys that lead to it."""
    if isinstance(value, str):
        return [(trail, value)]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            found += _paths_in(item, trail + (str(key),))
        return found
    if isinstance(value, (list, tuple)):
        found = []
        for item in value:
            # a list of records: {"role"/"name"/"kind": ..., "path": ...}
            label = tuple(str(item[k]) for k in ("role", "name", "kind", "output") if isinstance(item, dict) and isinstance(item.get(k), str))
            found += _paths_in(item, trail + label)
        return found
    return []


def _role_of(trail: Tuple[str, ...], path: str) -> Optional[str]:
    words = " ".join(trail + (Path(path).name,)).lower()
    if path.lower().endswith((".tfm", ".h5", ".txt")) and "transform" in words:
        return "transform"
    if not path.lower().endswith(".nrrd"):
        return None
    if "weight" in words or "contribution" in words:
        return None
    if "colour" in words or "color" in words:
        return "colour"
    if "moving" in words or "resampled" in words or "registered" in words:
        return "overlay"
    if "fused" in words or "fusion" in words:
        return "fused"
    return None


def read_nrrd_header(path) -> Dict[str, str]:
    """The fields of a NRRD header (``field: value`` lines up to the blank line); no pynrrd needed."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as handle:
        magic = handle.readline()
        if not magic.startswith(b"NRRD"):
            raise RunnerError(f"{Path(path).name} is not a NRRD file")
        for raw in handle:
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line:
                break
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.lstrip("=").strip()
    return fields


def _is_colour_nrrd(path: Path) -> bool:
    try:
        return "rgb-color" in read_nrrd_header(path).get("kinds", "").lower()
    except (OSError, RunnerError):
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


def files_to_load(summary: dict, task: str, out_dir=None, method: Optional[str] = None) -> List[LoadItem]:
    """The volumes (and transform) to load, fused first, from the ``--json`` summary.

    ``monai-fusion fuse --format nrrd --json`` reports ``outputs`` as ``{name: path}`` with
    ``fused_nrrd``, ``moving_resampled_nrrd``, ``contribution_nrrd`` (not loaded), ``colour_nrrd``
    (PET/SPECT) and ``transform`` (``transform.tfm``/``.h5``); records and nested shapes are read
    too. Relative paths are taken against ``out_dir``; only files under ``out_dir`` count. When the
    summary names none, ``fused.nrrd`` / ``moving_resampled.nrrd`` / ``colour.nrrd`` in ``out_dir``
    are used. A fused volume is required; the others are loaded when present.
    """
    spec = TASKS[task]
    base = Path(out_dir) if out_dir is not None else None
    chosen: Dict[str, Path] = {}
    for trail, text in _paths_in(summary.get("outputs", summary)):
        role = _role_of(trail, text)
        if role is None or role in chosen or any("input" in key.lower() for key in trail):
            continue
        path = Path(text)
        if base is not None and not path.is_absolute():
            path = base / path
        if base is not None and not _inside(path, base):
            continue  # outputs are written under --out; anything else is an input echoed back
        chosen[role] = path
    if base is not None:
        for role, name in (("fused", "fused.nrrd"), ("overlay", "moving_resampled.nrrd"), ("colour", "colour.nrrd")):
            if role not in chosen and (base / name).is_file():
                chosen[role] = base / name
    if "fused" not in chosen:
        raise RunnerError("monai-fusion reported no fused NRRD volume; see the log")
    method = method or summary.get("method") or ""
    items = [LoadItem(chosen["fused"], "fused", f"Fused {spec.title}" + (f" ({method})" if method else ""),
                      colour=_is_colour_nrrd(chosen["fused"]))]
    if "overlay" in chosen:
        colour = _is_colour_nrrd(chosen["overlay"])
        items.append(LoadItem(chosen["overlay"], "overlay", f"{spec.moving_label} on MRI grid", layer="foreground",
                              color_node_id=None if colour else spec.overlay_color_node_id,
                              opacity=spec.overlay_opacity, colour=colour))
    if "colour" in chosen:
        items.append(LoadItem(chosen["colour"], "colour", f"Colour fusion {spec.title}" + (f" ({method})" if method else ""),
                              colour=_is_colour_nrrd(chosen["colour"])))
    if "transform" in chosen:
        items.append(LoadItem(chosen["transform"], "transform", f"{spec.moving_label} to MRI transform"))
    missing = [item.path.name for item in items if not item.path.is_file()]
    if missing:
        raise RunnerError(f"monai-fusion reported {', '.join(missing)} but the file is not there")
    return items


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^monai-fusion(?: [\w-]+)?: (?:error: )?")


def error_message(stderr: str, returncode: Optional[int], cancelled: bool = False) -> str:
    """One line for the user: the command's last stderr line without the program prefix.

    The command prints user errors as ``monai-fusion: error: <what to do>`` (exit 2) and bugs as
    ``monai-fusion: internal error: ...`` (exit 1); argparse prints ``monai-fusion fuse: error: ...``.
    """
    if cancelled:
        return "Cancelled."
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    if lines:
        message = _PREFIX.sub("", lines[-1])
        return message[:1].upper() + message[1:] if message else lines[-1]
    if returncode is not None and returncode < 0:
        return f"{PROGRAM} was stopped by signal {-returncode}"
    return f"{PROGRAM} stopped with exit code {returncode} and no message"


# --------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------

def child_environment(base: Optional[dict] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with UTF-8, unbuffered output for the child."""
    env = dict(os.environ if base is None else base)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _no_window() -> dict:
    """Popen keywords: no console window on Windows, own process group elsewhere (for cancel)."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return {"start_new_session": True}


class FuseProcess:
    """A running command with stdout kept (the JSON report) and stderr streamed as it arrives.

    Poll :meth:`new_log_lines` from a timer (Slicer: ``qt.QTimer``) and :meth:`poll` for the exit
    code; :meth:`cancel` stops the whole process tree. Progress bars redraw their line with a
    carriage return: such a segment is not a log line but the latest :attr:`progress`.
    """

    def __init__(self, command: Sequence[str], env: Optional[dict] = None, cwd=None):
        self.command = [str(part) for part in command]
        self.cancelled = False
        self.progress = ""
        self._lines: "queue.Queue[str]" = queue.Queue()
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, env=env, cwd=cwd, **_no_window())
        except OSError as error:
            raise RunnerError(f"could not start {Path(self.command[0]).name}: {error.strerror or error}") from None
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self._stdout, False), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self._stderr, True), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, keep: List[str], forward: bool) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            chunk = stream.read1(65536)
            text = decoder.decode(chunk, final=not chunk)
            keep.append(text)
            if forward:
                pending = self._forward(pending + text, final=not chunk)
            if not chunk:
                break
        stream.close()

    def _forward(self, text: str, final: bool) -> str:
        """Queue the complete lines of ``text``, keep the latest progress segment; return the rest."""
        text = text.replace("\r\n", "\n")
        if text.endswith("\r") and not final:
            text, held = text[:-1], "\r"  # may be the first half of a Windows line end
        else:
            held = ""
        segments = re.split(r"([\r\n])", text)
        rest = segments.pop() if not final else ""
        for segment, end in zip(segments[0::2], segments[1::2]):
            if end == "\n" and segment.strip():
                self._lines.put(segment.rstrip())
            elif segment.strip():
                self.progress = segment.strip()
        if final and segments and len(segments) % 2 == 1 and segments[-1].strip():
            self._lines.put(segments[-1].rstrip())
        return rest + held

    def new_log_lines(self) -> List[str]:
        """The stderr lines (progress, warnings, errors) that arrived since the last call."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def poll(self) -> Optional[int]:
        """The exit code once the process ended and its output is read, else None."""
        if self.proc.poll() is None:
            return None
        for reader in self._readers:
            reader.join(timeout=5)
        return self.proc.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        self.proc.wait(timeout=timeout)
        return self.poll()

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def cancel(self, grace: float = 3.0) -> None:
        """Stop the command and everything it started (SIGTERM, then SIGKILL after ``grace`` s)."""
        if self.proc.poll() is not None:
            return
        self.cancelled = True
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], capture_output=True, **_no_window())
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class FuseOutcome:
    """How a run ended: the files to load on success, else the one-line message."""

    returncode: Optional[int]
    items: List[LoadItem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    message: str = ""
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.items)


def finish(process: FuseProcess, request: FuseRequest) -> FuseOutcome:
    """Turn an ended :class:`FuseProcess` into a :class:`FuseOutcome`."""
    code = process.poll()
    seconds = time.monotonic() - process.started
    if process.cancelled or code != 0:
        return FuseOutcome(code, message=error_message(process.stderr, code, process.cancelled),
                           cancelled=process.cancelled, seconds=seconds)
    try:
        summary = parse_summary(process.stdout)
        items = files_to_load(summary, request.task, request.out_dir, request.method)
    except RunnerError as error:
        return FuseOutcome(code, message=str(error), seconds=seconds)
    return FuseOutcome(code, items=items, summary=summary, message=f"Fused in {seconds:.1f} s", seconds=seconds)


def run_fuse(request: FuseRequest, launcher: Sequence[str], log: Callable[[str], None] = print,
             env: Optional[dict] = None, poll_interval: float = 0.1, timeout: Optional[float] = None) -> FuseOutcome:
    """Run to completion (batch use and tests), forwarding log lines to ``log``."""
    process = FuseProcess(fuse_command(request, launcher), env=env)
    deadline = None if timeout is None else time.monotonic() + timeout
    while process.poll() is None:
        for line in process.new_log_lines():
            log(line)
        if deadline is not None and time.monotonic() > deadline:
            process.cancel()
            break
        time.sleep(poll_interval)
    for line in process.new_log_lines():
        log(line)
    return finish(process, request)
