"""The original's float32 noise floor: the original run once more in float64.

A deep network's float32 result is itself off from the exact one by rounding;
an ONNX model computing the same in float32 differs from it by as much. The
gate holds ONNX Runtime to a multiple of that noise (``gate.compare.Noise``),
so this measures it per case and output: ``max|float32 - float64|``, stored
in ``case.meta["float64_noise"]``. Edge-value cases are left out (1e30 and
inf overflow differently in float64: not rounding noise).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxgate.plugins.helpers import one_line


def measure(spec, model, cases: Sequence[Any], output_names: Sequence[str]) -> dict[str, Any]:
    """Run ``spec.run_float64`` on every case that has the original's outputs;
    returns what the report says about it (ran, seconds, why not)."""
    if spec.run_float64 is None:
        return {"ran": False, "reason": f"the {spec.framework} converter has no float64 run"}
    t0 = time.perf_counter()
    measured = 0
    for case in cases:
        meta = case.meta or {}
        if case.expected is None or meta.get("skipped") or meta.get("kind") == "edge":
            continue
        try:
            produced = spec.run_float64(model, case.inputs)
        except Exception as exc:  # a model that cannot run in float64 (dtype-fixed graph): no floor, say why
            return {"ran": False, "reason": f"the float64 run failed: {one_line(exc, with_type=True)}"}
        if produced is None:
            return {"ran": False, "reason": "not applicable to this model's inputs"}
        floors = _floors(case.expected, produced, output_names)
        if floors:
            case.meta = {**meta, "float64_noise": floors}
            measured += 1
    return {"ran": True, "cases": measured, "seconds": round(time.perf_counter() - t0, 6)}


def noise_floor(float32: Any, float64: Any) -> float | None:
    """max|float32 - float64| of one output, or None when it says nothing about
    float32 rounding: not a float32 run beside a float64 one (an original that
    computes in float64 anyway has no float32 noise to measure), shapes apart,
    or a non-finite value on either side."""
    a, b = np.asarray(float32), np.asarray(float64)
    if a.dtype.kind != "f" or a.dtype.itemsize > 4 or b.dtype != np.float64 or a.size != b.size or not a.size:
        return None
    a64, b = a.astype(np.float64).reshape(-1), b.reshape(-1)
    if not (np.isfinite(a64).all() and np.isfinite(b).all()):
        return None
    return float(np.abs(a64 - b).max())


def _floors(expected: Mapping[str, Any], produced: Any, output_names: Sequence[str]) -> dict[str, float]:
    by_name = (
        {n: produced.get(n) for n in output_names}
        if isinstance(produced, Mapping)
        else dict(zip(output_names, list(produced)))
    )
    floors = {}
    for name, value in by_name.items():
        if name in expected and value is not None and not isinstance(expected[name], list):
            floor = noise_floor(np.asarray(expected[name]), np.asarray(value))
            if floor is not None:
                floors[name] = floor
    return floors
