"""monai_fusion.fuse on small synthetic volumes: outputs, geometry, report, and refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

import monai_fusion
from monai_fusion import InputError, OutputError
from monai_fusion.io import load_image, write_nifti
from monai_fusion.workflows.methods import NETWORK_METHODS, available_methods, resolve_method

SHIFT_MM = (4.0, -3.0, 2.0)
FAST = {"levels": (2, 1), "iterations": 40}


def _phantom(shape=(40, 44, 36), spacing=(2.0, 2.0, 2.5), shift=(0.0, 0.0, 0.0), origin=(-40.0, -44.0, -45.0),
             contrast="mr") -> MetaTensor:
    """An ellipsoid 'head' with two inner blobs; world geometry from spacing/origin, content shifted by ``shift`` mm."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    index = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3] - np.asarray(shift)
    r = lambda centre, radii: (((world - centre) / radii) ** 2).sum(-1)  # noqa: E731
    head, blob1, blob2 = r((0, 0, 0), (30, 34, 28)) < 1, r((-10, 8, 4), (8, 10, 7)) < 1, r((12, -10, -6), (6, 6, 8)) < 1
    if contrast == "mr":
        values = 0.6 * head + 0.3 * blob1 - 0.4 * blob2
    else:  # the "other" modality: different contrast of the same structures
        values = 0.2 * head + 0.9 * blob2 + 0.1 * blob1
    from scipy.ndimage import gaussian_filter

    values = gaussian_filter(values.astype(np.float32), 1.0)
    return MetaTensor(torch.from_numpy(values)[None], affine=torch.as_tensor(affine))


@pytest.fixture(scope="module")
def pair():
    return _phantom(), _phantom(spacing=(2.5, 2.5, 3.0), shape=(32, 36, 30), shift=SHIFT_MM, contrast="pet")


