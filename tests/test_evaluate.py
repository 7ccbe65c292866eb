"""The evaluate workflow and ``monai-fusion evaluate``: cases, datalists, CSV/summary, failures."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from monai_fusion.cli import main
from monai_fusion.errors import InputError
from monai_fusion.metrics import compute_metrics
from monai_fusion.workflows.evaluate import (
    cases_from_datalist,
    cases_from_folders,
    case_key,
    evaluate_cases,
    load_grey,
)
from monai_fusion.workflows.fuse_rule import fuse_rule_files
from tests.conftest import shared_path

CASES = ["25015", "25034", "25047"]
FAST = ["EN", "SD", "SF", "MI", "SCD", "Qabf", "SSIM"]


@pytest.fixture(scope="module")
def pet_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for name in ("mri", "pet", "fused"):
        (root / name).mkdir()
    for case in CASES:
        for name in ("mri", "pet"):
            shutil.copy(shared_path("harvard", "pet-mri", name, f"{case}.png"), root / name / f"{case}.png")
        fuse_rule_files(root / "mri" / f"{case}.png", root / "pet" / f"{case}.png", root / "fused" / f"{case}.png",
                        method="average")
    return root


def test_case_key_strips_image_extensions(tmp_path):
    assert case_key(tmp_path / "a.nii.gz") == "a" and case_key(tmp_path / "12015.png") == "12015"


def test_folders_give_metrics_equal_to_direct_computation(pet_folders, tmp_path):
    cases = cases_from_folders(pet_folders / "mri", pet_folders / "pet", pet_folders / "fused")
    assert [c.case for c in cases] == CASES
    result = evaluate_cases(cases, metrics=FAST, convention="benchmark")
    assert not result.failures and len(result.rows) == 3
    a, b, f = (load_grey(pet_folders / n / "25034.png") for n in ("mri", "pet", "fused"))
    direct = compute_metrics(a, b, f, names=FAST, convention="benchmark")
    row = next(r for r in result.rows if r["case"] == "25034")
    for name in FAST:
        assert row[name] == pytest.approx(direct[name], rel=1e-12)
    summary = result.summary()
    values = [r["EN"] for r in result.rows]
    assert summary["EN"]["mean"] == pytest.approx(np.mean(values))
    assert summary["EN"]["sd"] == pytest.approx(np.std(values, ddof=1)) and summary["EN"]["n"] == 3


def test_colour_images_are_measured_on_their_luma(pet_folders):
    rgb = load_grey(pet_folders / "pet" / "25034.png")
    from PIL import Image

    raw = np.asarray(Image.open(pet_folders / "pet" / "25034.png")).astype(float)
    luma = 0.299 * raw[..., 0] + 0.587 * raw[..., 1] + 0.114 * raw[..., 2]
    np.testing.assert_allclose(rgb, luma.T, atol=1e-9)


def test_datalists_json_monai_style_and_csv(pet_folders, tmp_path):
    items = [{"a": f"mri/{c}.png", "b": f"pet/{c}.png", "fused": f"fused/{c}.png", "case": f"c{c}"} for c in CASES]
    (pet_folders / "list.json").write_text(json.dumps({"testing": items}))
    cases = cases_from_datalist(pet_folders / "list.json")
    assert [c.case for c in cases] == [f"c{c}" for c in CASES] and cases[0].a.exists()
    with open(pet_folders / "list.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["a", "b", "fused"])
        writer.writeheader()
        writer.writerows({k: v for k, v in item.items() if k != "case"} for item in items)
    assert [c.case for c in cases_from_datalist(pet_folders / "list.csv")] == CASES


def test_bad_datalists_and_folders(pet_folders, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        cases_from_datalist(tmp_path / "bad.json")
    (tmp_path / "missing_key.json").write_text(json.dumps([{"a": "x.png", "b": "y.png"}]))
    with pytest.raises(InputError, match="case 1 needs 'a', 'b' and 'fused'"):
        cases_from_datalist(tmp_path / "missing_key.json")
    (tmp_path / "fewer").mkdir()
    shutil.copy(pet_folders / "fused" / "25015.png", tmp_path / "fewer" / "25015.png")
    with pytest.raises(InputError, match="2 case\\(s\\) are missing"):
        cases_from_folders(pet_folders / "mri", pet_folders / "pet", tmp_path / "fewer")
    with pytest.raises(InputError, match="unknown metric"):
        evaluate_cases(cases_from_folders(pet_folders / "mri", pet_folders / "pet", pet_folders / "fused"), metrics=["XYZ"])


def test_cli_writes_csv_and_summary_and_reports_a_broken_case(pet_folders, tmp_path, capsys):
    fused = tmp_path / "fused"
    shutil.copytree(pet_folders / "fused", fused)
    (fused / "25047.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # truncated: this case must fail alone
    code = main(["evaluate", "--a", str(pet_folders / "mri"), "--b", str(pet_folders / "pet"), "--fused", str(fused),
                 "--metrics", "EN,SD,MI", "--convention", "benchmark", "--out", str(tmp_path / "out"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "case 25047 failed" in err and "cannot be read as an image" in err
    assert "EN" in out and "2 case(s)" in out
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    assert [r["case"] for r in rows] == ["25015", "25034"] and set(rows[0]) == {"case", "EN", "SD", "MI"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["convention"] == "benchmark" and summary["failures"][0]["case"] == "25047"


def test_cli_argument_errors(capsys, tmp_path):
    assert main(["evaluate", "--a", str(tmp_path)]) == 2
    assert "give --datalist FILE, or all three" in capsys.readouterr().err
    assert main(["evaluate", "--datalist", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
