"""The Python API with data in memory: every sample form for scikit-learn,
PyTorch, TensorFlow and ONNX sources, expected outputs in memory, and the
usage errors a wrong value gets (onnxgate's own, naming what was given).

Gate extras (sweep, latency) are off where they add time and not coverage.
"""

from pathlib import Path

import numpy as np
import pytest

from onnxgate.pipeline import OutputRule, Tolerance, UsageError, convert, validate

FAST = dict(latency=False, sweep=False)


# ---- scikit-learn -------------------------------------------------------------
@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)  # float64: onnxgate casts to the model's float32 input
    return LogisticRegression(max_iter=500).fit(X, y), X


def _sklearn_forms(X):
    import pandas as pd
    import torch

    return {
        "ndarray float64": X[:10],
        "list of rows": X[:10].tolist(),
        "dict by input name": {"X": X[:10]},
        "DataFrame": pd.DataFrame(X[:10], columns=["sl", "sw", "pl", "pw"]),
        "torch tensor": torch.tensor(X[:10]),
    }


@pytest.mark.parametrize("form", ["ndarray float64", "list of rows", "dict by input name", "DataFrame", "torch tensor"])
def test_sklearn_sample_forms(iris, form):
    model, X = iris
    result = convert(model, sample=_sklearn_forms(X)[form], **FAST)
    assert result.passed, result.report.to_dict()["failures"]
    base = [c for c in result.report.to_dict()["cases"] if c["kind"] == "base"]
    assert sorted(c["input_shapes"]["X"][0] for c in base) == [1, 10]  # the sample's rows, not synthesised
    assert not any("synthesised" in n for n in result.report.to_dict()["notes"])


def test_sklearn_expected_in_memory_is_what_the_gate_compares(iris, tmp_path):
    model, X = iris
    onnx_path = tmp_path / "iris.onnx"
    convert(model, sample=X[:8], **FAST).save(onnx_path)
    right = {"label": model.predict(X[:8]), "probabilities": model.predict_proba(X[:8]).astype(np.float32)}
    ok = validate(onnx_path, sample=X[:8].astype(np.float32), expected=right, **FAST)
    assert ok.passed, ok.report.to_dict()["failures"]
    wrong = dict(right, probabilities=right["probabilities"][:, ::-1].copy())
    bad = validate(onnx_path, sample=X[:8].astype(np.float32), expected=wrong, **FAST)
    assert not bad.passed and any("probabilities" in f for f in bad.report.to_dict()["failures"])


# ---- PyTorch --------------------------------------------------------------------
torch = pytest.importorskip("torch")


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(5, 2)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).eval()


@pytest.mark.parametrize("form", ["tensor", "ndarray", "list", "dict by source name"])
def test_torch_sample_forms(form):
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(1))
    sample = {"tensor": x, "ndarray": x.numpy(), "list": x.tolist(), "dict by source name": {"input": x}}[form]
    result = convert(_mlp(), sample=sample, **FAST)
    assert result.passed, result.report.to_dict()["failures"]
    assert 7 in [c["input_shapes"]["input"][0] for c in result.report.to_dict()["cases"]]


def test_torch_two_inputs_by_forward_argument_name_and_grad_tensors():
    left = torch.randn(4, 3, requires_grad=True)  # a tensor still attached to autograd
    result = convert(TwoInputs().eval(), sample={"left": left, "right": np.ones((4, 5), np.float32)}, **FAST)
    assert result.passed, result.report.to_dict()["failures"]
    assert {i["name"] for i in result.report.to_dict()["onnx"]["inputs"]} == {"left", "right"}


def test_torch_validate_existing_onnx_with_tensor_sample(tmp_path):
    model = _mlp()
    path = tmp_path / "mlp.onnx"
    convert(model, **FAST).save(path)
    result = validate(model, path, sample=torch.randn(3, 6), **FAST)
    assert result.passed and 3 in [c["input_shapes"]["input"][0] for c in result.report.to_dict()["cases"]]


# ---- TensorFlow -------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_model():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="features")
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(6, activation="relu")(inp)))


@pytest.mark.parametrize("form", ["tf tensor", "ndarray", "dict by input name", "list"])
def test_tensorflow_sample_forms(keras_model, form):
    import tensorflow as tf

    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    sample = {
        "tf tensor": tf.constant(x),
        "ndarray": x,
        "dict by input name": {"features": tf.constant(x)},
        "list": x.tolist(),
    }[form]
    result = convert(keras_model, sample=sample, **FAST)
    assert result.passed, result.report.to_dict()["failures"]
    assert 6 in [c["input_shapes"]["features"][0] for c in result.report.to_dict()["cases"]]


