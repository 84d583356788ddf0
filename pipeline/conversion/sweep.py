"""Shape sweep: cases at several sizes for every dynamic axis, not only the batch.

Dynamic axes come from the ONNX model (``dim_param`` or unknown dims) and the
source's signature (``InputSpec`` dims that are None or a name). Axes that
share a name (``batch`` on ``input_ids`` and ``attention_mask``) move
together. Inputs at a new size are derived from the base case, so they stay
realistic: rows are drawn with the run's seed, other axes are sliced or
tiled (order matters along sequences).

An axis dynamic in the source but fixed in the ONNX model is a failing
``dynamic_axes`` check (the batch axis is the ``dynamic_batch`` check's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onnxgate.pipeline.conversion.inputs import edge_cases
from onnxgate.pipeline.core.artifact import Case
from onnxgate.plugins.helpers import one_line

#: 1, a small even, an odd and a larger size.
SIZES = (1, 2, 5, 16)
#: A swept case holding more input elements than this is not built.
MAX_ELEMENTS = 2_000_000

Member = tuple[str, int]  # (input name, axis)


def onnx_dims(model) -> dict[str, list[Any]]:
    """Per graph input: each dim as int (fixed), str (named) or None (unknown)."""
    initializers = {i.name for i in model.graph.initializer}
    dims = {}
    for inp in model.graph.input:
        if inp.name in initializers or not inp.type.HasField("tensor_type"):
            continue
        shape = inp.type.tensor_type.shape
        dims[inp.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]
    return dims


def dynamic_groups(model, signature: Sequence[Any] | None) -> tuple[dict[str, list[Member]], list[dict[str, Any]]]:
    """(axis groups dynamic in ONNX, axes dynamic in the source but frozen in ONNX)."""
    onnx = onnx_dims(model)
    source = {s.name: list(s.shape) for s in signature or ()}
    groups: dict[str, list[Member]] = {}
    frozen = []
    for name, dims in onnx.items():
        src = source.get(name, [])
        for axis, dim in enumerate(dims):
            src_dim = src[axis] if axis < len(src) else 0
            src_dynamic = axis < len(src) and not isinstance(src_dim, int)
            if isinstance(dim, int):
                if src_dynamic:
                    frozen.append({"input": name, "axis": axis, "fixed_to": dim})
                continue
            if axis == 0:
                # exporters name batch dims per input (tf2onnx: unk__N); a
                # batch of 3 for one input and 5 for another is not a real case
                key = "batch"
            else:
                named = dim if isinstance(dim, str) else (src_dim if isinstance(src_dim, str) else None)
                key = named or f"{name}.{axis}"
            groups.setdefault(key, []).append((name, axis))
    return groups, frozen


def resize(array: np.ndarray, axis: int, size: int, rng: np.random.Generator) -> np.ndarray:
    n = array.shape[axis]
    if n == 0:
        return array
    if axis == 0:  # rows: a seeded draw keeps the mix of the sample
        if size <= n:
            idx = np.sort(rng.choice(n, size, replace=False))
        else:
            idx = np.concatenate([np.arange(n), rng.integers(0, n, size - n)])
    else:  # sequences, spatial dims: a prefix, or the data tiled
        idx = np.arange(size) % n
    return np.take(array, idx, axis=axis)


def sweep_cases(
    base: dict[str, np.ndarray], groups: dict[str, list[Member]], existing: Sequence[Case], seed: int
) -> tuple[list[Case], list[dict[str, Any]]]:
    """Cases for every (group, size); plus a summary of what was swept."""
    seen = {_shape_key(c.inputs) for c in existing}
    cases: list[Case] = []
    summary: list[dict[str, Any]] = []
    for key in sorted(groups):
        members = [m for m in groups[key] if m[0] in base and base[m[0]].ndim > m[1]]
        if not members:
            continue
        entry: dict[str, Any] = {
            "axis": key,
            "members": [{"input": i, "axis": a} for i, a in members],
            "sizes": [],
            "skipped_sizes": [],
        }
        for size in SIZES:
            inputs = dict(base)
            for name, axis in members:
                # one seed per (group, size): every input draws the same rows
                rng = np.random.default_rng([seed, size, len(summary)])
                inputs[name] = resize(inputs[name], axis, size, rng)
            if sum(v.size for v in inputs.values()) > MAX_ELEMENTS:
                entry["skipped_sizes"].append(size)
                continue
            shape_key = _shape_key(inputs)
            entry["sizes"].append(size)
            if shape_key in seen:  # e.g. batch_1 already exists
                continue
            seen.add(shape_key)
            cases.append(
                Case(name=f"sweep_{key}={size}", inputs=inputs, meta={"kind": "sweep", "axis": key, "size": size})
            )
        summary.append(entry)
    return cases, summary


def _shape_key(inputs: dict[str, np.ndarray]):
    return tuple(sorted((k, tuple(np.shape(v))) for k, v in inputs.items()))


def extend(
    spec, model, onnx_model, cases: list[Case], gate, seed: int, options: Any = None
) -> tuple[list[Case], dict[str, Any]]:
    """Stage 1: the sweep and edge-value cases to add to ``cases``, and what
    stage 2 needs to report about dynamic axes."""
    try:
        signature = spec.inputs(model, options) if spec.inputs else None
    except Exception:  # a signature is a hint; the ONNX dims still drive the sweep
        signature = None
    groups, frozen = dynamic_groups(onnx_model, signature)
    info: dict[str, Any] = {"frozen_axes": frozen, "dynamic_axes": [], "edge_values": bool(gate and gate.edge_values)}
    extra: list[Case] = []
    if gate is None or not cases:
        return extra, info
    base = cases[0].inputs
    if gate.sweep:
        swept, info["dynamic_axes"] = sweep_cases(base, groups, cases, seed)
        extra += swept
    if gate.edge_values:
        extra += edge_cases(base)
    return extra, info


def run_source(cases: list[Case], run) -> None:
    """Run the original on extra cases; a shape or value it rejects marks the
    case skipped-by-source (the ONNX model is not blamed for it)."""
    for case in cases:
        try:
            case.expected = run(case)
        except Exception as exc:  # UsageError from _run_original, or a converter's own error
            text = str(exc).split(": ", 1)[-1] if "failed on the validation inputs" in str(exc) else str(exc)
            case.meta["skipped"] = f"the original model rejects these inputs: {one_line(text) or type(exc).__name__}"
