"""One-line and tabular human summaries of reports."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from onnxgate.pipeline.report.model import as_dict


def worst(report, key: str) -> float:
    """The largest ``key`` over every compared output of a report (or its JSON form)."""
    report = as_dict(report)
    values = [o.get(key, 0.0) for c in report.get("cases", []) for o in c.get("outputs", [])]
    values = [v for v in values if isinstance(v, (int, float))]
    return max(values) if values else 0.0


def one_line(report, output: Path) -> str:
    report = as_dict(report)
    conv = report.get("converter", {})
    n_out = sum(len(c.get("outputs", [])) for c in report.get("cases", []))
    noise = [o for c in report.get("cases", []) for o in c.get("outputs", []) if "noise_floor" in o]
    return (
        f"{report['verdict'].upper()} {output} ({conv.get('name')}, {conv.get('exporter')}, opset {conv.get('opset')}): "
        f"{len(report.get('cases', []))} cases, {n_out} outputs compared, max abs err {worst(report, 'max_abs_err'):.3g}"
        + (f" (the original's own float32 noise floor: {worst(report, 'noise_floor'):.3g})" if noise else "")
    )


def table(rows: Iterable[dict[str, Any]]) -> str:
    """Fixed-width table; each row is a dict with the same keys."""
    rows = list(rows)
    if not rows:
        return "(nothing)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys), "  ".join("-" * widths[k] for k in keys)]
    lines += ["  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)
