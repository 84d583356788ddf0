"""Stage 2: the gate. Needs only onnx, onnxruntime and numpy.

Checks the ONNX model, loads it in onnxruntime, runs every case and compares
each output with the original model's. The result is a report dict whose
``passed`` is the verdict.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..plugins.spec import Tolerance
from .compare import compare_output
from .errors import ConversionError
from .stage_convert import Artifact


def check_model(model) -> List[Dict[str, Any]]:
    """onnx.checker and strict shape inference; a failure is a conversion failure."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"the ONNX model is invalid (onnx.checker): {_first_line(exc)}") from exc
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise ConversionError(f"ONNX shape inference fails on the model: {_first_line(exc)}") from exc
    return [{"name": "onnx_checker", "passed": True, "message": "onnx.checker and strict shape inference passed"}]


def load_session(model_bytes: bytes, optimized: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the ONNX model: {_first_line(exc)}") from exc


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


def validate(artifact: Artifact, tolerance: Optional[Tolerance] = None, per_output: Optional[Dict[str, Tolerance]] = None) -> Dict[str, Any]:
    """Run the gate on an artifact; returns the report's validation part."""
    tol = tolerance or artifact.tolerance
    per_output = per_output or {}
    t0 = time.perf_counter()
    checks = check_model(artifact.model)
    session = load_session(artifact.model.SerializeToString())
    checks.append({"name": "onnxruntime_load", "passed": True, "message": "onnxruntime loaded the model"})

    if artifact.dynamic_batch:
        frozen = frozen_batch_inputs(artifact.model)
        checks.append({
            "name": "dynamic_batch",
            "passed": not frozen,
            "message": (
                "batch dimension is dynamic" if not frozen else
                "a dynamic batch was requested but the ONNX model freezes it: " + ", ".join(frozen)
            ),
        })

    cases = []
    for case in artifact.cases:
        cases.append(_validate_case(session, case, tol, per_output))

    failures = [f"{c['name']}: {c['error']}" for c in cases if c.get("error")]
    failures += [
        f"{c['name']}/{o['name']}: {o['reason']}" for c in cases for o in c["outputs"] if not o["passed"]
    ]
    failures = [f"check {c['name']}: {c['message']}" for c in checks if not c["passed"]] + failures
    return {
        "passed": not failures,
        "failures": failures,
        "tolerance": {"rtol": tol.rtol, "atol": tol.atol},
        "checks": checks,
        "cases": cases,
        "validate_s": time.perf_counter() - t0,
    }


def _validate_case(session, case, tol, per_output) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "name": case.name,
        "input_shapes": {k: list(np.shape(v)) for k, v in case.inputs.items()},
        "outputs": [],
        "passed": True,
    }
    try:
        actual = run_case(session, case.inputs)
    except Exception as exc:
        entry.update(passed=False, error=f"onnxruntime failed to run: {_first_line(exc)}")
        return entry
    if case.expected is None:  # nothing to compare with: only running was checked
        entry["unverified"] = True
        return entry
    for name, expected in case.expected.items():
        result = compare_output(name, actual[name], expected, per_output.get(name, tol))
        entry["outputs"].append(result)
        entry["passed"] = entry["passed"] and result["passed"]
    return entry


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:500] if lines else type(exc).__name__
