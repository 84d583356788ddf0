"""The tolerance that knows float32 noise (issue 14, item 9): the rule, the
float64 runs of the PyTorch and scikit-learn converters, the report fields,
the optimiser check, a deep CNN that failed before, and a fault only the
noise-aware bound catches."""

import copy
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.conversion.noise import noise_floor
from onnxgate.pipeline.gate import stage as gate_stage
from onnxgate.pipeline.gate import tasks
from onnxgate.pipeline.gate.compare import NOISE_ULPS, Noise, compare_output
from onnxgate.pipeline.gate.config import GateConfig, OutputRule, parse_rule, resolve
from onnxgate.pipeline.report import html, markdown, summary
from onnxgate.pipeline.report.document import schema
from onnxgate.plugins import Tolerance, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

EPS32 = float(np.finfo(np.float32).eps)


def _logits():
    """Ten logits around 20, one near zero: the issue's failing row."""
    row = np.array([20.0, -18.5, 19.2, 0.03, -20.1, 17.7, 12.4, -9.9, 15.5, 18.8])
    return np.stack([row, row[::-1] * 0.9])


# --- the rule ----------------------------------------------------------------
def test_scale_aware_default_holds_a_small_logit_to_its_rows_magnitude():
    expected = _logits()
    actual = expected.copy()
    actual[0, 3] += 2e-5  # > 1e-5 + 1e-4 * 0.03: failed the old elementwise bound
    tol = Tolerance(rtol=1e-4, atol=1e-5)
    result = compare_output("logits", actual, expected, tol)
    assert result["passed"] and result["tolerance_rule"] == "scale-aware"
    assert result["bound"] == pytest.approx(1e-5 + 1e-4 * 20.1)
    actual[0, 3] += 5e-3  # beyond 1e-5 + 1e-4 * 20.1 = 2e-3: a real error
    result = compare_output("logits", actual, expected, tol)
    assert not result["passed"] and "max|expected| of their row" in result["reason"]


def test_scale_aware_default_is_per_row_and_elementwise_for_one_value_rows():
    # rows of very different magnitudes: the small row is not loosened by the large one
    expected = np.array([[1000.0, 900.0], [0.01, 0.02]])
    actual = expected + np.array([[0.05, 0.0], [0.0, 0.001]])
    result = compare_output("y", actual, expected, Tolerance(rtol=1e-4, atol=1e-5))
    assert not result["passed"] and "1 of 4 elements" in result["reason"]
    # regression outputs (one value per row): each value is its own row, as before
    reg = np.array([100.0, 0.001])
    assert not compare_output("y", reg + [0.0, 1e-4], reg, Tolerance(1e-4, 1e-5))["passed"]
    assert compare_output("y", reg + [5e-3, 0.0], reg, Tolerance(1e-4, 1e-5))["passed"]


def test_probabilities_and_float64_originals_keep_each_elements_own_scale():
    """A softmax's error on a class is proportional to that class's
    probability, and a float64 original (scikit-learn) has no float32
    accumulation to scale by a row: both are held element by element, so a
    small probability or target moved by 1.5e-4 still fails (the fault
    benchmark's float16 faults on a soft-voting ensemble and a multi-output
    ridge, caught before the scale-aware rule)."""
    tol = Tolerance(rtol=1e-4, atol=1e-4)  # scikit-learn's
    proba = np.array([[0.98, 0.015, 0.005], [0.2, 0.7, 0.1]])
    moved = proba + np.array([[0.0, 0.0, 1.5e-4], [0.0, 0.0, 0.0]])
    # float32 probabilities (a network's softmax): the probability rule is per element
    results, _ = tasks.compare_case({"p": moved.astype(np.float32)}, {"p": proba.astype(np.float32)}, tol, None)
    assert results[0]["task"] == "classifier-probabilities" and not results[0]["passed"]
    assert "rtol=0.0001*|expected|" in results[0]["reason"]
    # float64 targets of a multi-output regressor, read as 'embedding' by their shape: per element too
    targets = np.array([[120.0, 0.004], [80.0, 0.002]])
    results, _ = tasks.compare_case({"y": targets + [[0.0, 1.5e-4], [0.0, 0.0]]}, {"y": targets}, tol, None)
    assert results[0]["task"] == "embedding" and not results[0]["passed"]
    # the same values from a float32 original: the row's scale (120) judges them
    results, _ = tasks.compare_case(
        {"y": (targets + [[0.0, 1.5e-4], [0.0, 0.0]]).astype(np.float32)}, {"y": targets.astype(np.float32)}, tol, None
    )
    assert results[0]["passed"]


