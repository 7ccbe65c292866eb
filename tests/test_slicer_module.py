"""The 3D Slicer module in examples/slicer/MonaiFusion, without Slicer.

``MonaiFusionLib/runner.py`` is the module's Slicer-free half: it is run here for real (the
``monai-fusion fuse`` command in a subprocess, as Slicer runs it through ``PythonSlicer``) on small
volumes written the way Slicer writes them (LPS NRRD with ``space directions``), and the files the
module would load are checked for the reference geometry. ``MonaiFusion.py`` itself needs Slicer:
it is compiled, and its logic class is imported with stand-in ``slicer``/``qt``/``ctk``/``vtk``
modules to check the glue (export, request, command) it adds.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import py_compile
import sys
import time
import types
from pathlib import Path

import nrrd
import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "examples" / "slicer" / "MonaiFusion"
LPS = "left-posterior-superior"


def _load_runner():
    spec = importlib.util.spec_from_file_location("monai_fusion_slicer_runner", MODULE_DIR / "MonaiFusionLib" / "runner.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
LAUNCHER = runner.module_launcher(sys.executable)  # what the module runs: PythonSlicer -m monai_fusion.cli


# ------------------------------------------------------------------------------------------
# volumes as Slicer writes them
# ------------------------------------------------------------------------------------------

def _rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def write_slicer_nrrd(path: Path, data: np.ndarray, spacing, origin_lps, rotation=np.eye(3)) -> Path:
    """A volume the way Slicer's NRRD writer stores it: LPS space, one direction row per axis."""
    directions = (rotation * np.asarray(spacing, float)).T  # row i: step along voxel axis i, in LPS mm
    header = {"type": {np.dtype("float32"): "float", np.dtype("int16"): "short"}[data.dtype], "dimension": 3,
              "space": LPS, "space directions": directions, "space origin": np.asarray(origin_lps, float),
              "kinds": ["domain"] * 3, "endian": "little", "encoding": "gzip"}
    nrrd.write(str(path), data, header, index_order="F")
    return path


def _blob(shape, centre, width) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre)) / (2 * width ** 2))


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """An oblique anisotropic MRI (the reference) and CT/PET/SPECT on coarser grids over the same region."""
    folder = tmp_path_factory.mktemp("slicer_inputs")
    rng = np.random.default_rng(7)
    rotation = _rotation_z(10.0)
    mri = (400 * _blob((20, 22, 16), (10, 11, 8), 5) + 100 * _blob((20, 22, 16), (6, 14, 8), 3)
           + rng.normal(0, 5, (20, 22, 16))).astype(np.float32)
    paths = {"mri": write_slicer_nrrd(folder / "mri.nrrd", mri, (1.2, 1.0, 1.5), (-12.0, 15.0, -9.0), rotation)}
    coarse = dict(spacing=(2.0, 2.0, 2.0), origin_lps=(-14.0, 12.0, -10.0))
    ct = np.round(1000 * _blob((14, 14, 14), (7, 7, 6), 4) - 500).astype(np.int16)
    paths["ct"] = write_slicer_nrrd(folder / "ct.nrrd", ct, **coarse)
    paths["pet"] = write_slicer_nrrd(folder / "pet.nrrd", (8 * _blob((14, 14, 14), (8, 6, 7), 2)).astype(np.float32), **coarse)
    paths["spect"] = write_slicer_nrrd(folder / "spect.nrrd", (300 * _blob((14, 14, 14), (6, 8, 7), 3)).astype(np.float32), **coarse)
    return paths


@functools.lru_cache(maxsize=1)
def probe_this_python():
    return runner.probe_installation(sys.executable)


@pytest.fixture(scope="module")
def fuse_installed():
    """The real ``monai-fusion fuse`` in this environment, or a skip naming what is missing."""
    installation = probe_this_python()
    if not installation.has_fuse:
        pytest.skip("`monai-fusion fuse` does not exist yet: monai_fusion.cli has no 'fuse' subcommand "
                    f"(commands: {', '.join(installation.commands)})")
    return installation


# ------------------------------------------------------------------------------------------
# installation probe, package spec, versions
# ------------------------------------------------------------------------------------------

def test_probe_reports_this_installation():
    from monai_fusion import __version__

    installation = probe_this_python()
    assert installation.installed and installation.version == __version__
    assert installation.python[:2] == tuple(sys.version_info[:2])
    assert {"info", "demo"} <= set(installation.commands) and installation.error is None
    assert installation.problem() in (None, f"monai-fusion {__version__} has no 'fuse' command; upgrade it")


