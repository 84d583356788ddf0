"""Reports: JSON Schema, JUnit XML, HTML, Markdown, latency and error histograms,
all checked on reports produced by real conversions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import main
from onnxgate.pipeline.core import latency
from onnxgate.pipeline.report import document
from onnxgate.pipeline.report.document import schema, schema_errors, validate_schema
from onnxgate.pipeline.report.html import to_html
from onnxgate.pipeline.report.junit import to_junit
from onnxgate.pipeline.report.markdown import to_markdown
from onnxgate.pipeline.report.model import Report


@pytest.fixture(scope="module")
def sk_model():
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)


@pytest.fixture(scope="module")
def passing(sk_model):
    return api.convert(sk_model)


@pytest.fixture(scope="module")
def failing(sk_model, passing):
    """Same model with the scaler's constants corrupted, diagnosed."""
    from onnxgate.pipeline.gate import diagnose

    broken = onnx.ModelProto()
    broken.CopyFrom(passing.model)
    (scaler,) = [n for n in broken.graph.node if n.op_type == "Scaler"]
    for attr in scaler.attribute:
        if attr.name == "scale":
            attr.floats[2] *= 4.0
    result = api.validate(sk_model, broken)
    assert not result.passed
    result.report.diagnosis = diagnose.for_result(result, sk_model)
    return result


# ---------------------------------------------------------------- JSON Schema


def test_schema_is_valid_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"].endswith("/draft/2020-12/schema")


def test_real_reports_match_schema(passing, failing):
    validate_schema(passing.report)
    validate_schema(failing.report)


def test_schema_rejects_broken_reports(passing):
    report = passing.report.to_dict()
    report["verdict"] = "maybe"
    report["surprise"] = 1
    del report["cases"]
    errors = "\n".join(schema_errors(report))
    assert "'maybe' is not one of" in errors
    assert "surprise" in errors and "'cases' is a required property" in errors
    with pytest.raises(ValueError, match="report.schema.json"):
        validate_schema(report)


def test_schema_accepts_non_finite_numbers_as_strings(passing):
    report = passing.report.to_dict()
    report["cases"][0]["outputs"][0]["max_abs_err"] = float("inf")
    validate_schema(report)  # written as "inf"


def test_typed_report_round_trips_through_json_and_renders_the_same(failing, tmp_path):
    report = failing.report
    assert report.to_dict()["verdict"] == failing.verdict == "failed" and failing.failures == report.failures
    document.write(report, tmp_path / "r.json")
    again = Report.read(tmp_path / "r.json")
    assert again.to_dict() == json.loads(report.to_json())
    assert again.cases[0].outputs[0].name == report.cases[0].outputs[0].name
    assert to_markdown(again) == to_markdown(report) and to_html(again) == to_html(report)


def test_versions_name_the_source_framework(passing):
    from importlib import metadata

    assert passing.report.versions["scikit-learn"] == metadata.version("scikit-learn")
    assert passing.report.versions["onnxruntime"] == metadata.version("onnxruntime")


def test_result_outputs_are_per_output_stats(passing, failing):
    assert set(passing.outputs) == {"label", "probabilities"} and all(o.passed for o in passing.outputs.values())
    probs = failing.outputs["probabilities"]
    worst = max(o.max_abs_err for c in failing.report.cases for o in c.outputs if o.name == "probabilities")
    assert not probs.passed and probs.max_abs_err == worst > 0
    assert probs.cases == sum(1 for c in failing.report.cases for o in c.outputs if o.name == "probabilities")


# ---------------------------------------------------------------- latency and histograms


def test_latency_per_batch_size(passing):
    section = passing.report.latency
    batches = {len_ for len_ in (latency.batch_of(c.inputs) for c in passing.artifact.cases)}
    assert [b["batch"] for b in section["batches"]] == sorted(batches)
    for b in section["batches"]:
        for side in ("original", "onnxruntime"):
            t = b[side]
            assert 1 <= t["runs"] <= latency.MAX_RUNS
            assert 0 < t["p50_ms"] <= t["p95_ms"]


def test_time_runs_is_bounded_and_warms_up():
    calls = []
    stats = latency.time_runs(lambda: calls.append(1), warmup=2, max_runs=7, budget_s=10.0)
    assert stats["runs"] == 7 and len(calls) == 9


def test_error_histogram_bins():
    expected = np.zeros(6, dtype=np.float32)
    actual = np.array([0.0, 2e-3, 3e-7, 1e-20, np.nan, 500.0], dtype=np.float64)
    h = latency.error_histogram(actual, expected)
    edges = h["edges"]
    assert h["below"] == 2  # exact 0 and 1e-20
    assert h["nonfinite"] == 1 and h["above"] == 1
    assert h["counts"][edges.index(-3.0)] == 1  # 2e-3 in [1e-3, 10**-2.5)
    assert h["counts"][edges.index(-7.0)] == 1  # 3e-7 in [1e-7, 10**-6.5)
    assert sum(h["counts"]) + h["below"] + h["above"] + h["nonfinite"] == h["total"] == 6
    assert latency.error_histogram(np.array([1, 2]), np.array([1, 2])) is None  # labels: exact, no histogram


