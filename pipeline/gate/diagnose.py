"""Where does a mismatch begin?

Two searches, both on one validation case:

* runtime: every intermediate tensor is exposed as a graph output and
  onnxruntime (graph optimisations OFF, so its nodes are the model's nodes) is
  compared with ``onnx.reference.ReferenceEvaluator``, node by node in
  topological order. The first node that differs is where ONNX Runtime parts
  from the ONNX specification.
* source: when the converter implements ``ConverterSpec.intermediates``
  (PyTorch modules through forward hooks, scikit-learn pipeline steps), the
  original model's value after each layer/step is compared with the ONNX
  tensor the exporter computed for it. The first layer/step that differs is
  where the conversion goes wrong.

Needs onnx, onnxruntime and numpy; frameworks are only touched through the
converter's callables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from onnxgate.pipeline.conversion import stage as stage_convert
from onnxgate.pipeline.conversion.sources import resolve
from onnxgate.pipeline.core.arrays import abs_diff
from onnxgate.pipeline.core.session import load_session
from onnxgate.plugins.helpers import one_line
from onnxgate.plugins.manager import Registry
from onnxgate.plugins.spec import Tolerance


def expose(model, names: set | None = None):
    """A copy of ``model`` whose graph outputs also include node outputs
    (all of them, or those in ``names``); typed where inference can type them."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # untyped tensors are then skipped, not fatal
        inferred = model
    typed = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            typed[vi.name] = vi.type.tensor_type.elem_type
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for out in node.output:
            if not out or out in present or (names is not None and out not in names):
                continue
            if out in typed:  # elem type only: a shape here could contradict what ORT computes
                exposed.graph.output.append(onnx.helper.make_tensor_value_info(out, typed[out], None))
            else:  # e.g. ai.onnx.ml outputs shape inference cannot type: onnxruntime infers it
                exposed.graph.output.add().name = out
            present.add(out)
    return exposed


