"""The one place a ``Report`` is assembled: stage 1's artifact, stage 2's
validation, the runtime pass (latency, error histograms) and drift, with the
verdict from ``gate.verdict.decide``."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from onnxgate.pipeline.gate import drift as drift_mod
from onnxgate.pipeline.gate import verdict as verdict_mod
from onnxgate.pipeline.report.document import package_versions
from onnxgate.pipeline.report.model import (
    CaseResult,
    Check,
    ConverterInfo,
    OnnxInfo,
    OutputResult,
    Report,
    SourceInfo,
    Tensor,
)
from onnxgate.plugins.spec import Tolerance

UNVERIFIED = (
    "no expected outputs: the original model could not be run here and none were given "
    "(--golden or --expected); only loading and running in onnxruntime were checked"
)


def build(
    artifact,
    validation: dict[str, Any],
    runtime: dict[str, Any],
    *,
    onnx: OnnxInfo,
    started: float,
    accept_unverified: bool = False,
    gate=None,
) -> Report:
    """``validation``: ``gate.stage.validate``'s sections; ``runtime``:
    ``core.latency.runtime_pass``'s; ``gate``: its baseline gates drift."""
    checks = [Check(**c) for c in validation["checks"]]
    if not artifact.verified:  # the gate only saw the model load and run
        reason = artifact.gate_info.get("unverified_reason")  # e.g. onnx.reference lacks an operator
        message = (
            UNVERIFIED
            if not reason
            else (
                f"no expected outputs ({reason}) and none were given (--golden or --expected); "
                "only loading and running in onnxruntime were checked"
            )
        )
        checks.append(Check("comparison", accept_unverified, message))
    cases = [case_result(c) for c in validation["cases"]]
    timings = dict(artifact.timings)
    timings["validate_s"] = validation.get("validate_s", 0.0)
    tol = validation["tolerance"]
    report = Report(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        passed=False,
        verdict="failed",
        failures=[],  # decided below, once everything is in
        source=SourceInfo(**{k: v or "" for k, v in artifact.source.items()}),
        converter=ConverterInfo(**artifact.converter),
        onnx=onnx,
        tolerance=Tolerance(rtol=tol["rtol"], atol=tol["atol"]),
        seed=artifact.seed,
        notes=list(artifact.notes),
        checks=checks,
        cases=cases,
        timings={},
        versions={**package_versions(), **artifact.versions},
        gate=validation.get("gate"),
        runtime_compat=validation.get("runtime_compat"),
        sweep=validation.get("sweep"),
        tree_flips=validation.get("tree_flips"),
        error_histograms=runtime.get("error_histograms"),
        latency=runtime.get("latency"),
    )
    if gate is not None and gate.baseline is not None:
        report.drift = _drift(report, Path(gate.baseline), gate.drift_factor, gate.drift_floor)
    decided = verdict_mod.decide(report.checks, report.cases, verified=artifact.verified, drift=report.drift)
    timings["total_s"] = time.perf_counter() - started
    return replace(
        report,
        passed=decided.passed,
        verdict=decided.verdict,
        failures=decided.failures,
        timings={k: round(v, 6) for k, v in timings.items()},
    )


def _drift(report: Report, path: Path, factor: float, floor: float) -> dict[str, Any]:
    """The drift section, and its check in ``report.checks``."""
    section = drift_mod.compare(report.to_dict(), drift_mod.load(path), factor, floor)
    section["baseline"] = str(path)
    grew = [r for r in section["outputs"] if r.get("grew")]
    message = f"compared with baseline {path}: " + (
        ", ".join(f"{r['name']} x{r['growth']:.3g}" for r in grew) + " grew" if grew else "no output's error grew"
    )
    report.checks.append(Check("drift", section["passed"], message))
    return section


def case_result(case: dict[str, Any]) -> CaseResult:
    """A case of ``gate.stage`` as the typed document's ``CaseResult``."""
    known, extra = _split(CaseResult, case)
    known["outputs"] = [output_result(o) for o in case.get("outputs", [])]
    return CaseResult(**known, extra=extra)


def output_result(out: dict[str, Any]) -> OutputResult:
    known, extra = _split(OutputResult, out)
    return OutputResult(**known, extra=extra)


def _split(cls, data: dict[str, Any]):
    """The keys ``cls`` declares, and the rest (its ``extra``)."""
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


def onnx_info(model, path: str | None, sha256: str) -> OnnxInfo:
    from onnx import helper

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "non-tensor"
            out.append(Tensor(name=v.name, dtype=dtype, shape=shape))
        return out

    initializers = {i.name for i in model.graph.initializer}
    return OnnxInfo(
        path=str(path or ""),
        sha256=sha256,
        ir_version=int(model.ir_version),
        opsets={imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import},
        inputs=describe([i for i in model.graph.input if i.name not in initializers]),
        outputs=describe(model.graph.output),
    )
