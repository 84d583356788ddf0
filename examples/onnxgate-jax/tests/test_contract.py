"""The converter contract onnxgate's own converters pass, run on this plugin
as its author would: an NNX module declared through --option inputs, and a
JAX function with bound params given by module:attr with a sample."""

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli


class TestNNXModule(ConverterContract):
    converter = "jax"
    convert_kwargs = {"options": {"inputs": "x:B,4"}}

    def make_source(self, tmp_path):
        from flax import nnx
        from onnxgate_jax.examples import MLP

        return MLP((4, 8, 8, 2), rngs=nnx.Rngs(3))


class TestBoundFunction(ConverterContract):
    converter = "jax"

    def make_source(self, tmp_path):
        return "onnxgate_jax.examples:affine"

    def make_sample(self, tmp_path):
        path = tmp_path / "x.npy"
        np.save(path, np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
        return path


@pytest.mark.parametrize(
    "value, message",
    [
        ("x", "'x' is not NAME:DIMS[:DTYPE]"),
        ("x:B,4:float32:extra", "is not NAME:DIMS[:DTYPE]"),
    ],
)
def test_bad_inputs_option_is_a_usage_error(tmp_path, value, message):
    out = tmp_path / "m.onnx"
    proc = run_cli("convert", "onnxgate_jax.examples:mlp", "--option", f"inputs={value}", "-o", str(out))
    assert_clean_error(proc, 2)
    assert message in proc.stderr and not out.exists()


def test_a_function_needs_the_framework_named(tmp_path):
    proc = run_cli("convert", "onnxgate_jax.examples:two_inputs", "-o", str(tmp_path / "m.onnx"))
    assert_clean_error(proc, 2)
    assert "no converter recognises objects of type builtins.function; pass --framework" in proc.stderr