@pytest.fixture(scope="module")
def pet_run(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("pet") / "out"
    mri, pet = pair
    run = monai_fusion.fuse(mri, pet, task="mri-pet", out_dir=out, formats=("nifti", "nrrd", "dicom"),
                            registration_options=FAST)
    return run, out


def test_lazy_attribute_and_method_registry():
    assert callable(monai_fusion.fuse)
    assert "laplacian_pyramid" in available_methods() and isinstance(NETWORK_METHODS, dict)
    with pytest.raises(InputError, match="available methods: .*laplacian_pyramid"):
        resolve_method("no_such_method", "ct-mri")


def test_network_methods_registry_is_used(pair, monkeypatch):
    from monai_fusion.rules import FusionResult

    calls = []

    def half(a, b):
        calls.append(tuple(a.shape))
        return FusionResult((a + b) / 2, torch.full_like(a, 0.5))

    monkeypatch.setitem(NETWORK_METHODS, "test_net", half)
    run = monai_fusion.fuse(*pair, task="ct-mri", method="test_net", registration="none", qc=False)
    assert calls == [tuple(pair[0].shape)]
    assert float(run.contribution.mean()) == pytest.approx(0.5)


def test_outputs_exist_with_the_reference_geometry(pet_run, pair):
    run, out = pet_run
    mri = pair[0]
    expected = {"fused.nii.gz", "moving_resampled.nii.gz", "contribution.nii.gz", "colour.nii.gz", "fused.nrrd",
                "moving_resampled.nrrd", "contribution.nrrd", "colour.nrrd", "fused_dicom", "colour.dcm",
                "transform.tfm", "qc.png", "report.html", "report.json"}
    assert expected <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    reference = mri.affine.numpy()
    for name in ("fused.nii.gz", "moving_resampled.nii.gz", "contribution.nii.gz", "colour.nii.gz", "fused.nrrd",
                 "moving_resampled.nrrd", "contribution.nrrd", "colour.nrrd", "fused_dicom", "colour.dcm"):
        image = load_image(out / name)
        assert tuple(image.shape[1:]) == tuple(mri.shape[1:]), name
        np.testing.assert_allclose(image.affine.numpy(), reference, atol=1e-4, err_msg=name)
    assert run.colour.shape == (3, *mri.shape[1:]) and run.colour.dtype == torch.uint8


def test_registration_recovers_the_known_shift(pet_run):
    run, _ = pet_run
    assert run.registration.converged
    np.testing.assert_allclose(run.registration.transform.linear_part().matrix[:3, 3], SHIFT_MM, atol=0.6)


def test_contribution_and_fused_in_unit_range(pet_run):
    run, _ = pet_run
    for image in (run.contribution, run.fused):
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert 0.05 < run.report["contribution_mean"] < 0.95


def test_report_keys_and_no_identifiers(pet_run):
    run, out = pet_run
    report = json.loads((out / "report.json").read_text())
    assert {"task", "method", "reference", "inputs", "registration", "normalisation", "metrics", "timings",
            "versions", "outputs", "seconds", "warnings"} <= set(report)
    assert {"monai-fusion", "monai", "torch"} <= set(report["versions"])
    assert {"load", "register", "resample", "normalise", "fuse", "metrics", "write"} <= set(report["timings"])
    assert report["registration"]["converged"] is True and len(report["registration"]["affine_ras"]) == 4
    assert {"EN", "MI", "SSIM", "Qabf"} <= set(report["metrics"])
    assert all(np.isfinite(v) for v in report["metrics"].values())
    fused = report["outputs"]["fused"]
    assert fused["path"] == "fused.nii.gz" and len(fused["sha256"]) == 64
    from monai_fusion.workflows.report import sha256_of

    assert sha256_of(out / "fused.nii.gz") == fused["sha256"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Registration" in html


def test_ct_mri_with_reference_moving(pair):
    mri, other = pair
    run = monai_fusion.fuse(mri, other, task="ct-mri", reference="moving", registration_options=FAST, qc=False)
    np.testing.assert_allclose(run.fused.affine.numpy(), other.affine.numpy())
    assert run.colour is None and run.report["reference"]["modality"] == "CT"


def test_registration_none_and_nifti_paths(pair, tmp_path):
    mri, other = pair
    write_nifti(mri, tmp_path / "mri.nii.gz")
    write_nifti(other, tmp_path / "spect.nii.gz")
    run = monai_fusion.fuse(tmp_path / "mri.nii.gz", tmp_path / "spect.nii.gz", task="mri-spect", registration="none",
                            out_dir=tmp_path / "out")
    assert run.registration is None and run.report["registration"] is None
    assert not (tmp_path / "out" / "transform.tfm").exists()
    assert run.report["inputs"]["moving"]["modality"] == "NM" and run.report["inputs"]["moving"]["modality_from"] == "task"


@pytest.mark.parametrize("options, expected, finishing", [({}, "axes", "stochastic"),
                                                          ({"backend": "simpleitk"}, "axes", None),
                                                          ({"backend": "elastix"}, "off", None),
                                                          ({"orientation_search": "off", "finishing": "off"}, "off", "off")])
def test_the_orientation_search_and_finish_defaults_follow_the_backend(pair, monkeypatch, options, expected, finishing):
    import monai_fusion.registration as registration
    from monai_fusion.registration import register as real_register

    seen = {}

    def spy(fixed, moving, **kwargs):
        seen.update(kwargs)
        return real_register(fixed, moving, **{**kwargs, "backend": "torch", "iterations": 5})

    monkeypatch.setattr(registration, "register", spy)
    mri, other = pair
    monai_fusion.fuse(mri, other, task="mri-spect", qc=False, registration_options=options)
    assert seen["orientation_search"] == expected
    assert seen.get("finishing") == finishing  # the stochastic finish is a torch-engine phase


# ------------------------------------------------------------------------------------------- bad input


def _no_partial_output(tmp_path):
    return not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_file(tmp_path, pair):
    with pytest.raises(InputError, match="does not exist"):
        monai_fusion.fuse(tmp_path / "nope.nii.gz", pair[1], out_dir=tmp_path / "out")
    assert _no_partial_output(tmp_path)


def test_2d_against_3d(tmp_path, pair):
    flat = MetaTensor(torch.rand(1, 32, 32), affine=torch.eye(4))
    with pytest.raises(InputError, match="3D"):
        monai_fusion.fuse(pair[0], flat, out_dir=tmp_path / "out")
    assert _no_partial_output(tmp_path)


def test_constant_image(tmp_path, pair):
    constant = MetaTensor(torch.ones(1, 20, 20, 20), affine=torch.eye(4))
    with pytest.raises(InputError, match="constant"):
        monai_fusion.fuse(pair[0], constant, out_dir=tmp_path / "out")
    assert _no_partial_output(tmp_path)


def test_nan_image(tmp_path, pair):
    bad = pair[1].clone()
    bad[0, 3, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        monai_fusion.fuse(pair[0], bad, out_dir=tmp_path / "out")
    assert _no_partial_output(tmp_path)


def test_unknown_options_fail_before_loading(tmp_path, pair):
    for kwargs, match in (({"task": "ct-pet"}, "unknown task"), ({"registration": "elastic"}, "unknown registration"),
                          ({"formats": ("nifti", "png")}, "unknown output format"), ({"reference": "mri"}, "reference")):
        with pytest.raises(InputError, match=match):
            monai_fusion.fuse(tmp_path / "nope", tmp_path / "nope", out_dir=tmp_path / "out", **kwargs)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        monai_fusion.fuse(*pair, out_dir=tmp_path / "full")


def test_failure_while_writing_leaves_nothing(tmp_path, pair, monkeypatch):
    import monai_fusion.workflows.fuse_outputs as outputs

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(outputs, "write_rgb_nifti", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        monai_fusion.fuse(*pair, task="mri-pet", registration="none", out_dir=tmp_path / "out")
    assert _no_partial_output(tmp_path)


def test_modality_mismatch_from_dicom_tags(synthetic_series, tmp_path):
    mr_a, _, _ = synthetic_series(n_slices=6, rows=8, columns=8, modality="MR", series_number=3)
    mr_b, _, _ = synthetic_series(n_slices=6, rows=8, columns=8, modality="MR", series_number=4)
    with pytest.raises(InputError, match=r"--task ct-mri needs one MRI and one CT image, but the inputs are MRI \(fixed\) and MRI \(moving\)") as info:
        monai_fusion.fuse(mr_a, mr_b, task="ct-mri", out_dir=tmp_path / "out")
    assert "\n" not in str(info.value) and "SYNTH001" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_deformable_registration_writes_an_h5_transform(pair, tmp_path):
    import torch as _torch

    before = _torch.get_num_threads()
    run = monai_fusion.fuse(*pair, task="mri-pet", registration="deformable", out_dir=tmp_path / "out", qc=False,
                            threads=1, registration_options={**FAST, "deformable_iterations": 10, "deformable_levels": (2,)})
    assert _torch.get_num_threads() == before
    assert run.report["registration"]["model"] == "rigid+bspline"
    assert (tmp_path / "out" / "transform.h5").is_file() and not (tmp_path / "out" / "transform.tfm").exists()
    from monai_fusion.registration import read_transform

    assert not read_transform(tmp_path / "out" / "transform.h5").is_linear