def test_noise_bound_is_a_multiple_of_the_floor_plus_two_ulps():
    expected = _logits()
    noise = Noise(floor=1.0e-4, multiple=4.0)
    scale = 20.1
    assert noise.bound(scale) == pytest.approx(4e-4 + NOISE_ULPS * EPS32 * scale)
    within = expected.copy()
    within[0, 3] += 3.9e-4
    result = compare_output("logits", within, expected, Tolerance(), noise)
    assert result["passed"] and result["tolerance_rule"] == "float32-noise"
    assert result["noise_floor"] == 1.0e-4 and result["noise_multiple"] == 4.0
    beyond = expected.copy()
    beyond[1, 0] += 4.2e-4
    result = compare_output("logits", beyond, expected, Tolerance(), noise)
    assert not result["passed"] and "4 x the original's float32 noise floor 0.0001" in result["reason"]


def test_noise_bound_is_tighter_than_the_default_when_the_noise_is_tiny():
    expected = _logits()
    actual = expected * (1 + 2e-5)  # 2e-5 relative: what rounding a weight to float16 does
    assert compare_output("logits", actual, expected, Tolerance(1e-4, 1e-5))["passed"]
    assert not compare_output("logits", actual, expected, Tolerance(1e-4, 1e-5), Noise(2e-7))["passed"]


def test_noise_floor_only_where_the_original_computes_in_float32():
    f64 = np.array([[1.0, 2.0, 3.0]]) + 1e-9
    assert noise_floor(f64.astype(np.float32), f64) == pytest.approx(np.abs(f64.astype(np.float32) - f64).max())
    assert noise_floor(f64, f64 + 1e-12) is None  # float64 output: no float32 noise to measure
    assert noise_floor(np.array([1, 2]), np.array([1.0, 2.0])) is None  # labels
    assert noise_floor(np.array([np.inf], np.float32), np.array([1e300])) is None  # overflow is not noise
    assert noise_floor(np.zeros(3, np.float32), np.zeros(4)) is None


def test_the_users_tolerance_or_multiple_zero_turns_the_noise_rule_off():
    gate = GateConfig(outputs={"b": OutputRule(rtol=1e-3), "c": OutputRule(noise_multiple=0.0)})
    floors = {"a": 1e-5, "b": 1e-5, "c": 1e-5}
    assert tasks.noise_of("a", floors, gate) == Noise(1e-5, 4.0)
    assert tasks.noise_of("a", floors, gate, explicit=True) is None  # --rtol/--atol given
    assert tasks.noise_of("b", floors, gate) is None
    assert tasks.noise_of("c", floors, gate) is None
    assert tasks.noise_of("d", floors, gate) is None  # not measured
    assert tasks.noise_of("a", floors, GateConfig(noise_multiple=8.0)) == Noise(1e-5, 8.0)
    name, rule = parse_rule("a:noise_multiple=16")
    assert name == "a" and rule.noise_multiple == 16.0
    with pytest.raises(UsageError, match="out of range"):
        parse_rule("a:noise_multiple=-1")
    with pytest.raises(UsageError, match="--noise-multiple"):
        resolve(noise_multiple=float("nan"))
    assert resolve(float64_reference=False, noise_multiple=2).summary()["noise_multiple"] == 2.0


