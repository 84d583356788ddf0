"""Expected outputs for a ready-made ONNX model without golden data:
``onnx.reference.ReferenceEvaluator``, an implementation of the ONNX
specification independent of onnxruntime.

The verdict is ``unverified`` only where the evaluator cannot answer: an
operator it does not implement (ZipMap, for one), or a run longer than
``--reference-timeout`` seconds in all (it is plain numpy and can be slow on
large convolutions).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from onnxgate.plugins.helpers import one_line

#: Seconds the evaluator may take over all cases of one model.
DEFAULT_TIMEOUT = 120.0


class ReferenceUnavailable(Exception):
    """The evaluator lacks an operator or ran out of time."""


def name() -> str:
    import onnx

    return f"onnx.reference.ReferenceEvaluator (onnx {onnx.__version__})"


def make_runner(
    onnx_model, timeout: float | None = DEFAULT_TIMEOUT
) -> Callable[[Any, Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A ``run(model, inputs)`` for stage 1 computing outputs with the evaluator.

    Raises ReferenceUnavailable at creation when an operator is missing.
    """
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(onnx_model, new_ops=corrected_ops(onnx_model) or None)
    except Exception as exc:  # NotImplementedError / RuntimeError for unknown ops
        raise ReferenceUnavailable(f"onnx.reference cannot run this model: {one_line(exc)}") from exc
    outputs = [o.name for o in onnx_model.graph.output]
    deadline = time.monotonic() + timeout if timeout else None

    def run(_model, inputs):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ReferenceUnavailable(f"onnx.reference took longer than --reference-timeout {timeout:g} s")
        try:
            with _time_limit(left, timeout):
                values = evaluator.run(None, dict(inputs))
        except ReferenceUnavailable:
            raise
        except (NotImplementedError, KeyError) as exc:
            raise ReferenceUnavailable(
                f"onnx.reference cannot run this model: {one_line(exc, with_type=True)}"
            ) from exc
        return dict(zip(outputs, [np.asarray(v) if not isinstance(v, list) else v for v in values]))

    return run


def corrected_ops(onnx_model) -> list:
    """Operator versions onnx.reference gets wrong, replaced for this model.

    It fills attribute defaults from the newest schema, so BatchNormalization
    opset 9-13 sees ``momentum`` set and computes batch statistics (inference
    only, by the spec), and Softmax/LogSoftmax/Hardmax before opset 13 take
    the newest ``axis=-1`` without flattening to 2-D at ``axis`` (default 1).
    Found on the onnx wheel's light_densenet121 and light_squeezenet, whose
    shipped outputs agree with onnxruntime.
    """
    from onnx.reference.op_run import OpRun

    opset = next((int(i.version) for i in onnx_model.opset_import if i.domain in ("", "ai.onnx")), 0)
    ops = []
    if 7 <= opset < 14:

        class BatchNormalization(OpRun):
            op_domain = ""

            def _run(self, x, scale, bias, mean, var, **_defaults):
                shape = (-1,) + (1,) * (x.ndim - 2)
                eps = _declared(self, "epsilon", 1e-5)
                y = scale.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
                return ((y + bias.reshape(shape)).astype(x.dtype),)

        ops.append(BatchNormalization)
    if opset < 13:
        ops += [
            _coerced_2d(name, fn)
            for name, fn in (
                ("Softmax", _softmax),
                ("LogSoftmax", lambda z: np.log(_softmax(z))),
                ("Hardmax", _hardmax),
            )
        ]
    return ops


def _declared(op, name, default):
    """The attribute as the node declares it, else this opset's default (the
    evaluator passes the newest schema's default instead)."""
    from onnx import helper

    for attr in op.onnx_node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _hardmax(z):
    out = np.zeros_like(z)
    out[np.arange(z.shape[0]), z.argmax(axis=1)] = 1
    return out


def _coerced_2d(name, fn):
    from onnx.reference.op_run import OpRun

    def _run(self, x, **_defaults):
        axis = _declared(self, "axis", 1)
        axis = axis + x.ndim if axis < 0 else axis
        flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        return (fn(flat).reshape(x.shape).astype(x.dtype),)

    return type(name, (OpRun,), {"op_domain": "", "_run": _run})


class _time_limit:
    """SIGALRM-based limit (main thread only; elsewhere the run is unlimited)."""

    def __init__(self, seconds: float | None, budget: float | None):
        self.seconds, self.budget = seconds, budget
        self.armed = (
            bool(seconds) and threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
        )

    def _expired(self, *_):
        raise ReferenceUnavailable(f"onnx.reference took longer than --reference-timeout {self.budget:g} s")

    def __enter__(self):
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 0.001))

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
