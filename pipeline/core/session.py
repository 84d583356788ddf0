"""onnxruntime sessions: loading a model and running one case.

``Runtime`` is one model in onnxruntime for a whole run: one session per
optimisation level, shared by validation, latency, error histograms and the
validation record's smoke sample, plus the outputs each case gave, so no
stage loads the model again or re-runs a case to get them.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from onnxgate.plugins.errors import ConversionError
from onnxgate.plugins.helpers import one_line


def load_session(model_bytes: bytes | str, optimized: bool = True):  # str: a path (external data)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = os.environ.get("ONNXGATE_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # a batch worker's share of the cores
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # spinning threads of parallel workers steal each other's cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the ONNX model: {one_line(exc)}{_old_opset_hint(exc)}") from exc


_OLD_KERNEL = re.compile(r"Could not find an implementation for \w+\((\d+)\)")


def _old_opset_hint(exc: BaseException) -> str:
    """onnxruntime has no kernels for operator versions before opset 7."""
    found = _OLD_KERNEL.search(str(exc))
    if found and int(found.group(1)) < 7:
        return (
            "; onnxruntime supports opset 7 and later only: pass --upgrade-opset 7 to move the model "
            "with onnx.version_converter (validated against the original's outputs)"
        )
    return ""


class Runtime:
    def __init__(self, model_bytes: bytes | str):  # str: a path (external data)
        self.model_bytes = model_bytes
        self._sessions: dict[bool, Any] = {}
        #: case name -> the optimised session's outputs on it
        self.outputs: dict[str, dict[str, Any]] = {}

    def session(self, optimized: bool = True):
        """The session for this optimisation level, loaded on first use."""
        if optimized not in self._sessions:
            self._sessions[optimized] = load_session(self.model_bytes, optimized=optimized)
        return self._sessions[optimized]

    def run(self, case) -> dict[str, Any]:
        """The optimised session's outputs on ``case``, computed once."""
        if case.name not in self.outputs:
            self.outputs[case.name] = run_case(self.session(), case.inputs)
        return self.outputs[case.name]


def frozen_batch_inputs(model) -> list[str]:
    """Inputs whose first dimension is a fixed number in the ONNX graph."""
    initializers = {i.name for i in model.graph.initializer}
    frozen = []
    for inp in model.graph.input:
        if inp.name in initializers or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            frozen.append(f"{inp.name} (batch fixed to {dims[0].dim_value})")
    return frozen


def run_case(session, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, inputs)
    return dict(zip(names, values))
