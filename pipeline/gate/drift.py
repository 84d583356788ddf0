"""Drift between runs: a committed baseline of each output's error.

``onnxgate baseline accept REPORT.json`` (or ``--accept-baseline``) writes
``MODEL.onnx.baseline.json``: per output, the largest absolute and relative
error over the cases, per case too, plus the versions that produced it. A
later run (new onnxruntime, converter or opset) loads it (automatically when
it sits next to the model, or ``--baseline FILE``) and reports, per output,
whether the error grew and by how much (``report.build`` adds the section
and its check; ``gate.verdict`` fails the run on it).

A run fails when an output's max absolute error exceeds
``factor * max(baseline, floor)``. The floor keeps noise from failing runs:
errors at 1e-9 that become 1e-8 grew tenfold but are still rounding noise;
only growth past ``factor * floor`` (1e-5 with the defaults) counts. Only
cases present in both runs are compared (same seed and flags => same cases),
so turning on edge values later is not mistaken for drift.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.report.model import as_dict, dumps
from onnxgate.plugins.errors import UsageError

BASELINE_VERSION = 1
SUFFIX = ".baseline.json"


def default_path(model_path: Path) -> Path:
    return Path(str(model_path) + SUFFIX)


def _num(value: Any) -> float:
    """Reports write non-finite floats as strings ("inf", "nan")."""
    if isinstance(value, str):
        return float(value)
    return float(value) if value is not None else 0.0


def from_report(report: dict[str, Any]) -> dict[str, Any]:
    """The baseline document for a (passing) report."""
    outputs: dict[str, dict[str, Any]] = {}
    for case in report.get("cases", []):
        if case.get("skipped"):
            continue
        for out in case.get("outputs", []):
            entry = outputs.setdefault(out["name"], {"max_abs_err": 0.0, "max_rel_err": 0.0, "by_case": {}})
            abs_err, rel_err = _num(out.get("max_abs_err")), _num(out.get("max_rel_err"))
            entry["max_abs_err"] = max(entry["max_abs_err"], abs_err)
            entry["max_rel_err"] = max(entry["max_rel_err"], rel_err)
            entry["by_case"][case["name"]] = abs_err
    return {
        "baseline_version": BASELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_sha256": report.get("onnx", {}).get("sha256", ""),
        "seed": report.get("seed"),
        "converter": {k: report.get("converter", {}).get(k) for k in ("name", "version", "exporter", "opset")},
        "versions": report.get("versions", {}),
        "outputs": outputs,
    }


def write(baseline: dict[str, Any], path: Path) -> None:
    atomic.write_bytes(Path(path), dumps(baseline))  # non-finite floats as strings, like the report


def accept(report, path: Path, force: bool = False) -> dict[str, Any]:
    """Write ``report`` (a ``Report`` or its JSON form) as the baseline at ``path``."""
    report = as_dict(report)
    if not report.get("passed") and not force:
        raise UsageError("refusing to accept a failed report as the baseline (pass --force to accept it anyway)")
    baseline = from_report(report)
    if not baseline["outputs"]:
        raise UsageError("the report compares no outputs: nothing to record as a baseline")
    write(baseline, path)
    return baseline


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"baseline {path}: unreadable: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("baseline_version") != BASELINE_VERSION
        or not isinstance(data.get("outputs"), dict)
    ):
        raise UsageError(f"baseline {path}: not an onnxgate baseline (version {BASELINE_VERSION})")
    return data


def compare(report: dict[str, Any], baseline: dict[str, Any], factor: float, floor: float) -> dict[str, Any]:
    """The report's ``drift`` section."""
    current = from_report(report)["outputs"]
    rows = []
    for name, base in baseline["outputs"].items():
        now = current.get(name)
        if now is None:
            rows.append({"name": name, "passed": False, "reason": "output missing from this run"})
            continue
        common = sorted(set(base.get("by_case", {})) & set(now["by_case"]))
        if common:
            before = max(_num(base["by_case"][c]) for c in common)
            after = max(now["by_case"][c] for c in common)
        else:
            before, after = _num(base["max_abs_err"]), now["max_abs_err"]
        limit = factor * max(before, floor)
        growth = (after / before) if before > 0 else (math.inf if after > 0 else 1.0)
        passed = after <= limit
        rows.append(
            {
                "name": name,
                "baseline_max_abs_err": before,
                "max_abs_err": after,
                "growth": growth,
                "grew": after > before,
                "limit": limit,
                "passed": passed,
                "cases_compared": len(common),
                "reason": ""
                if passed
                else f"max abs err grew {before:.3g} -> {after:.3g} (x{growth:.3g}), limit {limit:.3g}",
            }
        )
    changed = {
        k: [baseline.get("versions", {}).get(k), v]
        for k, v in report.get("versions", {}).items()
        if baseline.get("versions", {}).get(k) not in (None, v)
    }
    return {
        "factor": factor,
        "floor": floor,
        "passed": all(r["passed"] for r in rows),
        "baseline_created": baseline.get("created"),
        "outputs": rows,
        "changed_versions": changed,
        "new_outputs": sorted(set(current) - set(baseline["outputs"])),
    }
