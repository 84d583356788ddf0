"""Batch conversion: many models from a manifest, one report each.

A manifest is JSON ``{"models": [{"name", "source", "framework"?, "sample"?,
"expected"?, "golden"?, "options"?, "trust_source"?, "accept_unverified"?}, ...]}``.
Each model runs in isolation: one failure never stops the others.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Optional

from onnxgate.plugins.errors import EXIT_OK, OnnxgateError, UsageError
from onnxgate.plugins.helpers import one_line

_ENTRY_KEYS = {"name", "source", "framework", "sample", "expected", "golden", "options", "trust_source",
               "accept_unverified", "expect", "area", "static_batch"}


def load_manifest(path: Path) -> List[Dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"manifest {path}: unreadable: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models:
        raise UsageError(f"manifest {path}: expected {{\"models\": [...]}} with at least one entry")
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or "source" not in entry:
            raise UsageError(f"manifest {path}: entry {i} has no 'source'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise UsageError(f"manifest {path}: entry {i} has unknown keys {sorted(unknown)}")
        entry.setdefault("name", Path(str(entry["source"])).stem)
    names = [e["name"] for e in models]
    if len(set(names)) != len(names):
        raise UsageError(f"manifest {path}: model names must be unique")
    return models


def convert_one(entry: Dict[str, Any], out_dir: str, gate: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Convert and validate one entry; never raises. ``gate``: ``ci`` and
    ``gate_config`` for ``gate.config.resolve``, as the CLI passes them."""
    from onnxgate.pipeline import api

    started = time.perf_counter()
    out = Path(out_dir)
    row = {"name": entry["name"], "framework": entry.get("framework") or "", "verdict": "error",
           "exit_code": 3, "max_abs_err": "", "seconds": 0.0, "message": ""}
    try:
        result = api.convert(
            entry["source"], framework=entry.get("framework"), sample=entry.get("sample"),
            expected=entry.get("expected"), golden=entry.get("golden"), options=entry.get("options") or {},
            trust_source=bool(entry.get("trust_source")), accept_unverified=bool(entry.get("accept_unverified")),
            dynamic_batch=not entry.get("static_batch", False),
            output=out / f"{entry['name']}.onnx", report=out / f"{entry['name']}.report.json", **(gate or {}),
        )
        from onnxgate.pipeline.report.summary import worst

        row.update(
            framework=result.report.converter.name, verdict=result.verdict,
            exit_code=EXIT_OK if result.passed else 1, max_abs_err=f"{worst(result.report, 'max_abs_err'):.2g}",
            message="; ".join(result.failures)[:200],
        )
    except OnnxgateError as exc:
        row.update(exit_code=exc.exit_code, message=str(exc)[:200])
    except Exception as exc:  # a converter bug must not take the batch down
        row.update(exit_code=3, message=one_line(exc, with_type=True, limit=200))
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def run_batch(models: List[Dict[str, Any]], out_dir: Path, jobs: int = 1,
              gate: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if jobs <= 1:
        return [convert_one(e, str(out_dir), gate) for e in models]
    # spawn: frameworks (torch, TF) do not survive fork reliably
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(convert_one, models, [str(out_dir)] * len(models), [gate] * len(models)))


def exit_code(rows: List[Dict[str, Any]]) -> int:
    """0 when every model passed, else the largest exit code among them."""
    return max((r["exit_code"] for r in rows), default=EXIT_OK)