def run_unoptimized(model, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Every graph output of ``model`` from onnxruntime with optimisations off."""
    session = load_session(model.SerializeToString(), optimized=False)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs))))


def differs(actual: Any, expected: Any, tol: Tolerance) -> tuple[float, float, str] | None:
    """None when close; else (max abs err, max rel err, why)."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        if a.size != e.size:
            return float("inf"), float("inf"), f"shape {list(a.shape)} != {list(e.shape)}"
        a = a.reshape(e.shape)
    if a.size == 0:
        return None
    if a.dtype.kind not in "fciub" or e.dtype.kind not in "fciub":
        same = a.astype(str) == e.astype(str)
        return None if same.all() else (float("inf"), float("inf"), f"{int((~same).sum())} values differ")
    e64 = e.astype(np.float64)
    diff = abs_diff(a, e)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(diff <= tol.atol + tol.rtol * np.abs(np.where(np.isnan(e64), 0.0, e64)))  # NaN vs NaN: diff 0
    if not bad.any():
        return None
    finite = np.isfinite(diff)
    max_abs = float(diff[finite].max()) if finite.all() else float("inf")
    rel = diff / np.maximum(np.abs(e64), np.finfo(np.float64).tiny)
    max_rel = float(rel[finite].max()) if finite.all() else float("inf")
    return max_abs, max_rel, f"{int(bad.sum())} of {bad.size} elements differ"


def runtime_vs_reference(model, inputs: Mapping[str, np.ndarray], tol: Tolerance = Tolerance()) -> dict[str, Any]:
    """First node whose onnxruntime output differs from onnx.reference's."""
    try:
        from onnx.reference import ReferenceEvaluator

        reference = ReferenceEvaluator(model).run(None, dict(inputs), intermediate=True)
    except Exception as exc:  # custom domains, ops the reference lacks
        return {
            "status": "unavailable",
            "message": f"onnx.reference cannot run this model: {one_line(exc, with_type=True)}",
        }
    try:
        runtime = run_unoptimized(expose(model), inputs)
    except Exception as exc:
        return {
            "status": "unavailable",
            "message": f"onnxruntime cannot run the exposed graph: {one_line(exc, with_type=True)}",
        }
    compared = 0
    for index, node in enumerate(model.graph.node):
        for out in node.output:
            if out not in runtime or out not in reference:
                continue
            compared += 1
            found = differs(runtime[out], reference[out], tol)
            if found:
                max_abs, max_rel, why = found
                return {
                    "status": "mismatch",
                    "node": node.name or f"#{index}",
                    "node_index": index,
                    "op_type": node.op_type,
                    "domain": node.domain or "ai.onnx",
                    "tensor": out,
                    "max_abs_err": max_abs,
                    "max_rel_err": max_rel,
                    "compared": compared,
                    "message": f"onnxruntime and onnx.reference first differ at node {node.name or index!r} "
                    f"({node.op_type}), output {out!r}: {why}, max abs err {max_abs:.3g}",
                }
    return {
        "status": "agree",
        "compared": compared,
        "message": f"onnxruntime matches onnx.reference on all {compared} intermediate tensors",
    }


def source_vs_onnx(
    spec, model, onnx_model, inputs: Mapping[str, np.ndarray], tol: Tolerance = Tolerance()
) -> dict[str, Any]:
    """First layer/step of the original whose ONNX counterpart differs."""
    if spec is None or spec.intermediates is None:
        name = spec.name if spec is not None else "this"
        return {"status": "unsupported", "message": f"the {name} converter exposes no intermediate values"}
    try:
        items = list(spec.intermediates(model, inputs, onnx_model))
    except Exception as exc:
        return {
            "status": "unavailable",
            "message": f"could not collect the original's intermediate values: {one_line(exc, with_type=True)}",
        }
    if not items:
        return {"status": "unavailable", "message": "no layer or step of the original maps to an ONNX tensor"}
    try:
        runtime = run_unoptimized(expose(onnx_model, {i.onnx_tensor for i in items}), inputs)
    except Exception as exc:
        return {
            "status": "unavailable",
            "message": f"onnxruntime cannot run the exposed graph: {one_line(exc, with_type=True)}",
        }
    producers = {out: node for node in onnx_model.graph.node for out in node.output}
    compared, skipped = 0, []
    for item in items:
        actual = runtime.get(item.onnx_tensor)
        if actual is None or np.size(actual) != np.size(item.value):
            skipped.append(item.name)
            continue
        compared += 1
        found = differs(actual, item.value, tol)
        if found:
            max_abs, max_rel, why = found
            node = producers.get(item.onnx_tensor)
            return {
                "status": "mismatch",
                "layer": item.name,
                "kind": item.kind,
                "tensor": item.onnx_tensor,
                "node": node.name if node is not None else "",
                "op_type": node.op_type if node is not None else "",
                "max_abs_err": max_abs,
                "max_rel_err": max_rel,
                "compared": compared,
                "skipped": skipped,
                "message": f"the original and ONNX first differ after {item.name!r} ({item.kind}), "
                f"ONNX tensor {item.onnx_tensor!r}"
                + (f" from node {node.name!r} ({node.op_type})" if node is not None else "")
                + f": {why}, max abs err {max_abs:.3g}",
            }
    return {
        "status": "agree",
        "compared": compared,
        "skipped": skipped,
        "message": f"all {compared} layers/steps compared match their ONNX tensors",
    }


def diagnose(
    spec, model, onnx_model, inputs: Mapping[str, np.ndarray], tol: Tolerance | None = None, case: str = ""
) -> dict[str, Any]:
    """The report's ``diagnosis`` section for one case."""
    tol = tol or Tolerance()
    runtime = runtime_vs_reference(onnx_model, inputs, tol)
    source = (
        source_vs_onnx(spec, model, onnx_model, inputs, tol)
        if model is not None
        else {"status": "unavailable", "message": "the original model is not available"}
    )
    return {
        "case": case,
        "tolerance": {"rtol": tol.rtol, "atol": tol.atol},
        "runtime": runtime,
        "source": source,
        "summary": summary_line(runtime, source),
    }


def summary_line(runtime: dict[str, Any], source: dict[str, Any]) -> str:
    parts = []
    if source.get("status") == "mismatch":
        parts.append(
            f"conversion: first wrong at {source['layer']} ({source['kind']}) -> ONNX "
            f"{source.get('node') or source['tensor']} ({source.get('op_type') or '?'}), "
            f"max abs err {source['max_abs_err']:.3g}"
        )
    if runtime.get("status") == "mismatch":
        parts.append(
            f"runtime: onnxruntime differs from onnx.reference first at node {runtime['node']} "
            f"({runtime['op_type']}), max abs err {runtime['max_abs_err']:.3g}"
        )
    if not parts:
        statuses = f"source {source.get('status')}, runtime {runtime.get('status')}"
        return f"no mismatch located ({statuses})"
    return "; ".join(parts)


def for_result(
    result,
    source: Any,
    *,
    framework: str | None = None,
    trust_source: bool = False,
    registry=None,
    tol: Tolerance | None = None,
) -> dict[str, Any]:
    """Diagnose a finished run on its first failing case (else its first case).

    The source is loaded again: the artifact deliberately holds no framework
    object.
    """
    artifact = result.artifact
    case = _pick_case(artifact.cases, result.report)
    tolerance = tol or result.report.tolerance
    registry = registry or Registry()
    src = resolve(source)
    spec = stage_convert.pick_converter(src, registry, framework)
    try:
        model = stage_convert.load_model(spec, src, trust_source)
    except Exception as exc:  # still worth running the runtime search
        model = None
        note = one_line(exc, with_type=True)
    else:
        note = ""
    found = diagnose(spec, model, artifact.model, case.inputs, tolerance, case=case.name)
    if note:
        found["source"]["message"] = f"cannot load the original again: {note}"
    return found


def _pick_case(cases, report):
    failing = {c.name for c in report.cases if not c.passed and not c.error}
    for case in cases:
        if case.name in failing:
            return case
    return cases[0]


def print_lines(diagnosis: dict[str, Any]) -> list[str]:
    """What ``onnxgate diagnose`` prints."""
    lines = [f"diagnosis on case {diagnosis.get('case') or '?'}: {diagnosis['summary']}"]
    for key in ("source", "runtime"):
        part = diagnosis.get(key, {})
        lines.append(f"  {key}: {part.get('status')}: {part.get('message', '')}")
    return lines