def test_probe_problems_are_one_line():
    assert runner.Installation(python=(3, 9, 18)).problem().startswith("Slicer's Python is 3.9;")
    assert runner.Installation(python=(3, 12, 0)).problem() == "monai-fusion is not installed in Slicer's Python"
    old = runner.Installation(python=(3, 12, 0), installed=True, version="0.0.9", commands=["fuse"])
    assert "needs 0.1.0 or later" in old.problem()
    ready = runner.Installation(python=(3, 12, 0), installed=True, version="0.1.0", commands=["fuse", "info"],
                                choices={"method": ["average", "fusion_net"]})
    assert ready.problem() is None and ready.methods() == ["average", "fusion_net"]
    assert ready.registrations() == list(runner.REGISTRATIONS) and ready.tasks() == list(runner.TASKS)
    with pytest.raises(runner.RunnerError, match="printed nothing"):
        runner.parse_probe("some warning\n")


def test_package_spec_and_pip_arguments():
    assert runner.package_spec(None, environ={}) == "monai-fusion"
    assert runner.package_spec("  monai-fusion==0.2.0 ", environ={}) == "monai-fusion==0.2.0"
    assert runner.package_spec("monai-fusion", environ={runner.PACKAGE_SPEC_ENV: "-e /src/monai-fusion"}) == "-e /src/monai-fusion"
    assert runner.pip_install_args("monai-fusion[elastix]>=0.1") == ["monai-fusion[elastix]>=0.1"]
    assert runner.pip_install_args("-e '/my data/monai-fusion'", upgrade=True) == ["-e", "/my data/monai-fusion", "--upgrade"]
    assert runner.torch_cpu_install_args() == ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"]
    with pytest.raises(runner.RunnerError, match="empty"):
        runner.pip_install_args("   ")


@pytest.mark.parametrize("version, minimum, expected", [
    ("0.1.0", "0.1.0", True), ("0.1", "0.1.0", True), ("0.2.0rc1", "0.1.5", True), ("1.0.0+cpu", "0.9", True),
    ("0.0.9", "0.1.0", False), ("0.1.0.dev3", "0.1.1", False), ("not-a-version", "0.1", False),
])
def test_version_comparison(version, minimum, expected):
    assert runner.version_at_least(version, minimum) is expected


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, option", [("ct-mri", "--ct"), ("mri-pet", "--pet"), ("mri-spect", "--spect")])
def test_fuse_command_for_each_task(tmp_path, volumes, task, option):
    moving = volumes[option[2:]]
    request = runner.FuseRequest(volumes["mri"], moving, task, "laplacian_pyramid", "rigid", tmp_path / "out")
    request.validate()
    command = runner.fuse_command(request, ["PythonSlicer", "-m", "monai_fusion.cli"])
    assert command == ["PythonSlicer", "-m", "monai_fusion.cli", "fuse", "--mri", str(volumes["mri"]), option, str(moving),
                       "--task", task, "--method", "laplacian_pyramid", "--registration", "rigid",
                       "--out", str(tmp_path / "out"), "--format", "nrrd", "--json"]


@pytest.mark.parametrize("change, message", [
    ({"task": "pet-ct"}, "unknown task 'pet-ct'"), ({"registration": "bspline"}, "unknown registration"),
    ({"method": "rm -rf"}, "not a fusion method name"), ({"formats": ("nifti",)}, "must include nrrd"),
    ({"moving": Path("/nonexistent/pet.nrrd")}, "the PET file /nonexistent/pet.nrrd does not exist"),
])
def test_request_validation_messages(tmp_path, volumes, change, message):
    fields = dict(mri=volumes["mri"], moving=volumes["pet"], task="mri-pet", method="average", registration="none",
                  out_dir=tmp_path)
    fields.update(change)
    with pytest.raises(runner.RunnerError, match=message):
        runner.FuseRequest(**fields).validate()


def test_request_validation_uses_the_installed_choices(tmp_path, volumes):
    installation = runner.Installation(python=(3, 12, 0), installed=True, version="0.1.0", commands=["fuse"],
                                       choices={"method": ["average"], "registration": ["none", "rigid"]})
    request = runner.FuseRequest(volumes["mri"], volumes["pet"], "mri-pet", "dwt", "none", tmp_path)
    with pytest.raises(runner.RunnerError, match="unknown method 'dwt'; choose one of average"):
        request.validate(installation)


# ------------------------------------------------------------------------------------------
# the report -> the files to load
# ------------------------------------------------------------------------------------------

