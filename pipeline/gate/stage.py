"""Stage 2: the gate. Needs only onnx, onnxruntime and numpy.

Checks the ONNX model, loads it in onnxruntime, runs every case and compares
each output with the original model's. The result is the report's
validation sections (checks, cases...); the verdict is ``gate.verdict``'s. Beyond that comparison (docs/validation.md): the
swept and edge-value cases stage 1 built, task-aware metrics (pipeline.tasks),
tree threshold-rounding flips (pipeline.trees), a second session with graph
optimisations off, and the runtime compatibility table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from onnxgate.pipeline.core.arrays import abs_diff, as_array
from onnxgate.pipeline.core.artifact import Artifact
from onnxgate.pipeline.core.session import Runtime, frozen_batch_inputs, run_case
from onnxgate.pipeline.gate import runtime_compat, tasks, trees
from onnxgate.pipeline.gate.compare import Noise, bad_elements
from onnxgate.pipeline.gate.config import GateConfig, OutputRule, check_output_names, merge
from onnxgate.plugins.errors import ConversionError
from onnxgate.plugins.helpers import one_line
from onnxgate.plugins.spec import Tolerance


def check_model(model) -> list[dict[str, Any]]:
    """onnx.checker and strict shape inference; a failure is a conversion failure."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"the ONNX model is invalid (onnx.checker): {one_line(exc)}") from exc
    checks = [{"name": "onnx_checker", "passed": True, "message": "onnx.checker passed"}]
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
        message = "strict shape inference passed"
    except Exception as exc:
        # onnx cannot infer through some ai.onnx.ml ops (Scaler -> Sub): a gap in
        # onnx's inference, not a broken model; onnxruntime's load decides next.
        message = f"strict shape inference incomplete (not an error by itself): {one_line(exc)}"
    checks.append({"name": "shape_inference", "passed": True, "message": message})
    return checks


