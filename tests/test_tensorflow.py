"""TensorFlow/Keras converter: contract kit, every source kind, the
unsupported-op gate, the ops onnxgate composes, and bad input."""

import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
import keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import tensorflow_fixtures as fx

from onnxgate.pipeline import convert
from onnxgate.plugins.errors import ConversionError, UntrustedSourceError, UsageError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The main job's fixtures, built once: {name: entry}."""
    out = tmp_path_factory.mktemp("tf-fixtures")
    return {e["name"]: e for e in fx.build(out)}


class TestTensorflowContract(ConverterContract):
    """Source: a Sequential saved as .keras (loaded in Keras' safe mode)."""

    converter = "tensorflow"

    def make_source(self, tmp_path):
        path = tmp_path / "mlp.keras"
        fx.sequential().save(path)
        return path


class TestTensorflowFunctionalContract(ConverterContract):
    """Source: an in-memory two-input functional model."""

    converter = "tensorflow"
    corrupt_suffixes = (".tflite",)  # the class above covers every suffix; one keeps this cheap

    def make_source(self, tmp_path):
        return fx.functional()


# --- every source kind ----------------------------------------------------------


@pytest.mark.parametrize("name", ["tf-sequential", "tf-functional", "tf-functional-tflite", "tf-subclassed"])
def test_fixture_converts_with_dynamic_batch(built, name):
    result = convert(built[name]["source"])  # detected from the file, no --framework
    assert result.passed, result.failures
    assert result.report.converter.name == "tensorflow"
    assert all(isinstance(i.shape[0], str) for i in result.report.onnx.inputs)
    batches = {shape[0] for c in result.report.cases for shape in c.input_shapes.values()}
    assert {1, 4} <= batches


def test_savedmodel_keeps_signature_names(built):
    result = convert(built["tf-functional"]["source"])
    assert sorted(i.name for i in result.report.onnx.inputs) == ["extra", "image"]
    # one batch axis name across inputs, so shape sweeps move both together
    assert {i.shape[0] for i in result.report.onnx.inputs} == {"batch"}
    assert {5, 16} <= {c.input_shapes["image"][0] for c in result.report.cases if c.passed}
    assert sorted(o.name for o in result.model.graph.output) == ["output_0", "output_1"]


def test_sequential_without_input_layer_built_by_call():
    model = keras.Sequential([keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2)])
    model(np.zeros((3, 7), np.float32))  # Keras records a batch of 3; the ONNX batch stays dynamic
    result = convert(model)
    assert result.passed, result.failures
    assert result.report.converter.exporter == "tf2onnx from_function"


def test_subclassed_in_memory_composes_log1p_expm1():
    result = convert(fx.subclassed())
    assert result.passed, result.failures
    notes = " ".join(result.report.notes)
    assert "Log1p" in notes and "Expm1" in notes
    assert {n.op_type for n in result.model.graph.node} >= {"Where", "Atanh", "Tanh"}


def test_tf_function_with_signature():
    @tf.function(
        input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"), tf.TensorSpec([None], tf.int32, name="k")]
    )
    def fn(x, k):
        return {"scaled": x * tf.cast(k, tf.float32)[:, None], "total": tf.reduce_sum(x, axis=1)}

    result = convert(fn)
    assert result.passed, result.failures
    assert sorted(o.name for o in result.model.graph.output) == ["scaled", "total"]
    assert {i.name: i.dtype for i in result.report.onnx.inputs} == {"x": "float32", "k": "int32"}


def test_concrete_function():
    @tf.function
    def fn(x):
        return tf.nn.relu(x) * 2.0

    result = convert(fn.get_concrete_function(tf.TensorSpec([None, 5], tf.float32, name="x")))
    assert result.passed, result.failures


def test_tf_function_without_signature_needs_a_sample(tmp_path):
    @tf.function
    def fn(x):
        return tf.tanh(x)

    with pytest.raises(UsageError, match="--sample"):
        convert(fn)
    sample = tmp_path / "x.npy"
    np.save(sample, np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3))
    result = convert(fn, sample=sample)
    assert result.passed, result.failures


@pytest.mark.parametrize("name", ["tf-sequential", "tf-functional-tflite"])
def test_static_batch(built, name):
    result = convert(built[name]["source"], dynamic_batch=False)
    assert result.passed, result.failures
    assert all(i.shape[0] == 4 for i in result.report.onnx.inputs)


# --- detection ------------------------------------------------------------------


def test_objects_and_folders_are_detected(built, tmp_path):
    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    specs = Registry().converters()

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def fn(x):
        return x

    for obj in (fx.sequential(), fx.functional(), fx.subclassed(), fn, fn.get_concrete_function()):
        assert detect.for_object(obj, specs).name == "tensorflow"
    assert detect.for_path(Path(built["tf-functional"]["source"]), specs).name == "tensorflow"
    golden = tmp_path / "golden"  # an ONNX test-data folder is not a SavedModel
    (golden / "test_data_set_0").mkdir(parents=True)
    (golden / "test_data_set_0" / "input_0.pb").write_bytes(b"\x08\x01")
    with pytest.raises(detect.DetectionError):
        detect.for_path(golden, [s for s in specs if s.name == "tensorflow"])


# --- ops tf2onnx cannot convert -------------------------------------------------------