def _touch_nrrd(path: Path, colour: bool = False) -> Path:
    from monai_fusion.io import write_nrrd, write_rgb_nrrd

    path.parent.mkdir(parents=True, exist_ok=True)
    if colour:
        return write_rgb_nrrd(np.zeros((3, 2, 2, 2), np.uint8), path, affine=np.eye(4))
    return write_nrrd(np.zeros((1, 2, 2, 2), np.float32), path, affine=np.eye(4))


@pytest.mark.parametrize("shape", ["fuse-json", "nested", "flat", "records", "relative", "names-only"])
def test_files_to_load_from_summary_shapes(tmp_path, shape):
    out = tmp_path / "out"
    fused, moved = _touch_nrrd(out / "fused.nrrd"), _touch_nrrd(out / "moving_resampled.nrrd")
    _touch_nrrd(out / "weight.nrrd")
    summaries = {
        "fuse-json": {"task": "mri-pet", "method": "dwt", "outputs": {  # what `monai-fusion fuse --json` prints
            "fused_nrrd": str(fused), "moving_resampled_nrrd": str(moved), "contribution_nrrd": str(out / "weight.nrrd"),
            "report_json": str(out / "report.json")}},
        "nested": {"inputs": {"moving": str(tmp_path / "pet.nrrd")},
                   "outputs": {"fused": {"nrrd": str(fused), "nifti": str(out / "fused.nii.gz")},
                               "moving_resampled": {"nrrd": str(moved)}, "weight": {"nrrd": str(out / "weight.nrrd")}}},
        "flat": {"outputs": {"fused": str(fused), "moving_resampled": str(moved)}},
        "records": {"outputs": [{"role": "weight", "path": str(out / "weight.nrrd")},
                                {"role": "moving_resampled", "path": str(moved)}, {"role": "fused", "path": str(fused)}]},
        "relative": {"outputs": {"fused": "fused.nrrd", "moving_resampled": "moving_resampled.nrrd"}},
        "names-only": {"method": "dwt"},
    }
    items = runner.files_to_load(summaries[shape], "mri-pet", out, method="dwt")
    assert [(item.role, item.path) for item in items] == [("fused", fused), ("overlay", moved)]
    overlay = items[1]
    assert overlay.layer == "foreground" and overlay.color_node_id == runner.PET_COLOR_NODE_ID and overlay.opacity == 0.4
    assert items[0].name == "Fused MRI - PET (dwt)" and overlay.name == "PET on MRI grid"
    assert items[0].layer is None and not items[0].colour


def test_files_to_load_ct_is_grey_and_colour_fusion_is_detected(tmp_path):
    out = tmp_path / "out"
    fused = _touch_nrrd(out / "fused.nrrd", colour=True)
    moved = _touch_nrrd(out / "moving_resampled.nrrd")
    items = runner.files_to_load({"outputs": {"fused": str(fused), "moving_resampled": str(moved)}}, "ct-mri", out)
    assert items[0].colour and items[1].color_node_id == runner.GREY_COLOR_NODE_ID and items[1].opacity == 0.5


def test_files_to_load_colour_fusion_and_transform(tmp_path):
    out = tmp_path / "out"
    paths = {"fused_nrrd": _touch_nrrd(out / "fused.nrrd"), "colour_nrrd": _touch_nrrd(out / "colour.nrrd", colour=True),
             "moving_resampled_nrrd": _touch_nrrd(out / "moving_resampled.nrrd"), "transform": out / "transform.tfm"}
    paths["transform"].write_text("#Insight Transform File V1.0\n")
    items = runner.files_to_load({"outputs": {k: str(v) for k, v in paths.items()}}, "mri-spect", out)
    assert [(i.role, i.path.name, i.colour) for i in items] == [
        ("fused", "fused.nrrd", False), ("overlay", "moving_resampled.nrrd", False),
        ("colour", "colour.nrrd", True), ("transform", "transform.tfm", False)]


def test_new_run_folder_never_reuses_a_folder(tmp_path):
    now = time.strptime("2026-11-23 15:04:05", "%Y-%m-%d %H:%M:%S")
    first = runner.new_run_folder(tmp_path, now)
    assert first == tmp_path / "fusion-20261123-150405" and not first.exists()
    first.mkdir()
    assert runner.new_run_folder(tmp_path, now) == tmp_path / "fusion-20261123-150405-2"