def test_report_histograms_cover_every_float_output(passing, failing):
    for result in (passing, failing):
        hists = result.report.error_histograms
        assert set(hists) == {"probabilities"}  # "label" is an integer output
        h = hists["probabilities"]
        n = sum(np.prod(o.shape) for c in result.report.cases for o in c.outputs if o.name == "probabilities")
        assert h["total"] == n

    def beyond_atol(report):
        h = report.error_histograms["probabilities"]
        bins = sum(c for e, c in zip(h["edges"], h["counts"]) if e >= np.log10(report.tolerance.atol))
        return bins + h["above"] + h["nonfinite"]

    assert beyond_atol(passing.report) == 0
    assert beyond_atol(failing.report) > 0


# ---------------------------------------------------------------- JUnit


def test_junit_one_testcase_per_case_and_output(passing, failing):
    root = ET.fromstring(to_junit([passing.report, failing.report]))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 2
    for suite, report in zip(suites, (passing.report.to_dict(), failing.report.to_dict())):
        cases = suite.findall("testcase")
        pairs = [(c["name"], o["name"]) for c in report["cases"] for o in c["outputs"]]
        names = [tc.get("name") for tc in cases]
        for case, out in pairs:
            assert f"{case}/{out}" in names
        failing_outputs = sum(1 for c in report["cases"] for o in c["outputs"] if not o["passed"])
        failing_checks = sum(1 for c in report["checks"] if not c["passed"])
        assert int(suite.get("failures")) == failing_outputs + failing_checks
        assert int(suite.get("tests")) == len(cases)
        assert len(suite.findall("testcase/failure")) == int(suite.get("failures"))
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert suites[0].get("failures") == "0"
    failure = suites[1].find("testcase/failure[@type='mismatch']")
    assert "differ" in failure.get("message") and "max_abs_err = " in failure.text
    for check in (c for c in failing.report.checks if not c.passed):
        element = suites[1].find(f"testcase[@name='check/{check.name}']/failure")
        assert element is not None and element.get("type") == "check"


# ---------------------------------------------------------------- Markdown


def test_markdown_summary(passing, failing):
    good, bad = to_markdown(passing.report), to_markdown(failing.report)
    assert "PASSED" in good and "Failures" not in good
    assert "FAILED" in bad and "**Failures (" in bad and "**Diagnosis**" in bad and "scaler" in bad
    assert "| `probabilities` |" in bad and "❌" in bad
    assert len(bad.splitlines()) < 40 and len(bad) < 4000


# ---------------------------------------------------------------- HTML


def test_html_is_self_contained_with_charts(failing):
    page = to_html(failing.report)
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for needle in ("http://", "https://", "<link", "src=", "@import", "url("):
        assert needle not in page, needle
    assert page.count("<svg") == len(failing.report.error_histograms) + 1  # + latency chart
    assert "FAILED" in page and "Diagnosis" in page and "scaler" in page


def test_html_escapes_report_text(passing):
    report = passing.report.to_dict()
    report["failures"] = ["<script>alert(1)</script>"]
    page = to_html(report)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


# ---------------------------------------------------------------- CLI


def test_cli_writes_every_rendering(tmp_path, sk_model):
    sio = pytest.importorskip("skops.io")
    source = tmp_path / "m.skops"
    sio.dump(sk_model, source)
    paths = {k: tmp_path / f"out.{k}" for k in ("json", "xml", "html", "md")}
    code = main(
        [
            "convert",
            str(source),
            "-o",
            str(tmp_path / "m.onnx"),
            "--report",
            str(paths["json"]),
            "--junit",
            str(paths["xml"]),
            "--html",
            str(paths["html"]),
            "--summary",
            str(paths["md"]),
        ]
    )
    assert code == 0
    report = json.loads(paths["json"].read_text())
    validate_schema(report)
    assert ET.parse(paths["xml"]).getroot().get("failures") == "0"
    assert "PASSED" in paths["md"].read_text() and "<svg" in paths["html"].read_text()


def test_cli_unwritable_rendering_fails_before_work(tmp_path, sk_model, capsys):
    sio = pytest.importorskip("skops.io")
    source = tmp_path / "m.skops"
    sio.dump(sk_model, source)
    code = main(["convert", str(source), "-o", str(tmp_path / "m.onnx"), "--html", str(tmp_path / "no" / "r.html")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