def test_optimiser_check_calls_float32_rounding_noise_not_an_optimiser_problem():
    # the case: optimised and unoptimised sessions 2.5e-4 apart on logits around 20
    plain = _logits()
    optimised = plain.copy()
    optimised[0, 3] += 2.5e-4
    tol = Tolerance(rtol=1e-4, atol=1e-5)
    assert not gate_stage._disagree(optimised, plain, tol, Noise(1.0e-4))
    assert not gate_stage._disagree(optimised, plain, tol)  # scale-aware default: 1e-5 + 1e-4 * 20.1
    optimised[0, 3] += 0.5  # a rewrite that changes the result
    assert gate_stage._disagree(optimised, plain, tol, Noise(1.0e-4))
    assert gate_stage._disagree(optimised, plain, tol)


# --- the float64 runs ----------------------------------------------------------
def test_torch_float64_run_leaves_the_users_module_in_float32():
    import torch

    from onnxgate.converters import torch as torch_converter

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    (out32,) = torch_converter.run(model, {"input": x})
    (out64,) = torch_converter.run_float64(model, {"input": x})
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    assert all(p.dtype == torch.float32 for p in model.parameters())
    floor = noise_floor(out32, out64)
    assert floor is not None and 0 < floor < 1e-5 * np.abs(out64).max()
    # an ExportedProgram runs in float64 too
    program = torch.export.export(model, (torch.from_numpy(x),))
    (prog64,) = torch_converter.run_float64(program, {"input": x})
    assert prog64.dtype == np.float64 and np.allclose(prog64, out64)


def test_sklearn_float64_run_is_native_and_not_for_text():
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from onnxgate.converters import sklearn as sk

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5)).astype(np.float32)
    model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0))
    model.fit(X, X.sum(axis=1))
    (out32,) = sk.run(model, {"X": X})
    (out64,) = sk.run_float64(model, {"X": X})
    assert out32.dtype == np.float32 and out64.dtype == np.float64  # MLP keeps float32 data in float32
    assert noise_floor(out32, out64) > 0
    assert sk.run_float64(model, {"X": np.array([["a"], ["b"]], dtype=object)}) is None


# --- end to end --------------------------------------------------------------
def _deep_cnn(tmp_path, factory):
    from zoo import deep_cnn_models

    model, (images,) = getattr(deep_cnn_models, factory)()
    sample = tmp_path / f"{factory}.npy"
    np.save(sample, images.numpy())
    return model, sample


def test_deep_cnn_with_random_weights_is_no_false_failure(tmp_path):
    """RegNet-style, 1000 classes: its ONNX error equals the original's own float32 error;
    the old elementwise bound (1e-5 + 1e-4 * |expected|) failed it and called the
    optimiser's 3e-5 rounding difference an optimiser problem."""
    from onnxgate.pipeline.core.session import Runtime
    from onnxgate.pipeline.gate.compare import bad_elements

    model, sample = _deep_cnn(tmp_path, "regnet_style")
    result = api.convert(model, sample=sample, latency=False)
    assert result.passed, result.failures
    assert result.report.check("optimizer_consistency").passed
    out = result.report.cases[0].outputs[0]
    assert out.tolerance_rule == "float32-noise" and out.noise_floor > 1e-5 and out.max_abs_err <= out.bound
    assert "float32 noise floor per output" in result.report.check("float32_noise").message
    # the same arrays under the old elementwise bound: the failure this fixes
    case = result.artifact.cases[0]
    actual = Runtime(result.model_bytes()).run(case)
    name = next(iter(case.expected))
    e = np.asarray(case.expected[name], np.float64)
    old = np.abs(np.asarray(actual[name], np.float64) - e) > 1e-5 + 1e-4 * np.abs(e)
    assert old.any() and not bad_elements(np.asarray(actual[name]), e, Tolerance(1e-4, 1e-5), None).any()


