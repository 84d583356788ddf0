"""Diagnosis: models broken on purpose, and the diagnosis must name where."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import main
from onnxgate.pipeline.gate import diagnose
from onnxgate.pipeline.report.document import validate_schema
from onnxgate.plugins.spec import Tolerance


def _perturb_initializer(model, name, delta=0.5):
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    for init in broken.graph.initializer:
        if init.name == name:
            value = numpy_helper.to_array(init).copy()
            value += delta  # every element: a single one may meet only zeros after a ReLU
            init.CopyFrom(numpy_helper.from_array(value, name))
            return broken
    raise AssertionError(f"no initializer {name}")


# ---------------------------------------------------------------- PyTorch


@pytest.fixture(scope="module")
def torch_mlp():
    torch = pytest.importorskip("torch")

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(6, 16)
            self.act = torch.nn.ReLU()
            self.fc2 = torch.nn.Linear(16, 8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.fc2(self.act(self.fc1(x)))))

    torch.manual_seed(0)
    model = MLP().eval()
    result = api.convert(model, latency=False)
    assert result.passed, result.failures
    return model, result.model


def test_torch_perturbed_second_gemm_is_named(torch_mlp):
    model, onx = torch_mlp
    gemms = [n for n in onx.graph.node if n.op_type == "Gemm"]
    broken = _perturb_initializer(onx, gemms[1].input[1])
    result = api.validate(model, broken, latency=False)
    assert not result.passed
    found = diagnose.for_result(result, model)
    source = found["source"]
    assert source["status"] == "mismatch"
    assert source["layer"] == "fc2" and source["kind"] == "Linear"
    assert source["node"] == gemms[1].name and source["op_type"] == "Gemm"
    assert source["compared"] == 3  # fc1 and act matched, fc2 did not
    assert found["runtime"]["status"] == "agree"  # both runtimes see the same wrong weight
    assert "fc2" in found["summary"]
    result.report.diagnosis = found
    validate_schema(result.report)


def test_torch_correct_model_locates_nothing(torch_mlp):
    model, onx = torch_mlp
    found = diagnose.diagnose(_spec("torch"), model, onx, {"x": _rng_input((5, 6))})
    assert found["source"]["status"] == "agree" and found["source"]["compared"] >= 4
    assert found["runtime"]["status"] == "agree"
    assert found["summary"].startswith("no mismatch located")


# ---------------------------------------------------------------- scikit-learn


@pytest.fixture(scope="module")
def sk_pipeline():
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scaler", StandardScaler()), ("norm", Normalizer()), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    result = api.convert(pipe, sample=None, latency=False)
    assert result.passed, result.failures
    return pipe, result.model


def _scale_scaler(model, factor=3.0):
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    (scaler,) = [n for n in broken.graph.node if n.op_type == "Scaler"]
    for attr in scaler.attribute:
        if attr.name == "scale":
            attr.floats[1] *= factor
    return broken


def test_sklearn_corrupt_scaler_step_is_named(sk_pipeline):
    pipe, onx = sk_pipeline
    result = api.validate(pipe, _scale_scaler(onx), latency=False)
    assert not result.passed
    found = diagnose.for_result(result, pipe)
    assert found["source"]["status"] == "mismatch"
    assert found["source"]["layer"] == "scaler" and found["source"]["kind"] == "StandardScaler"
    assert found["source"]["op_type"] == "Scaler"
    assert found["runtime"]["status"] == "agree"


def test_sklearn_corrupt_last_step_is_named(sk_pipeline):
    pipe, onx = sk_pipeline
    broken = onnx.ModelProto()
    broken.CopyFrom(onx)
    (clf,) = [n for n in broken.graph.node if n.op_type == "LinearClassifier"]
    for attr in clf.attribute:
        if attr.name == "coefficients":
            attr.floats[0] += 2.0
    found = diagnose.diagnose(_spec("sklearn"), pipe, broken, {"X": _rng_input((8, 4))})
    assert found["source"]["status"] == "mismatch"
    assert found["source"]["layer"] == "clf", found["source"]  # scaler and norm still match
    assert found["source"]["compared"] == 3


# ---------------------------------------------------------------- Keras


def test_keras_perturbed_dense_layer_is_named():
    pytest.importorskip("tf2onnx")
    keras = pytest.importorskip("keras")

    from onnxgate.plugins.spec import ConvertOptions

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="fc1")(inp)
    h = keras.layers.Dense(8, name="fc2")(h)
    h = keras.layers.Activation("tanh", name="act")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(h))
    # the tensorflow converter's spec with the Keras implementation wired in
    spec = _spec("tensorflow")  # its intermediates come from the converter (converters/tf_intermediates.py)
    inputs = {"x": _rng_input((4, 6))}
    onx = spec.convert(model, inputs, ConvertOptions()).model
    assert diagnose.diagnose(spec, model, onx, inputs)["source"]["status"] == "agree"
    matmuls = [n for n in onx.graph.node if n.op_type == "MatMul"]
    found = diagnose.diagnose(spec, model, _perturb_initializer(onx, matmuls[1].input[1]), inputs)
    assert found["source"]["status"] == "mismatch"
    assert (found["source"]["layer"], found["source"]["kind"]) == ("fc2", "Dense")
    assert found["source"]["node"] == matmuls[1].name


# ---------------------------------------------------------------- runtime vs reference


def _small_graph():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32) * 2, "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["y"], name="sigmoid"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_runtime_vs_reference_names_the_first_differing_node(monkeypatch):
    # ORT and onnx.reference agree on every standard op here, so a difference
    # is injected by patching the reference's Relu: the search must name the
    # Relu node, not the Sigmoid after it that inherits the difference.
    from onnx.reference.ops import op_relu

    original = op_relu.Relu._run
    monkeypatch.setattr(op_relu.Relu, "_run", lambda self, x: (original(self, x)[0] + np.float32(0.5),))
    found = diagnose.runtime_vs_reference(_small_graph(), {"x": _rng_input((3, 4))}, Tolerance())
    assert found["status"] == "mismatch"
    assert found["node"] == "relu" and found["op_type"] == "Relu" and found["tensor"] == "r"
    assert found["max_abs_err"] == pytest.approx(0.5, rel=1e-5)
    assert found["compared"] == 2


def test_runtime_vs_reference_agrees_unpatched():
    found = diagnose.runtime_vs_reference(_small_graph(), {"x": _rng_input((3, 4))}, Tolerance())
    assert found == {"status": "agree", "compared": 3, "message": found["message"]}


def test_reference_unavailable_for_custom_domain_is_reported():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])
    node = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft", name="gelu")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    found = diagnose.runtime_vs_reference(model, {"x": _rng_input((2, 4))})
    assert found["status"] == "unavailable"
    assert "onnx.reference cannot run this model" in found["message"] and "\n" not in found["message"]


def test_expose_adds_intermediates():
    exposed = diagnose.expose(_small_graph())
    assert [o.name for o in exposed.graph.output] == ["y", "h", "r"]
    only = diagnose.expose(_small_graph(), {"r"})
    assert [o.name for o in only.graph.output] == ["y", "r"]


# ---------------------------------------------------------------- CLI


@pytest.fixture()
def skops_files(tmp_path, sk_pipeline):
    sio = pytest.importorskip("skops.io")
    pipe, onx = sk_pipeline
    source = tmp_path / "pipe.skops"
    sio.dump(pipe, source)
    bad = tmp_path / "bad.onnx"
    onnx.save(_scale_scaler(onx), str(bad))
    good = tmp_path / "good.onnx"
    onnx.save(onx, str(good))
    return source, good, bad


def test_cli_diagnose_names_step_and_writes_report(skops_files, tmp_path, capsys):
    source, _, bad = skops_files
    report_path = tmp_path / "r.json"
    code = main(["diagnose", str(source), str(bad), "--report", str(report_path), "--no-latency"])
    out = capsys.readouterr().out
    assert code == 1
    assert "'scaler' (StandardScaler)" in out and "Scaler" in out
    report = json.loads(report_path.read_text())
    assert report["diagnosis"]["source"]["layer"] == "scaler"
    validate_schema(report)


def test_cli_validate_diagnose_only_on_failure(skops_files, tmp_path, capsys):
    source, good, bad = skops_files
    ok_report, bad_report = tmp_path / "ok.json", tmp_path / "bad.json"
    assert main(["validate", str(source), str(good), "--diagnose", "--report", str(ok_report), "--no-latency"]) == 0
    assert "diagnosis" not in json.loads(ok_report.read_text())
    assert main(["validate", str(source), str(bad), "--diagnose", "--report", str(bad_report), "--no-latency"]) == 1
    assert "diagnosis on case" in capsys.readouterr().out
    assert json.loads(bad_report.read_text())["diagnosis"]["source"]["layer"] == "scaler"


# ---------------------------------------------------------------- helpers


def _spec(name):
    from onnxgate.plugins.manager import Registry

    return Registry().converter(name)


def _rng_input(shape):
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def test_cli_diagnose_missing_model_is_a_usage_error(skops_files, tmp_path, capsys):
    source, _, _ = skops_files
    code = main(["diagnose", str(source), str(tmp_path / "nope.onnx"), "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no such ONNX file" in err
    assert not (tmp_path / "r.json").exists()
