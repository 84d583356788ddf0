"""onnxruntime sessions: loading a model and running one case."""
from __future__ import annotations

import re
from typing import Any, Dict, List

import numpy as np

from onnxgate.plugins.errors import ConversionError
from onnxgate.plugins.helpers import one_line


def load_session(model_bytes: bytes, optimized: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
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
        return ("; onnxruntime supports opset 7 and later only: pass --upgrade-opset 7 to move the model "
                "with onnx.version_converter (validated against the original's outputs)")
    return ""


def frozen_batch_inputs(model) -> List[str]:
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


def run_case(session, inputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, inputs)
    return dict(zip(names, values))