def test_files_to_load_refuses_a_missing_fused_volume(tmp_path):
    with pytest.raises(runner.RunnerError, match="no fused NRRD volume"):
        runner.files_to_load({"outputs": {"fused": str(tmp_path / "fused.nii.gz")}}, "mri-pet", tmp_path)
    with pytest.raises(runner.RunnerError, match="fused.nrrd but the file is not there"):
        runner.files_to_load({"outputs": {"fused": str(tmp_path / "fused.nrrd")}}, "mri-pet", tmp_path)


def test_parse_summary_takes_the_json_object():
    assert runner.parse_summary('{"outputs": {"fused": "f.nrrd"}}\n') == {"outputs": {"fused": "f.nrrd"}}
    assert runner.parse_summary('a stray line\n{\n  "seconds": 1.5\n}\n') == {"seconds": 1.5}
    for bad in ("", "[1, 2]", "no json here"):
        with pytest.raises(runner.RunnerError):
            runner.parse_summary(bad)


# ------------------------------------------------------------------------------------------
# errors and the process
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stderr, code, expected", [
    ("monai-fusion: warning: spacing differs\nmonai-fusion: error: the PET image is empty; check the file\n", 2,
     "The PET image is empty; check the file"),
    ("usage: monai-fusion fuse ...\nmonai-fusion fuse: error: argument --task: invalid choice: 'x'\n", 2,
     "Argument --task: invalid choice: 'x'"),
    ("monai-fusion: internal error: ValueError: boom (rerun with --debug for the traceback)\n", 1,
     "Internal error: ValueError: boom (rerun with --debug for the traceback)"),
    ("", 1, "monai-fusion stopped with exit code 1 and no message"),
    ("", -9, "monai-fusion was stopped by signal 9"),
])
def test_error_message_is_the_last_stderr_line(stderr, code, expected):
    assert runner.error_message(stderr, code) == expected


def test_user_error_of_the_real_command_is_one_line(tmp_path):
    """The CLI's own user error (here from ``info``, present before ``fuse``) reaches the UI as one line."""
    process = runner.FuseProcess([*LAUNCHER, "info", str(tmp_path / "missing.nrrd")])
    assert process.wait(timeout=120) == 2
    message = runner.error_message(process.stderr, 2)
    assert message == f"{tmp_path / 'missing.nrrd'} does not exist; check the path"
    assert "Traceback" not in process.stderr


def test_cancel_stops_the_whole_process_tree(tmp_path):
    """PythonSlicer is a launcher: cancelling must stop the interpreter it started too."""
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "print('working', file=sys.stderr, flush=True)\n"
              "time.sleep(60)\n")
    process = runner.FuseProcess([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    lines = []
    while "working" not in lines and time.monotonic() < deadline:
        lines += process.new_log_lines()
        time.sleep(0.05)
    assert lines == ["working"]
    child = int(pid_file.read_text())
    process.cancel(grace=2)
    assert process.poll() is not None and process.cancelled
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)
    request = runner.FuseRequest(tmp_path, tmp_path, "mri-pet", "average", "none", tmp_path)
    outcome = runner.finish(process, request)
    assert outcome.cancelled and not outcome.ok and outcome.message == "Cancelled."


def test_log_lines_stream_and_progress_bars_do_not_flood_the_log():
    script = ("import sys, time\n"
              "sys.stderr.write('monai-fusion: registering\\n'); sys.stderr.flush()\n"
              "for step in range(1, 4):\n"
              "    sys.stderr.write(f'\\rlevel {step}/3'); sys.stderr.flush(); time.sleep(0.05)\n"
              "sys.stderr.write('\\r\\nwarning: ünïcode kept\\r\\nlast line without end')\n"
              "print('{\"outputs\": {}}')\n")
    process = runner.FuseProcess([sys.executable, "-c", script])
    assert process.wait(timeout=60) == 0
    assert process.new_log_lines() == ["monai-fusion: registering", "level 3/3", "warning: ünïcode kept",
                                       "last line without end"]
    assert process.progress == "level 2/3"
    assert runner.parse_summary(process.stdout) == {"outputs": {}}
    assert runner.error_message(process.stderr, 0) == "Last line without end"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (killed) parent's reaper counts as stopped
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def test_missing_executable_is_a_one_line_error():
    with pytest.raises(runner.RunnerError, match="could not start PythonSlicer-does-not-exist"):
        runner.FuseProcess(["PythonSlicer-does-not-exist", "-m", "monai_fusion.cli"])


# ------------------------------------------------------------------------------------------
# the real `monai-fusion fuse`, as the module runs it
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, moving, registration", [("ct-mri", "ct", "rigid"), ("mri-pet", "pet", "none"),
                                                        ("mri-spect", "spect", "none")])
