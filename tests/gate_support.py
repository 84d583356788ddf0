"""Helpers for the gate tests: a tiny converter plugin for hand-built models.

A ``HandModel`` pairs a numpy implementation (the "original") with the ONNX
graph a converter produced for it, so a test can hand the gate a model with
exactly the defect it is about (a frozen axis, a hard-coded length, an
optimiser-sensitive pattern) and still run the real pipeline: stage 1 runs
the numpy original, stage 2 runs onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl
from onnxgate.plugins.manager import Registry, get_plugin_manager


class HandModel:
    def __init__(self, fn: Callable, onnx_model, signature: Sequence[InputSpec] | None):
        self.fn, self.onnx_model, self.signature = fn, onnx_model, signature


class _Plugin:
    __name__ = "gate-test-plugin"

    @hookimpl
    def onnxgate_converters(self):
        yield ConverterSpec(
            name="hand",
            framework="numpy",
            convert=lambda model, example, options: Conversion(model.onnx_model, exporter="hand-built"),
            run=lambda model, inputs: model.fn(**inputs),
            inputs=lambda model: model.signature,
            tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        )


def registry() -> Registry:
    return Registry(get_plugin_manager([_Plugin()], load_entry_points=False))


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def seq_mean_model(seq_dim, hard_coded_length: int | None = None, min_seq: int = 0):
    """y = mean(x, axis=1) @ W for x of shape (batch, seq, 4).

    ``seq_dim``: the ONNX dim of the sequence axis ("seq" = dynamic, an int =
    frozen). ``hard_coded_length``: compute the mean as sum / that constant
    (a converter bug that only shows at other lengths). ``min_seq``: the
    original rejects shorter sequences.
    """
    W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    def fn(x):
        if x.shape[1] < min_seq:
            raise ValueError(f"sequence shorter than {min_seq}")
        return [x.astype(np.float64).mean(axis=1) @ W.astype(np.float64)]

    if hard_coded_length:
        nodes = [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
            helper.make_node("Div", ["s", "n"], ["m"]),
        ]
        inits = [("axes", np.array([1], np.int64)), ("n", np.array(hard_coded_length, np.float32))]
    else:
        nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0)]
        inits = []
    nodes.append(helper.make_node("MatMul", ["m", "W"], ["y"]))
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq_dim, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        inits + [("W", W)],
    )
    return HandModel(fn, model, [InputSpec("x", (None, "seq", 4))])


def conv_bn_model(offset: float = 1e4):
    """Conv then BatchNormalization whose mean cancels the conv's large bias.

    onnxruntime's optimiser folds the BN into the conv (W' = W*k, b' = (b-mean)*k
    = 0), so the optimised graph never adds the large bias. The unoptimised
    graph computes conv + 1e4 in float32 (ulp ~1e-3), subtracts the mean and
    scales by k = 1000: its rounding error becomes ~0.5. The two sessions
    disagree far beyond tolerance; the optimised one matches the float64
    original.
    """
    rng = np.random.default_rng(0)
    C = 4
    W = rng.standard_normal((C, 3, 3, 3)).astype(np.float32)
    b = np.full(C, offset, np.float32)
    mean = np.full(C, offset, np.float32)
    var = np.full(C, 1e-6, np.float32)
    eps = 1e-12

    def fn(x):
        x64 = x.astype(np.float64)
        padded = np.pad(x64, ((0, 0), (0, 0), (1, 1), (1, 1)))
        n, _, h, w = x.shape
        out = np.zeros((n, C, h, w))
        for i in range(3):
            for j in range(3):
                patch = padded[:, :, i : i + h, j : j + w]
                out += np.einsum("nchw,oc->nohw", patch, W[:, :, i, j].astype(np.float64))
        conv = out + b[None, :, None, None].astype(np.float64)  # exact: the bias cancels the mean
        y = (conv - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None].astype(np.float64) + eps)
        return [y]

    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], epsilon=eps),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", C, 8, 8])],
        [("W", W), ("b", b), ("s", np.ones(C, np.float32)), ("bb", np.zeros(C, np.float32)), ("m", mean), ("v", var)],
    )
    sig = [InputSpec("x", (None, 3, 8, 8))]
    return HandModel(fn, model, sig)
