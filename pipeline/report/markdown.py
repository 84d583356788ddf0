"""A Markdown summary short enough for a pull-request comment or
``$GITHUB_STEP_SUMMARY``: verdict, model, worst outputs, failures, diagnosis."""

from __future__ import annotations

from typing import Any

from onnxgate.pipeline.core import text
from onnxgate.pipeline.report.model import as_dict

MAX_ROWS = 8
MAX_FAILURES = 10
ICON = {"passed": "✅", "failed": "❌", "unverified": "⚠️"}


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def worst_outputs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per output name: its worst case (failures first, then largest error)."""
    rows: dict[str, dict[str, Any]] = {}
    for case in report.get("cases", []):
        for out in case.get("outputs", []):
            err = out.get("max_abs_err", 0.0)
            err = float("inf") if isinstance(err, str) else float(err)
            row = {
                "output": out["name"],
                "case": case["name"],
                "passed": out.get("passed", True),
                "max_abs_err": err,
                # the original's own float32 error ("" when not measured) and the bound applied
                "noise_floor": out.get("noise_floor", ""),
                "bound": out.get("bound", ""),
                "max_rel_err": out.get("max_rel_err", 0.0),
                "mismatch": out.get("mismatch_fraction", 0.0),
            }
            key = (not row["passed"], row["max_abs_err"])
            old = rows.get(out["name"])
            if old is None or key > (not old["passed"], old["max_abs_err"]):
                rows[out["name"]] = row
    return sorted(rows.values(), key=lambda r: (r["passed"], -r["max_abs_err"]))


def _cell(value: Any) -> str:
    # names come from models and the summary becomes a PR comment: no raw HTML
    return text.markdown(value)


def to_markdown(report) -> str:
    report = as_dict(report)  # a Report, or its JSON form read back from a file
    verdict = report.get("verdict", "failed")
    conv = report.get("converter", {})
    src = report.get("source", {})
    model = report.get("onnx", {}).get("path") or "(in memory)"
    lines = [
        f"### {ICON.get(verdict, '')} onnxgate: {verdict.upper()} `{_cell(model)}`",
        "",
        f"{_cell(src.get('framework', '?'))} {_cell(src.get('framework_version', ''))} → ONNX via "
        f"{_cell(conv.get('name'))} ({_cell(conv.get('exporter'))}, opset {_cell(conv.get('opset'))}); "
        f"{len(report.get('cases', []))} cases, "
        f"tolerance rtol={fmt(report.get('tolerance', {}).get('rtol'))} atol={fmt(report.get('tolerance', {}).get('atol'))}, "
        f"seed {report.get('seed')}",
        "",
    ]
    rows = worst_outputs(report)
    if rows:
        lines += [
            "| output | worst case | max abs err | float32 noise floor | bound | max rel err | mismatched | |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows[:MAX_ROWS]:
            lines.append(
                f"| `{_cell(r['output'])}` | {_cell(r['case'])} | {fmt(r['max_abs_err'])} | "
                f"{fmt(r['noise_floor']) or '–'} | {fmt(r['bound'])} | "
                f"{fmt(r['max_rel_err'])} | {r['mismatch']:.1%} | {'✅' if r['passed'] else '❌'} |"
            )
        if len(rows) > MAX_ROWS:
            lines.append(f"| … {len(rows) - MAX_ROWS} more outputs | | | | | | | |")
        lines.append("")
    failures = report.get("failures", [])
    if failures:
        lines.append(f"**Failures ({len(failures)})**")
        lines += [f"- {_cell(f)}" for f in failures[:MAX_FAILURES]]
        if len(failures) > MAX_FAILURES:
            lines.append(f"- … {len(failures) - MAX_FAILURES} more in the full report")
        lines.append("")
    diagnosis = report.get("diagnosis")
    if diagnosis:
        lines += [f"**Diagnosis** ({_cell(diagnosis.get('case', ''))}): {_cell(diagnosis.get('summary', ''))}", ""]
    latency = report.get("latency", {}).get("batches", [])
    timed = [b for b in latency if b.get("original") and b.get("onnxruntime")]
    if timed:
        parts = [
            f"batch {b['batch']}: {b['original']['p50_ms']:.3g} → {b['onnxruntime']['p50_ms']:.3g} ms"
            for b in timed[:4]
        ]
        lines += ["Latency p50 (original → onnxruntime): " + ", ".join(parts), ""]
    return "\n".join(lines)