def test_fuse_outputs_are_loadable_on_the_reference_grid(fuse_installed, tmp_path, volumes, task, moving, registration):
    from monai_fusion.io import load_image

    request = runner.FuseRequest(volumes["mri"], volumes[moving], task, "average", registration, tmp_path / "out")
    request.validate(fuse_installed)
    log = []
    outcome = runner.run_fuse(request, LAUNCHER, log=log.append, env=runner.child_environment(), timeout=300)
    assert outcome.ok, f"{outcome.message}\n" + "\n".join(log)
    roles = [item.role for item in outcome.items]
    assert roles == ["fused", "overlay"] + (["colour"] if task != "ct-mri" else []) + (["transform"] if registration != "none" else [])
    reference = nrrd.read_header(str(volumes["mri"]))
    reference_affine = load_image(volumes["mri"]).affine.numpy()
    for item in outcome.items:
        if item.role == "transform":
            assert item.path.suffix in (".tfm", ".h5") and item.path.is_file()
            continue
        assert item.path.is_file() and item.path.suffix == ".nrrd" and item.path.parent == tmp_path / "out"
        header = nrrd.read_header(str(item.path))
        assert header["space"] == LPS
        assert list(header["sizes"][-3:]) == list(reference["sizes"]) and item.colour == (item.role == "colour")
        np.testing.assert_allclose(header["space directions"][-3:], reference["space directions"], atol=1e-4)
        np.testing.assert_allclose(header["space origin"], reference["space origin"], atol=1e-4)
        np.testing.assert_allclose(load_image(item.path).affine.numpy(), reference_affine, atol=1e-4)
    overlay = outcome.items[1]
    assert overlay.layer == "foreground" and overlay.color_node_id == runner.TASKS[task].overlay_color_node_id


def test_fuse_user_error_reaches_the_module_as_one_line(fuse_installed, tmp_path, volumes):
    empty = tmp_path / "empty.nrrd"
    empty.write_bytes(b"NRRD0004\n")
    request = runner.FuseRequest(volumes["mri"], empty, "mri-pet", "average", "none", tmp_path / "out")
    outcome = runner.run_fuse(request, LAUNCHER, log=lambda line: None, timeout=300)
    assert outcome.returncode == 2 and not outcome.ok
    assert outcome.message.startswith(f"{empty} cannot be read") and "\n" not in outcome.message
    assert "Traceback" not in outcome.message


def test_fuse_unknown_method_is_a_one_line_message(fuse_installed, tmp_path, volumes):
    request = runner.FuseRequest(volumes["mri"], volumes["pet"], "mri-pet", "no_such_rule", "none", tmp_path / "out")
    with pytest.raises(runner.RunnerError, match="unknown method 'no_such_rule'; choose one of"):
        request.validate(fuse_installed)  # the module checks against the installed list first
    outcome = runner.run_fuse(request, LAUNCHER, log=lambda line: None, timeout=300)  # and the command agrees
    assert outcome.returncode == 2 and outcome.message.startswith("Unknown fusion method 'no_such_rule'")


# ------------------------------------------------------------------------------------------
# the Slicer module file
# ------------------------------------------------------------------------------------------

def test_module_file_compiles(tmp_path):
    py_compile.compile(str(MODULE_DIR / "MonaiFusion.py"), cfile=str(tmp_path / "MonaiFusion.pyc"), doraise=True)


@pytest.mark.parametrize("path", sorted((MODULE_DIR / "MonaiFusionLib").glob("*.py")), ids=lambda p: p.name)
def test_lib_imports_no_slicer_qt_vtk(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"slicer", "qt", "vtk", "ctk", "monai_fusion", "numpy"}, imported


def test_cmake_lists_every_module_file():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    for path in [MODULE_DIR / "MonaiFusion.py", *sorted((MODULE_DIR / "MonaiFusionLib").glob("*.py"))]:
        relative = path.relative_to(MODULE_DIR).as_posix().replace("MonaiFusion", "${MODULE_NAME}")
        assert relative in cmake, relative
    assert (MODULE_DIR / "Resources" / "Icons" / "MonaiFusion.png").is_file()


