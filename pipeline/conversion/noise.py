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
    """Run ``spec.run_float64`` on the cases that have the original's outputs;
    returns what the report says about it (ran, cases, seconds, why not).

    A batch-sweep case holds rows of the sample, which the base cases already
    measured: it takes their largest floor instead of a float64 run of its own
    (float64 kernels are slow: grouped convolutions run 30x slower than in float32)."""
    if spec.run_float64 is None:
        return {"ran": False, "reason": f"the {spec.framework} converter has no float64 run"}
    t0 = time.perf_counter()
    todo = [c for c in cases if c.expected is not None and not (c.meta or {}).get("skipped")]
    todo = [c for c in todo if (c.meta or {}).get("kind") != "edge"]
    batch_sweeps = [c for c in todo if (c.meta or {}).get("kind") == "sweep" and c.meta.get("axis") == "batch"]
    measured = 0
    base_floors: dict[str, float] = {}  # the sample's floors, for the batch sweep
    for case in [c for c in todo if c not in batch_sweeps]:
        try:
            produced = spec.run_float64(model, case.inputs)
        except Exception as exc:  # a model that cannot run in float64 (dtype-fixed graph): no floor, say why
            _forget(cases)
            return {"ran": False, "reason": f"the float64 run failed: {one_line(exc, with_type=True)}"}
        if produced is None:
            _forget(cases)
            return {
                "ran": False,
                "reason": "not applicable to this model (its converter cannot rebuild it in float64, or its inputs are text)",
            }
        floors = _floors(case.expected, produced, output_names)
        if floors:
            case.meta = {**(case.meta or {}), "float64_noise": floors}
            measured += 1
            if (case.meta or {}).get("kind", "base") == "base":
                for name, floor in floors.items():
                    base_floors[name] = max(base_floors.get(name, 0.0), floor)
    for case in batch_sweeps:
        if base_floors:
            case.meta = {**case.meta, "float64_noise": dict(base_floors)}
    seconds = round(time.perf_counter() - t0, 6)
    return {"ran": True, "cases": measured, "reused_for_batch_sweep": len(batch_sweeps), "seconds": seconds}


def _forget(cases) -> None:
    for case in cases:
        if case.meta and "float64_noise" in case.meta:
            case.meta = {k: v for k, v in case.meta.items() if k != "float64_noise"}


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