def test_a_fault_the_old_bound_accepted_fails_the_noise_aware_bound():
    """The largest weight of a small ResNet rounded to float16 moves the logits by
    ~1e-5 relative: inside 1e-4 * |expected|, far beyond the original's float32 noise."""
    from dataclasses import replace

    from onnx import numpy_helper
    from zoo import torch_models

    model, example = torch_models.resnet_tiny()
    result = api.convert(model, sample={"images": example[0].numpy()}, latency=False)
    assert result.passed, result.failures
    broken = copy.deepcopy(result.model)
    init = max(broken.graph.initializer, key=lambda i: numpy_helper.to_array(i).size)
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16).astype(arr.dtype), init.name))
    artifact = replace(result.artifact, model=broken)

    def failures(gate):
        section = gate_stage.validate(artifact, gate=gate)
        return [o for c in section["cases"] for o in c["outputs"] if not o["passed"]]

    assert failures(GateConfig(noise_multiple=0.0)) == []  # scale-aware default alone: accepted
    caught = failures(GateConfig())
    assert caught and all(o["tolerance_rule"] == "float32-noise" for o in caught)
    assert all(o["max_abs_err"] > o["bound"] >= 4 * o["noise_floor"] for o in caught)


def test_report_shows_the_noise_floor_in_every_format(tmp_path):
    from zoo import torch_models

    model, example = torch_models.mlp_mixed()
    result = api.convert(model, sample={"x": example[0].numpy()}, latency=False)
    assert result.passed, result.failures
    data = result.report.to_dict()
    jsonschema.Draft202012Validator(schema()).validate(data)
    outs = [o for c in data["cases"] if c["kind"] != "edge" for o in c["outputs"]]
    assert outs and all(o["tolerance_rule"] == "float32-noise" and o["noise_floor"] >= 0 for o in outs)
    assert data["gate"]["float64_reference"] is True and data["gate"]["noise_multiple"] == 4.0
    stats = result.report.outputs
    assert all(s.noise_floor is not None for s in stats.values())
    md = markdown.to_markdown(data)
    assert "| float32 noise floor | bound |" in md
    assert "<th>float32 noise floor</th>" in html.to_html(data)
    assert "the original's own float32 noise floor" in summary.one_line(data, tmp_path / "m.onnx")
    bad = copy.deepcopy(data)
    bad["cases"][0]["outputs"][0]["tolerance_rule"] = "loose"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(bad)


def test_float64_reference_off_on_the_cli_uses_the_scale_aware_rule(tmp_path):
    import json

    from zoo import torch_models

    model, example = torch_models.mlp_mixed()
    import torch

    program = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(model, example), str(program))
    sample = tmp_path / "x.npy"
    np.save(sample, example[0].numpy())
    report = tmp_path / "r.json"
    args = ["convert", str(program), "-o", str(tmp_path / "m.onnx"), "--sample", str(sample), "--report", str(report)]
    assert cli.main([*args, "--float64-reference", "off", "--no-latency"]) == 0
    data = json.loads(report.read_text())
    assert data["gate"]["float64_reference"] is False
    assert {o["tolerance_rule"] for c in data["cases"] for o in c["outputs"]} == {"scale-aware"}
    assert not any(c["name"] == "float32_noise" for c in data["checks"])
    assert cli.main([*args, "--noise-multiple", "-2"]) == 2