class LogGamma(keras.layers.Layer):
    def call(self, x):
        return tf.math.lgamma(x)


def _lgamma_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="x")
    return keras.Model(inp, keras.layers.Dense(2)(LogGamma()(keras.ops.abs(inp) + 1.0)))


def test_unsupported_op_is_a_conversion_failure_naming_it():
    with pytest.raises(ConversionError, match=r"cannot convert these TensorFlow ops: Lgamma \(1 node\)") as info:
        convert(_lgamma_model())
    assert "\n" not in str(info.value)


def test_unsupported_op_cli_exit_3_and_no_output(tmp_path):
    folder = tmp_path / "lgamma"
    _lgamma_model().export(str(folder), verbose=False)
    out = tmp_path / "lgamma.onnx"
    proc = run_cli("convert", str(folder), "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert_clean_error(proc, 3)
    assert "Lgamma" in proc.stderr
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_compositions_are_precise_near_zero_in_the_tails_and_at_infinity():
    """The gate checks within tolerance; this checks the compositions are
    right where naive log(1+x), exp(x)-1, 1-erf(x) are not."""
    import onnxruntime as ort

    from onnxgate.converters import tensorflow as tfconv
    from onnxgate.plugins import ConvertOptions

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def fn(x):
        return {"log1p": tf.math.log1p(x), "expm1": tf.math.expm1(x), "erfc": tf.math.erfc(x)}

    x = np.array([1e-7, -3e-6, 2e-4, -0.3, 0.49, 0.5, 1.7, 3.0, -0.99, -2.5, 6.0, 40.0, np.inf, -np.inf], np.float32)
    conversion = tfconv.convert(fn, {"x": x}, ConvertOptions())
    sess = ort.InferenceSession(conversion.model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    with np.errstate(invalid="ignore", over="ignore"):
        x64 = x.astype(np.float64)
        want = {"log1p": np.log1p(x64), "expm1": np.expm1(x64), "erfc": np.array([math.erfc(v) for v in x64])}
    for name in want:  # relative error only: erfc(6) = 2e-17 must not come out as 0
        np.testing.assert_allclose(got[name], want[name].astype(np.float32), rtol=2e-6, atol=0, err_msg=name)


# --- bad input ---------------------------------------------------------------------


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_keras_file_cli(built, tmp_path):
    bad = tmp_path / "cut.keras"
    shutil.copy(built["tf-sequential"]["source"], bad)
    _cut(bad)
    out = tmp_path / "cut.onnx"
    proc = run_cli("convert", str(bad), "-o", str(out), "--framework", "tensorflow")
    assert_clean_error(proc, 2)
    assert "not a Keras archive" in proc.stderr
    assert not out.exists()


def test_truncated_saved_model_pb_cli(built, tmp_path):
    bad = tmp_path / "cut_savedmodel"
    shutil.copytree(built["tf-functional"]["source"], bad)
    _cut(bad / "saved_model.pb")
    out = tmp_path / "cut.onnx"
    proc = run_cli("convert", str(bad), "-o", str(out))
    assert_clean_error(proc, 2)
    assert "saved_model.pb" in proc.stderr
    assert not out.exists()


def test_saved_model_without_variables(built, tmp_path):
    bad = tmp_path / "novars"
    shutil.copytree(built["tf-functional"]["source"], bad)
    shutil.rmtree(bad / "variables")
    with pytest.raises(UsageError, match="cannot load") as info:
        convert(bad)
    assert "variables" in str(info.value)


def test_random_bytes_tflite(tmp_path):
    bad = tmp_path / "noise.tflite"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(UsageError, match="not a valid TensorFlow/Keras file"):
        convert(bad)
    with pytest.raises(UsageError, match="not a TFLite flatbuffer"):
        convert(bad, framework="tensorflow")


def test_lambda_layer_needs_trust(tmp_path):
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(UntrustedSourceError, match="--trust-source"):
        convert(path)
    result = convert(path, trust_source=True)
    assert result.passed, result.failures


def test_opset_above_tf2onnx_range_is_usage_error():
    with pytest.raises(UsageError, match="opsets up to 18"):
        convert(fx.sequential(), opset=21)


def test_plugins_lists_what_is_missing_without_tensorflow(monkeypatch):
    """Without TF installed, `onnxgate plugins` names the distributions to install."""
    from importlib import metadata

    from onnxgate.pipeline.cli import plugins as cli_plugins

    real = metadata.version

    def version(name):
        if name in ("tensorflow", "tensorflow-cpu", "tf2onnx"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    (row,) = [r for r in cli_plugins.rows() if r["name"] == "tensorflow"]
    assert not row["usable"] and row["missing"] == ["tensorflow", "tf2onnx"]


def test_diagnosis_compares_keras_layers_of_a_two_input_model():
    from onnxgate.pipeline.gate import diagnose
    from onnxgate.plugins.manager import Registry

    spec = Registry().converter("tensorflow")
    model = fx.functional()
    result = convert(model, latency=False)
    inputs = dict(reversed(list(result.artifact.cases[0].inputs.items())))  # not in model.inputs order
    found = diagnose.source_vs_onnx(spec, model, result.model, inputs)
    assert found["status"] == "agree", found
    assert found["compared"] >= 4
