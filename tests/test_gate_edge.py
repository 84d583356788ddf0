"""Edge values: zeros, large magnitudes, NaN/inf where the source accepts them."""

import numpy as np
import pytest
from gate_support import registry, seq_mean_model

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.gate.compare import compare_output
from onnxgate.pipeline.gate.config import GateConfig, ci_mode
from onnxgate.plugins.spec import Tolerance

TOL = Tolerance(rtol=1e-4, atol=1e-5)


def _edge(report):
    return {c["edge"]: c for c in report["cases"] if c["kind"] == "edge"}


def test_nan_on_both_sides_matches_nan_on_one_side_does_not():
    both = compare_output("y", np.array([np.nan, 1.0, np.inf]), np.array([np.nan, 1.0, np.inf]), TOL)
    assert both["passed"]
    one = compare_output("y", np.array([np.nan, 1.0]), np.array([0.5, 1.0]), TOL)
    assert not one["passed"] and "NaN on one side" in one["reason"]
    signs = compare_output("y", np.array([np.inf]), np.array([-np.inf]), TOL)
    assert not signs["passed"]


def test_edge_values_are_opt_in():
    result = api.convert(seq_mean_model("seq"), framework="hand", registry=registry(), latency=False)
    assert not _edge(result.report.to_dict())


def test_nan_propagating_model_matches_and_all_edges_run():
    result = api.convert(
        seq_mean_model("seq"), framework="hand", registry=registry(), latency=False, gate=GateConfig(edge_values=True)
    )
    edges = _edge(result.report.to_dict())
    assert set(edges) == {"zeros", "large", "nan", "inf"}
    assert not any(c.get("skipped") for c in edges.values())
    assert result.passed, result.failures  # NaN in => NaN out on both sides


def test_sklearn_rejecting_nan_is_not_applicable_not_a_failure():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    result = api.convert(LogisticRegression(max_iter=500).fit(X, y), latency=False, gate=GateConfig(edge_values=True))
    edges = _edge(result.report.to_dict())
    assert "contains NaN" in edges["nan"]["skipped"]
    assert edges["zeros"]["outputs"] and edges["large"]["outputs"]
    check = next(c for c in result.report.checks if c.name == "edge_values")
    assert "nan: not applicable" in check.message
    assert result.passed, result.failures


def test_a_converter_that_mishandles_nan_fails_on_the_nan_case_only():
    # scikit-learn trees accept NaN (sent to the child that saw most samples);
    # skl2onnx's TreeEnsemble sends it elsewhere: a real mismatch only edge values find
    from sklearn.datasets import load_diabetes
    from sklearn.tree import DecisionTreeRegressor

    X, y = load_diabetes(return_X_y=True)
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y)
    plain = api.convert(model, latency=False)
    assert plain.passed, plain.failures
    result = api.convert(model, latency=False, gate=GateConfig(edge_values=True))
    assert not result.passed
    edges = _edge(result.report.to_dict())
    assert not edges["nan"]["passed"]
    assert edges["zeros"]["passed"] and edges["large"]["passed"]


@pytest.mark.parametrize(
    "env,expected", [({"CI": "true"}, True), ({"CI": "1"}, True), ({"CI": "false"}, False), ({}, False)]
)
def test_ci_mode_from_environment(env, expected):
    assert ci_mode(env) is expected


def test_ci_environment_turns_edge_values_on_in_the_cli(tmp_path, monkeypatch):
    import json

    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m.skops")
    monkeypatch.setenv("CI", "true")
    code = cli.main(
        [
            "convert",
            str(tmp_path / "m.skops"),
            "-o",
            str(tmp_path / "m.onnx"),
            "--report",
            str(tmp_path / "r.json"),
            "--no-latency",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gate"]["ci"] and report["gate"]["edge_values"]
    assert _edge(report)
    code = cli.main(
        [
            "convert",
            str(tmp_path / "m.skops"),
            "-o",
            str(tmp_path / "m.onnx"),
            "--report",
            str(tmp_path / "r.json"),
            "--no-latency",
            "--no-edge-values",
        ]
    )
    assert code == 0 and not _edge(json.loads((tmp_path / "r.json").read_text()))