# ---- ONNX (ready-made) ---------------------------------------------------------------
def _onnx_add(tmp_path):
    """out = a + 2*b over two [N, 1] float inputs: one input per DataFrame column."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 1])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["b", "two"], ["b2"]), helper.make_node("Add", ["a", "b2"], ["out"])],
        "add",
        [a, b],
        [out],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "add.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_dataframe_column_per_input_with_expected_array(tmp_path):
    import pandas as pd

    path = _onnx_add(tmp_path)
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 4.0], "unused": [9, 9, 9]})
    ok = validate(path, sample=frame, expected=np.array([[2.0], [2.5], [11.0]], np.float32), **FAST)
    assert ok.passed, ok.report.to_dict()["failures"]
    bad = validate(path, sample=frame, expected={"out": np.array([[2.0], [2.5], [12.0]], np.float32)}, **FAST)
    assert not bad.passed


def test_onnx_dict_sample_and_expected_dict(tmp_path):
    path = _onnx_add(tmp_path)
    a, b = np.ones((2, 1), np.float32), np.full((2, 1), 3.0, np.float32)
    result = validate(str(path), sample={"a": a, "b": b.tolist()}, expected={"out": a + 2 * b}, **FAST)
    assert result.passed and result.report.to_dict()["verdict"] == "passed"


# ---- errors: onnxgate's own, naming what was given and what is accepted ----------------
@pytest.mark.parametrize(
    "value,needle",
    [
        ({1, 2, 3}, "a set is not usable as data"),
        (object(), "a object is not usable as data"),
        ([[1.0, 2.0], [3.0]], "cannot be read as an array (list)"),
        ({}, "the dict holds no arrays"),
        ({0: np.ones((2, 4))}, "dict keys must be input names"),
        ([{"a": 1}], "not usable as data"),
    ],
)
def test_unsupported_sample_is_a_usage_error_naming_it(iris, value, needle):
    model, _X = iris
    with pytest.raises(UsageError) as info:
        convert(model, sample=value, **FAST)
    assert needle in str(info.value)
    assert "TypeError" not in str(info.value)


def test_unnamed_expected_for_two_outputs_names_them(iris, tmp_path):
    model, X = iris
    path = tmp_path / "iris.onnx"
    convert(model, sample=X[:4], **FAST).save(path)
    with pytest.raises(UsageError, match=r"2 outputs \(label, probabilities\); give a dict keyed by output name"):
        validate(path, sample=X[:4], expected=np.zeros(4), **FAST)


def test_missing_sample_file_is_still_a_usage_error(iris, tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        convert(iris[0], sample=tmp_path / "nope.npz", **FAST)


# ---- typed keywords -----------------------------------------------------------------
def test_tolerance_objects_and_per_output_rules(iris):
    model, X = iris
    strict = convert(model, sample=X[:10], tolerance=Tolerance(rtol=0.0, atol=0.0), **FAST)
    assert strict.report.to_dict()["tolerance"] == {"rtol": 0.0, "atol": 0.0}
    rules = convert(
        model,
        sample=X[:10],
        tolerance={"probabilities": Tolerance(rtol=1e-2, atol=1e-3), "label": {"min_agreement": 0.9}},
        **FAST,
    )
    assert rules.passed
    assert rules.report.to_dict()["gate"]["outputs"] == {
        "probabilities": {"rtol": 1e-2, "atol": 1e-3},
        "label": {"min_agreement": 0.9},
    }
    also = convert(model, sample=X[:10], tolerance={"label": OutputRule(min_agreement=0.5)}, **FAST)
    assert also.report.to_dict()["gate"]["outputs"] == {"label": {"min_agreement": 0.5}}


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(tolerance=Tolerance(), rtol=1e-3), "not both"),
        (dict(tolerance={"label": {"nonsense": 1}}), "unknown key 'nonsense'"),
        (dict(tolerance=0.1), "give a Tolerance or a dict"),
        (dict(rtol=-1.0), "must be a number >= 0"),
        (dict(max_flip_rate=2.0), "between 0 and 1"),
        (dict(target_runtime="new"), "expected a version like 1.17"),
        (dict(baseline="/nonexistent/baseline.json"), "no such file"),
    ],
)
def test_bad_keywords_are_usage_errors(iris, kwargs, needle):
    model, X = iris
    with pytest.raises(UsageError, match=needle):
        convert(model, sample=X[:4], **kwargs)


def test_gate_keywords_reach_the_report(iris):
    model, X = iris
    result = convert(model, sample=X[:6], edge_values=True, optimizer_check=False, latency=False)
    assert (
        result.report.to_dict()["gate"]["edge_values"] is True
        and result.report.to_dict()["gate"]["optimizer_check"] is False
    )
    assert any(c["kind"] == "edge" for c in result.report.to_dict()["cases"])
    assert "latency" not in result.report.to_dict() or not result.report.to_dict()["latency"]


# ---- a converter in another Python environment: in-memory data crosses as files ---------
def test_in_memory_sample_reaches_an_isolated_environment():
    from test_mxnet_chainer import built

    mlp = built()["chainer-mlp"]
    path = Path(mlp["sample"])
    arrays = dict(np.load(path)) if path.suffix == ".npz" else {None: np.load(path)}
    sample = arrays.get(None, arrays)
    result = convert(mlp["source"], framework="chainer", sample=sample, options=mlp["options"], **FAST)
    assert result.passed, result.report.to_dict()["failures"]
    rows = next(iter(arrays.values())).shape[0]
    assert rows in [next(iter(c["input_shapes"].values()))[0] for c in result.report.to_dict()["cases"]]
