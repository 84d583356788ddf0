"""Measurements beside the gate (they never decide the verdict).

* Latency: p50/p95 per batch size of the original model (stage 1, where it
  runs) and of onnxruntime (stage 2), after a warm-up, with a bounded number
  of runs.
* Error histograms: per output, counts of log10 |onnxruntime - original| on
  fixed bins, so the HTML report can draw the distribution. Computed in this
  module's own onnxruntime pass over every case; the gate's comparison is
  left untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxgate.pipeline.core.arrays import abs_diff, as_array

WARMUP = 2
MAX_RUNS = 20
#: Seconds of timed runs per batch size and runtime; at least MIN_RUNS run.
BUDGET_S = 0.5
MIN_RUNS = 3
#: log10 |error| bin edges: 1e-12 .. 1e2 in half decades. Exact matches and
#: errors below 1e-12 go to "below", larger ones to "above".
HIST_EDGES = [round(-12 + 0.5 * i, 1) for i in range(29)]


def time_runs(
    fn: Callable[[], Any], warmup: int = WARMUP, max_runs: int = MAX_RUNS, budget_s: float = BUDGET_S
) -> dict[str, Any]:
    """p50/p95 in milliseconds of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < max_runs and (len(samples) < MIN_RUNS or spent < budget_s):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        samples.append(took * 1000.0)
        spent += took
    ms = np.asarray(samples)
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "runs": len(samples)}


def batch_of(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return int(np.shape(first)[0]) if np.ndim(first) else 1


def by_batch(cases) -> dict[int, Any]:
    """The first case of each batch size (later ones are edge values or sweeps)."""
    chosen: dict[int, Any] = {}
    for case in cases:
        chosen.setdefault(batch_of(case.inputs), case)
    return dict(sorted(chosen.items()))


def measure_original(run: Callable, model: Any, cases) -> dict[int, dict[str, Any]]:
    """Stage 1: the original model's latency per batch size."""
    out = {}
    for batch, case in by_batch(cases).items():
        try:
            out[batch] = time_runs(lambda: run(model, case.inputs))
        except Exception:  # the gate reports failures of the original; timing just stops
            continue
    return out


def measure_onnxruntime(session, cases) -> dict[int, dict[str, Any]]:
    out = {}
    for batch, case in by_batch(cases).items():
        try:
            out[batch] = time_runs(lambda: session.run(None, case.inputs))
        except Exception:
            continue
    return out


def latency_section(original: dict[int, dict[str, Any]], runtime: dict[int, dict[str, Any]], cases) -> dict[str, Any]:
    names = {b: c.name for b, c in by_batch(cases).items()}
    batches = []
    for batch in sorted(set(original) | set(runtime)):
        batches.append(
            {
                "batch": batch,
                "case": names.get(batch, ""),
                "original": original.get(batch),
                "onnxruntime": runtime.get(batch),
            }
        )
    return {"warmup": WARMUP, "max_runs": MAX_RUNS, "budget_s": BUDGET_S, "batches": batches}


def error_histogram(actual: Any, expected: Any) -> dict[str, Any] | None:
    """Counts of log10 |actual - expected| for float outputs; None otherwise."""
    try:
        a, e = as_array(actual), as_array(expected)
    except Exception:
        return None
    if a.dtype.kind not in "fc" and e.dtype.kind not in "fc":
        return None
    if a.dtype.kind not in "fciub" or e.dtype.kind not in "fciub" or a.size != e.size or a.size == 0:
        return None
    diff = abs_diff(a.reshape(e.shape), e)
    finite = np.isfinite(diff)
    with np.errstate(divide="ignore"):
        logs = np.log10(diff[finite])
    edges = np.asarray(HIST_EDGES)
    counts, _ = np.histogram(np.clip(logs, edges[0], edges[-1]), bins=edges)
    below = int((logs < edges[0]).sum())
    above = int((logs > edges[-1]).sum())
    counts[0] -= below  # np.clip moved these into the end bins
    counts[-1] -= above
    return {
        "edges": HIST_EDGES,
        "counts": [int(c) for c in counts],
        "below": below,
        "above": above,
        "nonfinite": int((~finite).sum()),
        "total": int(a.size),
    }


def merge_histograms(hists: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "edges": HIST_EDGES,
        "counts": [0] * (len(HIST_EDGES) - 1),
        "below": 0,
        "above": 0,
        "nonfinite": 0,
        "total": 0,
        "cases": 0,
    }
    for h in hists:
        merged["counts"] = [x + y for x, y in zip(merged["counts"], h["counts"])]
        for key in ("below", "above", "nonfinite", "total"):
            merged[key] += h[key]
        merged["cases"] += 1
    return merged


def runtime_pass(artifact, runtime, measure: bool = True) -> dict[str, Any]:
    """Stage 2 extras: onnxruntime latency per batch size and error
    histograms per output, from the outputs validation already computed
    (``core.session.Runtime``); returns report sections."""
    per_output: dict[str, list[dict[str, Any]]] = {}
    for case in artifact.cases:
        values = runtime.outputs.get(case.name)
        if not case.expected or values is None:  # nothing to compare, or it did not run
            continue
        for name, expected in case.expected.items():
            hist = error_histogram(values.get(name), expected) if name in values else None
            if hist is not None:
                per_output.setdefault(name, []).append(hist)
    sections: dict[str, Any] = {"error_histograms": {n: merge_histograms(h) for n, h in per_output.items()}}
    if measure:
        timed = measure_onnxruntime(runtime.session(), artifact.cases)
        sections["latency"] = latency_section(getattr(artifact, "latency", {}) or {}, timed, artifact.cases)
    return sections
