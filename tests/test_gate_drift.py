"""Drift: accept a baseline, later runs compare with it and fail when errors grow."""

import json

import onnx
import pytest
from onnx import helper

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.gate import drift
from onnxgate.plugins.errors import UsageError


@pytest.fixture()
def ridge(tmp_path):
    import skops.io as sio
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    sio.dump(Ridge().fit(X, y), tmp_path / "m.skops")
    return tmp_path / "m.skops"


def _perturb(onnx_path, out_path, rel):
    """A later exporter that is a little less exact: coefficients off by ``rel``."""
    model = onnx.load(str(onnx_path))
    changed = 0
    for node in model.graph.node:  # skl2onnx keeps linear coefficients as node attributes
        for attr in node.attribute:
            if attr.name == "coefficients":
                values = [v * (1 + rel) for v in attr.floats]
                attr.CopyFrom(helper.make_attribute("coefficients", values))
                changed += 1
    assert changed
    onnx.save(model, str(out_path))


def _report(tmp_path, name="r.json"):
    return json.loads((tmp_path / name).read_text())


def test_accept_then_compare_unchanged_then_grown(ridge, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    base = ["--no-latency", "--report", str(tmp_path / "r.json")]
    assert cli.main(["convert", str(ridge), "-o", str(model)] + base) == 0
    assert cli.main(["baseline", "accept", str(tmp_path / "r.json")]) == 0
    baseline = tmp_path / "m.onnx.baseline.json"
    data = json.loads(baseline.read_text())
    assert data["outputs"]["variable"]["max_abs_err"] >= 0 and data["versions"]["onnxruntime"]

    # same model again: the baseline next to it is picked up, nothing grew
    assert cli.main(["validate", str(ridge), str(model)] + base) == 0
    report = _report(tmp_path)
    assert report["drift"]["passed"] and report["drift"]["baseline"] == str(baseline)
    assert not report["drift"]["outputs"][0]["grew"]

    # coefficients off by 2e-5: still inside the converter's tolerance, but 1000x the old error
    _perturb(model, model, 2e-5)
    assert cli.main(["validate", str(ridge), str(model)] + base) == 1
    report = _report(tmp_path)
    row = report["drift"]["outputs"][0]
    assert row["grew"] and not row["passed"] and row["growth"] > 10
    assert all(o["passed"] for c in report["cases"] for o in c["outputs"])  # only drift failed
    assert any(f.startswith("drift variable: max abs err grew") for f in report["failures"])
    assert "DRIFT" in (
        cli.main(["baseline", "compare", str(tmp_path / "r.json"), str(baseline)]) == 1 and capsys.readouterr().out
    )
    # the factor is the user's: a generous one lets the same run pass
    assert cli.main(["validate", str(ridge), str(model), "--drift-factor", "1e6"] + base) == 0
    assert cli.main(["validate", str(ridge), str(model), "--no-baseline"] + base) == 0


def test_accept_baseline_flag_writes_next_to_the_model(ridge, tmp_path):
    model = tmp_path / "m.onnx"
    assert cli.main(["convert", str(ridge), "-o", str(model), "--no-latency", "--accept-baseline"]) == 0
    assert (tmp_path / "m.onnx.baseline.json").is_file()


def _fake_report(err, passed=True):
    return {
        "passed": passed,
        "onnx": {"path": "m.onnx", "sha256": "x"},
        "versions": {"onnxruntime": "1.32.0"},
        "cases": [{"name": "batch_4", "outputs": [{"name": "y", "max_abs_err": err, "max_rel_err": err}]}],
    }


def test_floor_keeps_noise_from_failing():
    baseline = drift.from_report(_fake_report(1e-9))
    assert drift.compare(_fake_report(1e-8), baseline, 10.0, 1e-6)["passed"]  # 10x, but noise
    assert drift.compare(_fake_report(9e-6), baseline, 10.0, 1e-6)["passed"]  # under factor * floor
    grown = drift.compare(_fake_report(2e-5), baseline, 10.0, 1e-6)
    assert not grown["passed"] and grown["outputs"][0]["limit"] == pytest.approx(1e-5)


def test_infinite_error_and_missing_output_fail():
    baseline = drift.from_report(_fake_report(1e-6))
    assert not drift.compare(_fake_report("inf"), baseline, 10.0, 1e-6)["passed"]
    other = _fake_report(1e-6)
    other["cases"][0]["outputs"][0]["name"] = "z"
    section = drift.compare(other, baseline, 10.0, 1e-6)
    assert not section["passed"] and section["new_outputs"] == ["z"]


def test_failed_report_is_not_accepted_and_bad_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        drift.accept(_fake_report(1.0, passed=False), tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(UsageError):
        drift.load(tmp_path / "junk.json")
    assert cli.main(["baseline", "accept", str(tmp_path / "missing.json")]) == 2
    assert cli.main(["validate", "x.skops", "m.onnx", "--baseline", str(tmp_path / "nope.json")]) == 2