class _Stub(types.ModuleType):
    """A stand-in module whose missing attributes are harmless placeholders."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


@pytest.fixture
def module_with_stub_slicer(monkeypatch, tmp_path):
    """MonaiFusion.py imported with stand-ins for Slicer's modules; slicer.util writes real NRRD."""
    from monai_fusion.io import write_nrrd

    slicer = _Stub("slicer")
    util = _Stub("slicer.util")
    slm = _Stub("slicer.ScriptedLoadableModule")
    slicer.util, slicer.ScriptedLoadableModule = util, slm
    slicer.app = types.SimpleNamespace(slicerHome=str(tmp_path / "Slicer"))
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    util.tempDirectory = lambda key="__SlicerTemp__": str(tmp_path / key)

    def export_node(node, filename, properties=None, world=False):
        assert world  # transforms of the input nodes are hardened on export
        write_nrrd(node.array, filename, affine=node.affine)

    util.exportNode = export_node
    for name, module in {"slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": slm,
                         "qt": _Stub("qt"), "ctk": _Stub("ctk"), "vtk": _Stub("vtk"),
                         "MonaiFusionLib": types.ModuleType("MonaiFusionLib"),
                         "MonaiFusionLib.runner": runner}.items():
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["MonaiFusionLib"].runner = runner
    spec = importlib.util.spec_from_file_location("MonaiFusion", MODULE_DIR / "MonaiFusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_logic_exports_by_role_and_builds_the_command(module_with_stub_slicer, tmp_path):
    volume = types.SimpleNamespace
    affine = np.diag([-1.2, -1.0, 1.5, 1.0])
    mri = volume(array=np.ones((1, 4, 5, 6), np.float32), affine=affine)
    pet = volume(array=np.ones((1, 3, 3, 3), np.float32), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    logic = module_with_stub_slicer.MonaiFusionLogic()
    request, inputs = logic.prepareRequest(mri, pet, "mri-pet", "average", "none")
    assert sorted(os.listdir(inputs)) == ["mri.nrrd", "pet.nrrd"]  # named by role, never by node name
    assert runner.read_nrrd_header(request.mri)["space"] == LPS
    assert request.out_dir == tmp_path / "MonaiFusion" / "output"
    command = runner.fuse_command(request, logic.launcher())
    assert command[1:4] == ["-m", "monai_fusion.cli", "fuse"] and "--pet" in command
    chosen, _ = logic.prepareRequest(mri, pet, "mri-pet", "average", "none", str(tmp_path / "results"))
    assert chosen.out_dir.parent == tmp_path / "results" and chosen.out_dir.name.startswith("fusion-")
    parameters = {}
    node = types.SimpleNamespace(GetParameter=lambda name: parameters.get(name, ""),
                                 SetParameter=parameters.__setitem__)
    logic.setDefaultParameters(node)
    assert parameters == {"Task": "mri-pet", "Method": "laplacian_pyramid", "Registration": "rigid"}
    with pytest.raises(runner.RunnerError, match="unknown task"):
        logic.prepareRequest(mri, pet, "pet-ct", "average", "none")


def test_module_logic_installs_after_confirmation_only(module_with_stub_slicer, monkeypatch):
    util = sys.modules["slicer.util"]
    calls, answers = [], []
    util.pip_install = calls.append
    util.confirmOkCancelDisplay = lambda text, windowTitle=None: answers.pop(0)
    util.WaitCursor = type("WaitCursor", (), {"__enter__": lambda self: self, "__exit__": lambda self, *a: False})
    missing = runner.Installation(python=(3, 12, 1))
    ready = runner.Installation(python=(3, 12, 1), installed=True, version="0.1.0", commands=["fuse"], torch="2.8.0")
    states = [missing]
    logic = module_with_stub_slicer.MonaiFusionLogic()
    monkeypatch.setattr(logic, "installation", lambda refresh=False: states[-1])
    monkeypatch.delenv(runner.PACKAGE_SPEC_ENV, raising=False)

    answers.append(False)
    with pytest.raises(runner.RunnerError, match="not installed; install it from the Installation section"):
        logic.ensureInstalled("monai-fusion==0.1.0", cpuOnlyTorch=True)
    assert calls == []

    answers.append(True)
    monkeypatch.setattr(util, "pip_install", lambda args: (calls.append(args), states.append(ready)))
    assert logic.ensureInstalled("monai-fusion==0.1.0", cpuOnlyTorch=True) is ready
    assert calls == [runner.torch_cpu_install_args(), ["monai-fusion==0.1.0"]]

    states[:] = [runner.Installation(python=(3, 9, 18))]
    with pytest.raises(runner.RunnerError, match="Slicer's Python is 3.9"):
        logic.ensureInstalled()
