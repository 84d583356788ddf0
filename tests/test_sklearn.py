"""scikit-learn converter: the contract kit plus behaviour specific to it."""

import json

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _classifier():
    X, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y), X


class TestSklearnContract(ConverterContract):
    converter = "sklearn"

    def make_source(self, tmp_path):
        import skops.io as sio

        model, _ = _classifier()
        path = tmp_path / "clf.skops"
        sio.dump(model, path)
        return path


def test_classifier_outputs_are_plain_arrays():
    from onnxgate.pipeline import convert

    model, X = _classifier()
    result = convert(model)
    assert result.passed, result.failures
    outputs = {o.name: o for o in result.report.cases[0].outputs}
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["probabilities"].dtype == "float32"
    assert outputs["probabilities"].shape[1] == 3


def test_string_labels_compare_exactly():
    from onnxgate.pipeline import convert

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    result = convert(LogisticRegression(max_iter=500).fit(X, names))
    assert result.passed, result.failures
    label = result.report.cases[0].outputs[0]
    assert label.atol == 0 and label.rtol == 0


def test_perturbed_model_fails_the_gate_with_exit_1(tmp_path):
    """A wrong ONNX model is caught: the validate command exits 1 and names the output."""
    import skops.io as sio

    from onnxgate.pipeline import convert

    model, _ = _classifier()
    result = convert(model)
    onnx_model = result.model
    scaler = next(n for n in onnx_model.graph.node if n.op_type == "Scaler")
    offset = next(a for a in scaler.attribute if a.name == "offset")
    offset.floats[0] += 0.5  # shift one feature: a plausible converter bug
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_model.SerializeToString())
    source = tmp_path / "clf.skops"
    sio.dump(model, source)
    proc = run_cli("validate", str(source), str(bad), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is False and report["verdict"] == "failed"
    failed = [o["name"] for c in report["cases"] for o in c["outputs"] if not o["passed"]]
    assert "probabilities" in failed
    assert "probabilities" in proc.stderr


def test_module_attribute_source(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from sklearn.datasets import load_iris\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "def make():\n"
        "    X, y = load_iris(return_X_y=True)\n"
        "    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)\n"
    )
    out = tmp_path / "tree.onnx"
    proc = run_cli("convert", "my_models:make", "-o", str(out), env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_joblib_needs_trust(tmp_path):
    import joblib

    model, _ = _classifier()
    path = tmp_path / "clf.joblib"
    joblib.dump(model, path)
    out = tmp_path / "clf.onnx"
    proc = run_cli("convert", str(path), "-o", str(out))
    assert_clean_error(proc, 2)
    assert "--trust-source" in proc.stderr and not out.exists()
    proc = run_cli("convert", str(path), "-o", str(out), "--trust-source")
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_skops_with_unknown_types_is_refused(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "fn.skops"
    import operator

    sio.dump(FunctionTransformer(func=operator.neg).fit(np.ones((3, 2))), path)
    proc = run_cli("convert", str(path), "-o", str(tmp_path / "fn.onnx"))
    assert_clean_error(proc, 2)
    assert "not known to be safe" in proc.stderr


def test_csv_sample_is_used(tmp_path):
    import skops.io as sio

    model, X = _classifier()
    sio.dump(model, tmp_path / "clf.skops")
    np.savetxt(tmp_path / "x.csv", X[:7], delimiter=",", header="a,b,c,d", comments="")
    proc = run_cli(
        "convert",
        str(tmp_path / "clf.skops"),
        "--sample",
        str(tmp_path / "x.csv"),
        "--report",
        str(tmp_path / "r.json"),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    shapes = [c["input_shapes"]["X"] for c in report["cases"]]
    assert shapes[0] == [7, 4] and [1, 4] in shapes