def test_float64_runs_on_base_and_axis_sweeps_and_batch_sweeps_reuse_the_sample_floor():
    from types import SimpleNamespace

    from onnxgate.pipeline.conversion import noise
    from onnxgate.pipeline.core.artifact import Case

    calls = []

    def run64(model, inputs):
        calls.append(inputs["x"].shape)
        return [inputs["x"].astype(np.float64) * 3.0]

    def case(name, x, **meta):
        return Case(name, {"x": x}, expected={"y": (x * np.float32(3.0)).astype(np.float32)}, meta=meta)

    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32) / 3
    cases = [
        case("batch_3", x),
        case("sweep_batch=16", np.tile(x, (6, 1))[:16], kind="sweep", axis="batch", size=16),
        case("sweep_seq=2", x[:, :2], kind="sweep", axis="seq", size=2),
        case("edge_large", x * 1e30, kind="edge", edge="large"),
    ]
    spec = SimpleNamespace(run_float64=run64, framework="test")
    info = noise.measure(spec, None, cases, ["y"])
    assert info["ran"] and info["cases"] == 2 and info["reused_for_batch_sweep"] == 1
    assert calls == [(3, 4), (3, 2)]  # not the batch sweep, not the edge case
    base = cases[0].meta["float64_noise"]["y"]
    assert base > 0 and cases[1].meta["float64_noise"] == {"y": base}
    assert "float64_noise" in cases[2].meta and "float64_noise" not in cases[3].meta

    def broken(model, inputs):
        if inputs["x"].shape[1] == 2:
            raise RuntimeError("expected scalar type Double but found Float")
        return run64(model, inputs)

    info = noise.measure(SimpleNamespace(run_float64=broken, framework="test"), None, cases, ["y"])
    assert not info["ran"] and "Double but found Float" in info["reason"]
    assert not any("float64_noise" in c.meta for c in cases)  # no half-measured run
    assert noise.measure(SimpleNamespace(run_float64=None, framework="test"), None, cases, ["y"])["ran"] is False


def test_python_api_takes_the_noise_keywords(tmp_path):
    """convert()/validate(): float64_reference and noise_multiple, as the CLI's flags."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)

    def rules(result):
        return {o.get("tolerance_rule") for c in result.report.to_dict()["cases"] for o in c["outputs"]}

    default = api.convert(model, sample=x, latency=False)
    assert default.passed and "float32-noise" in rules(default)
    eight = api.convert(model, sample=x, latency=False, noise_multiple=8).report.to_dict()
    assert {o.get("noise_multiple") for c in eight["cases"] for o in c["outputs"]} >= {8}
    off = api.convert(model, sample=x, latency=False, float64_reference=False)
    assert off.passed and rules(off) == {"scale-aware"}
    path = tmp_path / "m.onnx"
    default.save(path)
    assert rules(api.validate(model, path, sample=x, latency=False, noise_multiple=0)) == {"scale-aware"}
    with pytest.raises(UsageError, match="not both"):
        api.convert(model, sample=x, gate=GateConfig(), noise_multiple=8)


def test_keras_float64_run_clones_sequential_and_functional_models_only():
    """Keras: a Sequential or functional model is rebuilt with float64 layers
    and its weights cast (the user's model stays float32); a subclassed model
    cannot be rebuilt: not applicable, the scale-aware default judges it."""
    keras = pytest.importorskip("keras")
    from onnxgate.converters import tensorflow as tf_converter

    keras.utils.set_random_seed(0)
    sequential = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(5)(a), b])
    functional = keras.Model({"a": a, "b": b}, [keras.layers.Dense(2, name="y")(h), keras.layers.Dense(3, name="z")(h)])
    rng = np.random.default_rng(0)
    for model in (sequential, functional):
        inputs = {
            s.name: rng.standard_normal((3, *s.shape[1:])).astype(np.float32) for s in tf_converter.signature(model)
        }
        out32, out64 = tf_converter.run(model, inputs), tf_converter.run_float64(model, inputs)
        assert list(out64) == list(out32)
        for name in out32:
            assert out64[name].dtype == np.float64
            floor = noise_floor(out32[name], out64[name])
            assert floor is not None and 0 <= floor < 1e-5 * (np.abs(out64[name]).max() + 1e-6)
        assert all(w.dtype == np.float32 for w in model.get_weights())

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Subclassed()
    sub(np.zeros((1, 4), np.float32))
    assert tf_converter.run_float64(sub, {"x": np.zeros((2, 4), np.float32)}) is None