def validate(
    artifact: Artifact,
    tolerance: Tolerance | None = None,
    per_output: dict[str, Tolerance] | None = None,
    gate: GateConfig | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Run the gate on an artifact; returns the report's validation sections
    (``report.build`` turns them into the typed report and its verdict)."""
    tol = tolerance or artifact.tolerance
    explicit = tol != artifact.tolerance  # the user's --rtol/--atol: their bound, not the noise rule
    user_rules = (gate or GateConfig()).outputs  # the converter's own per-output rules are not checked
    gate = _with_per_output(gate or GateConfig(), per_output or {})
    t0 = time.perf_counter()
    checks = check_model(artifact.model)
    runtime = runtime or Runtime(artifact.model.SerializeToString())
    check_output_names(user_rules, [o.name for o in runtime.session().get_outputs()])
    checks.append({"name": "onnxruntime_load", "passed": True, "message": "onnxruntime loaded the model"})
    compat, compat_check = runtime_compat.check(artifact.model, gate.target_runtime)
    checks.append(compat_check)
    unoptimized = _unoptimized_session(runtime, gate, checks)

    if artifact.dynamic_batch:
        frozen = frozen_batch_inputs(artifact.model)
        checks.append(
            {
                "name": "dynamic_batch",
                "passed": not frozen,
                "message": (
                    "batch dimension is dynamic"
                    if not frozen
                    else "a dynamic batch was requested but the ONNX model freezes it: " + ", ".join(frozen)
                ),
            }
        )
    frozen_axes = frozen_axes_check(artifact.gate_info.get("frozen_axes", []), artifact.dynamic_batch)
    if frozen_axes:
        checks.append(frozen_axes)

    context = _Context(
        runtime,
        unoptimized,
        artifact.model,
        tol,
        gate,
        tasks.model_classes(artifact.model),
        artifact.tree_ensemble or trees.is_tree_model(artifact.model),
        explicit,
    )
    cases = [_validate_case(context, case) for case in artifact.cases]
    checks += _summary_checks(cases, artifact, gate, context)
    noise_check = float32_noise_check(artifact.gate_info.get("float64_reference"), cases)
    if noise_check:
        checks.append(noise_check)

    result = {
        "tolerance": {"rtol": tol.rtol, "atol": tol.atol},
        "checks": checks,
        "cases": cases,
        "validate_s": time.perf_counter() - t0,
        "gate": gate.summary(),
        "runtime_compat": compat,
        "sweep": {
            "dynamic_axes": artifact.gate_info.get("dynamic_axes", []),
            "frozen_axes": artifact.gate_info.get("frozen_axes", []),
        },
    }
    if context.tree:
        result["tree_flips"] = _tree_summary(cases, gate)
    return result


def frozen_axes_check(frozen: list[dict[str, Any]], dynamic_batch: bool) -> dict[str, Any] | None:
    """The failing check for non-batch axes the ONNX model froze."""
    relevant = [f for f in frozen if f["axis"] != 0]  # axis 0: dynamic_batch check
    if not relevant:
        return None
    what = ", ".join(f"{f['input']} axis {f['axis']} (fixed to {f['fixed_to']})" for f in relevant)
    return {
        "name": "dynamic_axes",
        "passed": False,
        "message": f"dynamic in the source but fixed in the ONNX model: {what}",
    }


def float32_noise_check(info: dict[str, Any] | None, cases) -> dict[str, Any] | None:
    """What the float64 run found, as an informative (always passing) check."""
    if not info:
        return None
    if not info.get("ran"):
        message = f"not measured ({info.get('reason', 'no float64 run')}): the scale-aware default judged every output"
        return {"name": "float32_noise", "passed": True, "message": message}
    floors: dict[str, float] = {}
    for case in cases:
        for out in case["outputs"]:
            if out.get("noise_floor") is not None:
                floors[out["name"]] = max(floors.get(out["name"], 0.0), out["noise_floor"])
    what = (
        "; ".join(f"{name}: {floor:.3g}" for name, floor in floors.items())
        if floors
        else "no float32 output (the original computes in float64): the scale-aware default judged every output"
    )
    return {
        "name": "float32_noise",
        "passed": True,
        "message": f"the original ran once more in float64 ({info.get('cases', 0)} cases, "
        f"{info.get('seconds', 0.0):.3g} s; batch-sweep cases reuse the sample's floor); "
        f"its float32 noise floor per output: {what}",
    }


class _Context:
    """What every case needs; built once per validation."""

    def __init__(self, runtime, unoptimized, model, tol, gate, classes, tree, explicit=False):
        self.runtime, self.session, self.unoptimized, self.model = runtime, runtime.session(), unoptimized, model
        self.tol, self.gate, self.classes, self.tree, self.explicit = tol, gate, classes, tree, explicit

    def compare(self, actual, expected, case) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``tasks.compare_case`` with this run's settings and the case's noise floors."""
        return tasks.compare_case(
            actual, expected, self.tol, self.gate, self.classes, noise=_noise(case), explicit=self.explicit
        )


def _noise(case) -> dict[str, float] | None:
    """The original's float32 noise floor per output, measured by stage 1 (``float64_noise``)."""
    return (case.meta or {}).get("float64_noise")


def _with_per_output(gate: GateConfig, per_output: dict[str, Tolerance]) -> GateConfig:
    if not per_output:
        return gate
    from dataclasses import replace

    rules = {k: OutputRule(rtol=v.rtol, atol=v.atol) for k, v in per_output.items()}
    return replace(gate, outputs=merge(rules, gate.outputs))


def _unoptimized_session(runtime: Runtime, gate: GateConfig, checks: list[dict[str, Any]]):
    if not gate.optimizer_check:
        return None
    try:
        return runtime.session(optimized=False)
    except ConversionError as exc:  # loads optimised but not plain: worth saying, not a verdict
        checks.append(
            {
                "name": "optimizer_consistency",
                "passed": True,
                "message": f"not checked: the unoptimised session does not load ({exc})",
            }
        )
        return None


def _validate_case(ctx: _Context, case) -> dict[str, Any]:
    meta = case.meta or {}
    entry: dict[str, Any] = {
        "name": case.name,
        "kind": meta.get("kind", "base"),
        "input_shapes": {k: list(np.shape(v)) for k, v in case.inputs.items()},
        "outputs": [],
        "passed": True,
    }
    for key in ("axis", "size", "edge"):
        if key in meta:
            entry[key] = meta[key]
    if meta.get("skipped"):  # the original rejected these inputs: nothing to hold ONNX to
        entry["skipped"] = meta["skipped"]
        return entry
    try:
        actual = ctx.runtime.run(case)
    except Exception as exc:
        entry.update(passed=False, error=f"onnxruntime failed to run: {one_line(exc)}")
        return entry
    if case.expected is None:  # nothing to compare with: only running was checked
        entry["unverified"] = True
        return entry
    results, masks = ctx.compare(actual, case.expected, case)
    if ctx.unoptimized is not None:
        _attribute(ctx, case, actual, results)
    if ctx.tree:
        _tree_flips(ctx, case, entry, results, masks)
    entry["outputs"] = results
    entry["passed"] = all(r["passed"] for r in results)
    return entry


def _attribute(ctx: _Context, case, actual, results) -> None:
    """Run with graph optimisations off: if that matches the original where the
    optimised session does not, the optimiser is to blame, not the converter."""
    try:
        plain = run_case(ctx.unoptimized, case.inputs)
    except Exception as exc:
        for r in results:
            r["optimizer"] = {"unoptimized_error": one_line(exc)}
        return
    plain_results, _ = ctx.compare(plain, case.expected, case)
    noise = _noise(case)
    for r, p in zip(results, plain_results):
        name = r["name"]
        out_noise = tasks.noise_of(name, noise, ctx.gate, ctx.explicit)
        r["optimizer"] = {
            "max_abs_diff": _max_diff(actual[name], plain[name]),
            "disagrees": _disagree(actual[name], plain[name], ctx.gate.rule(name).tolerance(ctx.tol), out_noise),
            "passed_unoptimized": p["passed"],
        }
        if not r["passed"]:
            r["attribution"] = "optimizer" if p["passed"] else "converter"


def _disagree(optimized, plain, tol: Tolerance, noise: Noise | None = None) -> bool:
    """Optimised vs unoptimised onnxruntime, beyond the output's tolerance: the
    gate's own rule (the original's float32 noise, else scale-aware), so
    float32 rounding in a rewritten graph is not called an optimiser problem."""
    a, b = as_array(optimized), as_array(plain)
    if a.shape != b.shape:
        return True
    return bool(a.size and bad_elements(a, b, tol, noise).any())


def _max_diff(a, b) -> float:
    a, b = as_array(a), as_array(b)
    if a.shape != b.shape or a.dtype.kind not in "fc" or not a.size:
        return 0.0 if a.shape == b.shape and np.array_equal(a, b) else float("inf")
    return float(np.nan_to_num(abs_diff(a, b), nan=np.inf).max())


def _row(value, i):
    return value[i : i + 1]


def _tree_flips(ctx: _Context, case, entry, results, masks) -> None:
    """Split disagreeing rows into threshold-rounding flips and the rest."""
    lengths = {len(m) for m in masks.values() if m is not None}
    failing = [r for r in results if not r["passed"]]
    if not failing or len(lengths) != 1 or any(masks[r["name"]] is None for r in failing):
        return
    n = lengths.pop()
    bad = np.zeros(n, bool)
    for m in masks.values():
        if m is not None:
            bad |= m

    def row_agrees(row_actual, i):
        expected = {k: _row(v, i) for k, v in case.expected.items()}
        row_results, _ = ctx.compare(row_actual, expected, case)
        return all(r["passed"] for r in row_results)

    analysis = trees.analyse(ctx.session, ctx.model, case.inputs, case.expected, bad, row_agrees)
    analysis["unexplained_rate"] = analysis["unexplained"] / n if n else 0.0
    analysis["flip_rate"] = analysis["flipped"] / n if n else 0.0
    analysis["passed"] = analysis["unexplained_rate"] <= ctx.gate.max_flip_rate
    entry["tree_flips"] = analysis
    if analysis["passed"]:  # every failing output is row-local and the flips are acceptable
        for r in failing:
            r["passed"] = True
            r["tolerated"] = (
                f"{analysis['flipped']} of {n} rows flip: {analysis['explained']} explained by float32 "
                f"threshold rounding, {analysis['unexplained']} unexplained (max flip rate "
                f"{ctx.gate.max_flip_rate:g})"
            )
            r["failed_reason"], r["reason"] = r["reason"], ""
            r.pop("attribution", None)


def _tree_summary(cases, gate: GateConfig) -> dict[str, Any]:
    analysed = [c["tree_flips"] for c in cases if "tree_flips" in c]
    rows = sum(a["rows"] for a in analysed)
    flipped = sum(a["flipped"] for a in analysed)
    explained = sum(a["explained"] for a in analysed)
    unexplained = sum(a["unexplained"] for a in analysed)
    return {
        "cases_with_flips": len([a for a in analysed if a["flipped"]]),
        "rows": rows,
        "flipped": flipped,
        "explained": explained,
        "unexplained": unexplained,
        "max_flip_rate": gate.max_flip_rate,
        "passed": all(a["passed"] for a in analysed),
    }


#: The NaN edge case on a tree ensemble, in words a user can act on.
NAN_IN_TREES = (
    "why NaN differs: the original's trees send a missing value (NaN) down the branch they learned for it in "
    "training, while the ONNX tree ensemble has no learned side for missing values and sends NaN down a fixed "
    "branch; rows with NaN get different predictions. If your data can hold NaN, impute before the trees "
    "(e.g. SimpleImputer in the pipeline); if it never does, this edge case does not concern you "
    "(--no-edge-values)"
)


def _summary_checks(cases, artifact, gate: GateConfig, ctx: _Context) -> list[dict[str, Any]]:
    checks = []
    swept = [c for c in cases if c["kind"] == "sweep"]
    if gate.sweep:
        axes = artifact.gate_info.get("dynamic_axes", [])
        skipped = [c["name"] for c in swept if c.get("skipped")]
        broken = [c["name"] for c in swept if not c.get("skipped") and not c["passed"]]
        what = "; ".join(f"{a['axis']} at {a['sizes']}" for a in axes) or "no dynamic axis"
        message = f"swept {what}"
        if skipped:
            message += f"; skipped by source (the original rejects the shape): {', '.join(skipped)}"
        checks.append(
            {
                "name": "shape_sweep",
                "passed": not broken,
                "message": message + (f"; failing: {', '.join(broken)}" if broken else ""),
            }
        )
    edges = [c for c in cases if c["kind"] == "edge"]
    if edges:
        parts = []
        for c in edges:
            state = (
                ("not applicable: " + c["skipped"]) if c.get("skipped") else ("match" if c["passed"] else "MISMATCH")
            )
            parts.append(f"{c['edge']}: {state}")
        nan_failed = any(c["edge"] == "nan" and not c["passed"] and not c.get("skipped") for c in edges)
        if nan_failed and trees.is_tree_model(artifact.model):
            parts.append(NAN_IN_TREES)
        checks.append({"name": "edge_values", "passed": all(c["passed"] for c in edges), "message": "; ".join(parts)})
    if ctx.unoptimized is not None:
        outs = [(c["name"], o) for c in cases for o in c["outputs"] if "max_abs_diff" in o.get("optimizer", {})]
        split = [(case, o) for case, o in outs if o["optimizer"]["disagrees"]]
        worst = max((o["optimizer"]["max_abs_diff"] for _, o in outs), default=0.0)
        if split:
            where = ", ".join(
                f"{case}/{o['name']} (max diff {o['optimizer']['max_abs_diff']:.3g})" for case, o in split[:5]
            )
            opt_ok = all(o["passed"] for _, o in split)
            plain_ok = all(o["optimizer"]["passed_unoptimized"] for _, o in split)
            side = (
                "the optimised session matches the original, the unoptimised one does not"
                if opt_ok and not plain_ok
                else "the unoptimised session matches the original, the optimised one does not: deploy with "
                "graph_optimization_level=ORT_DISABLE_ALL"
                if plain_ok and not opt_ok
                else "neither matches the original"
                if not opt_ok
                else "both match the original"
            )
            message = (
                f"onnxruntime graph optimisations change the results beyond tolerance at {where}: an optimiser "
                f"problem (the graph is numerically sensitive to rewrites), not a converter one; {side}"
            )
        else:
            message = f"graph optimisations on and off agree within tolerance (max difference {worst:.3g})"
        checks.append({"name": "optimizer_consistency", "passed": not split, "message": message})
    if ctx.tree:
        flips = _tree_summary(cases, gate)
        checks.append(
            {
                "name": "tree_flips",
                "passed": flips["passed"],
                "message": (
                    f"{flips['flipped']} of {flips['rows']} rows flip: {flips['explained']} explained by float32 threshold "
                    f"rounding, {flips['unexplained']} unexplained (max flip rate for unexplained flips {gate.max_flip_rate:g})"
                ),
            }
        )
    return checks
