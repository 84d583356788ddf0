"""The JSON report: one versioned document per model run."""
from __future__ import annotations

import json
import math
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict

from onnxgate.pipeline.core import atomic

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


def onnxgate_version() -> str:
    try:
        return metadata.version("onnxgate")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def package_versions(*extra: str) -> Dict[str, str]:
    versions = {"python": platform.python_version(), "onnxgate": onnxgate_version()}
    for dist in ("onnx", "onnxruntime", "numpy", *extra):
        if not dist:
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def build(artifact, validation: Dict[str, Any], onnx_info: Dict[str, Any], started: float) -> Dict[str, Any]:
    """Assemble the report from stage 1's artifact and stage 2's validation."""
    timings = dict(artifact.timings)
    timings["validate_s"] = validation.pop("validate_s", 0.0)
    timings["total_s"] = time.perf_counter() - started
    report = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "passed": validation["passed"],
        "verdict": validation.get("verdict") or ("passed" if validation["passed"] else "failed"),
        "failures": validation["failures"],
        "source": artifact.source,
        "converter": artifact.converter,
        "onnx": onnx_info,
        "tolerance": validation["tolerance"],
        "seed": artifact.seed,
        "notes": artifact.notes,
        "checks": validation["checks"],
        "cases": validation["cases"],
        "timings": {k: round(v, 6) for k, v in timings.items()},
        "versions": {**package_versions(artifact.converter.get("framework_distribution", "")), **artifact.versions},
    }
    if report["verdict"] == "unverified" and not report["passed"]:
        report["verdict"] = "failed"
    for key, value in validation.items():  # later stages may add sections
        report.setdefault(key, value)
    return report


def onnx_info(model, path: str, sha256: str) -> Dict[str, Any]:
    from onnx import helper

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "non-tensor"
            out.append({"name": v.name, "dtype": dtype, "shape": shape})
        return out

    initializers = {i.name for i in model.graph.initializer}
    return {
        "path": path,
        "sha256": sha256,
        "ir_version": int(model.ir_version),
        "opsets": {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import},
        "inputs": describe([i for i in model.graph.input if i.name not in initializers]),
        "outputs": describe(model.graph.output),
    }


def _clean(value):
    """JSON has no NaN/Infinity: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(report: Dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=2, sort_keys=False, default=str) + "\n"


def write(report: Dict[str, Any], path: Path) -> None:
    atomic.write_bytes(Path(path), dumps(report))


def schema() -> Dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of reports."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_errors(report: Dict[str, Any]) -> list:
    """Messages for every place ``report`` (as written to JSON) breaks the schema."""
    import jsonschema  # test/CI dependency only

    validator = jsonschema.Draft202012Validator(schema())
    document = json.loads(dumps(report))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]


def validate_schema(report: Dict[str, Any]) -> None:
    """Raise ValueError listing the schema violations; tests call this on
    every report they produce."""
    errors = schema_errors(report)
    if errors:
        raise ValueError("report does not match report.schema.json:\n  " + "\n  ".join(errors[:20]))
