"""Task-aware comparison and per-output tolerances (CLI and config file)."""

import numpy as np
import onnxruntime as ort
import pytest
from gate_support import HandModel, make_model, registry
from onnx import TensorProto, helper

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.gate import tasks
from onnxgate.pipeline.gate.config import GateConfig, OutputRule, load_file, merge, parse_rule
from onnxgate.plugins import InputSpec
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.spec import Tolerance

TOL = Tolerance(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def string_classifier():
    """A real skl2onnx classifier with string classes and ZipMap on, and its onnxruntime outputs."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(X, names)
    X32 = X[::5].astype(np.float32)
    onx = to_onnx(model, X32[:1])  # ZipMap on: probabilities come back as a list of dicts
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: X32})))
    return model, onx, X32, out


def test_zipmap_and_string_labels_are_normalised(string_classifier):
    model, onx, X, actual = string_classifier
    assert isinstance(actual["output_probability"], list)
    expected = {"output_label": model.predict(X), "output_probability": model.predict_proba(X)}
    results, _ = tasks.compare_case(actual, expected, TOL, None, tasks.model_classes(onx))
    by = {r["name"]: r for r in results}
    assert by["output_label"]["task"] == "classifier-label"
    assert by["output_probability"]["task"] == "classifier-probabilities"
    assert "ZipMap" in by["output_probability"]["normalised"]
    assert all(r["passed"] for r in results), results
    assert by["output_label"]["metrics"]["label_agreement"] == 1.0


def test_class_indices_against_class_names_are_mapped(string_classifier):
    model, onx, X, actual = string_classifier
    indices = np.searchsorted(model.classes_, model.predict(X))  # a source that returns indices
    expected = {"output_label": indices, "output_probability": model.predict_proba(X)}
    results, _ = tasks.compare_case(actual, expected, TOL, None, tasks.model_classes(onx))
    label = results[0]
    assert label["passed"], label
    assert "the original returned class indices" in label["normalised"]


def test_label_agreement_rate_gates_and_can_be_relaxed(string_classifier):
    model, onx, X, actual = string_classifier
    wrong = model.predict(X).copy()
    wrong[0] = "virginica" if wrong[0] != "virginica" else "setosa"  # one of 30 rows disagrees
    expected = {"output_label": wrong, "output_probability": model.predict_proba(X)}
    results, _ = tasks.compare_case(actual, expected, TOL, None, tasks.model_classes(onx))
    assert not results[0]["passed"] and "label agreement 0.9667 < 1" in results[0]["reason"]
    relaxed = GateConfig(outputs={"output_label": OutputRule(min_agreement=0.95)})
    results, _ = tasks.compare_case(actual, expected, TOL, relaxed, tasks.model_classes(onx))
    assert results[0]["passed"] and results[0]["metrics"]["label_agreement"] == pytest.approx(29 / 30)


def test_perturbed_probabilities_fail(string_classifier):
    model, onx, X, actual = string_classifier
    proba = model.predict_proba(X)
    proba[3] += [0.01, -0.01, 0.0]
    results, _ = tasks.compare_case(
        actual, {"output_label": model.predict(X), "output_probability": proba}, TOL, None, tasks.model_classes(onx)
    )
    assert not results[1]["passed"] and results[1]["metrics"]["rows_mismatched"] == 1


def _embedding_model(scale=1.0, swap=False):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 8)).astype(np.float32)
    W_onnx = W * np.float32(scale)
    if swap:  # a converter bug: two feature columns exchanged
        W_onnx = W_onnx[:, [1, 0, 2, 3, 4, 5, 6, 7]]
    onx = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["emb"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 8])],
        [("W", W_onnx)],
    )
    return HandModel(lambda x: [x.astype(np.float64) @ W.astype(np.float64)], onx, [InputSpec("x", (None, 6))])


def _convert(model, **gate):
    return api.convert(model, framework="hand", registry=registry(), latency=False, gate=GateConfig(**gate))


def test_embeddings_report_cosine_and_topk():
    result = _convert(_embedding_model())
    out = result.report.cases[0].outputs[0]
    assert out.task == "embedding" and result.passed
    m = out.metrics
    assert m["cosine_min"] > 0.999999 and m["top1_agreement"] == 1.0 and m["topk_agreement"] == 1.0 and m["topk"] == 5


def test_embeddings_scaled_fail_elementwise_but_can_be_gated_on_cosine():
    scaled = _embedding_model(scale=1.01)
    assert not _convert(scaled).passed
    rules = {"emb": OutputRule(elementwise=False, min_cosine=0.9999)}
    result = _convert(scaled, outputs=rules)
    assert result.passed, result.failures
    swapped = _convert(_embedding_model(swap=True), outputs=rules)
    assert not swapped.passed
    assert "cosine similarity" in swapped.report.cases[0].outputs[0].reason


def test_regression_metrics():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    result = api.convert(Ridge().fit(X, y), latency=False)
    out = result.report.cases[0].outputs[0]
    assert out.task == "regression" and "mean_abs_err" in out.metrics and out.max_rel_err >= 0


def test_parse_rule_and_errors():
    name, rule = parse_rule("scores:rtol=1e-3,atol=2e-4,elementwise=false")
    assert name == "scores" and rule == OutputRule(rtol=1e-3, atol=2e-4, elementwise=False)
    assert parse_rule("a:b:min_cosine=0.9")[0] == "a:b"  # output names may hold colons
    for bad in ("scores", "scores:rtol", "scores:speed=1", "scores:rtol=abc", "scores:elementwise=maybe"):
        with pytest.raises(UsageError):
            parse_rule(bad)


def test_config_file_toml_and_json_and_cli_wins(tmp_path):
    toml = tmp_path / "gate.toml"
    toml.write_text("[outputs.probabilities]\nrtol = 1e-3\natol = 1e-4\n[outputs.label]\nmin_agreement = 0.99\n")
    rules = load_file(toml)
    assert rules["probabilities"].rtol == 1e-3 and rules["label"].min_agreement == 0.99
    js = tmp_path / "gate.json"
    js.write_text('{"outputs": {"emb": {"min_cosine": 0.99, "topk": 3}}}')
    assert load_file(js)["emb"] == OutputRule(min_cosine=0.99, topk=3)
    merged = merge(rules, dict([parse_rule("probabilities:rtol=5e-2")]))
    assert merged["probabilities"] == OutputRule(rtol=5e-2, atol=1e-4)
    (tmp_path / "bad.toml").write_text("[outputs.x]\nwhat = 1\n")
    with pytest.raises(UsageError):
        load_file(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("[outputs\n")
    with pytest.raises(UsageError):
        load_file(tmp_path / "broken.toml")


def test_per_output_tolerance_from_the_cli_decides(tmp_path, capsys):
    import skops.io as sio
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    sio.dump(Ridge().fit(X, y), tmp_path / "m.skops")
    args = ["convert", str(tmp_path / "m.skops"), "-o", str(tmp_path / "m.onnx"), "--no-latency"]
    # an absurdly tight tolerance on the one output fails; the CLI names it
    assert cli.main(args + ["--tolerance", "variable:rtol=0,atol=1e-12"]) == 1
    assert cli.main(args + ["--tolerance", "variable:rtol=1e-3,atol=1e-3"]) == 0
    assert cli.main(args + ["--tolerance", "variable"]) == 2
    assert "expected OUTPUT:key=value" in capsys.readouterr().err
