"""The validation record: the gate's verdict bound to a model's bytes.

``convert`` and ``validate`` write ``MODEL.onnx.onnxgate.json`` next to the
model, passed or failed. ``deploy``, ``serve`` and ``package`` read it back and
refuse a model without a record, with a failed record, or whose bytes no longer
hash to the record's sha256. The record also carries the smoke test: a sample
request built from the validation inputs and the response the validated model
gave in onnxruntime, so a deployed endpoint can be compared with it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core.digest import sha256_bytes, sha256_path
from onnxgate.pipeline.report.model import as_dict, dumps
from onnxgate.pipeline.report.summary import worst
from onnxgate.plugins.errors import UsageError

if TYPE_CHECKING:  # core.session imports numpy: `onnxgate deploy --help` stays light
    from onnxgate.pipeline.core.session import Runtime

RECORD_SUFFIX = ".onnxgate.json"
RECORD_KIND = "onnxgate.validation-record"
RECORD_VERSION = 1
#: Rows kept in the smoke sample when the batch dimension is dynamic.
SMOKE_MAX_ROWS = 32
#: The override's name, everywhere it appears (CLI flag, tags, reports).
OVERRIDE_FLAG = "--deploy-unvalidated-i-know-what-im-doing"


class DeployRefused(UsageError):
    """The gate refuses to ship this model (exit 2, with the reason)."""


def path_for(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + RECORD_SUFFIX)


def _summary(report: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "cases": len(report.get("cases", [])),
        "outputs_compared": sum(len(c.get("outputs", [])) for c in report.get("cases", [])),
        "max_abs_err": worst(report, "max_abs_err"),
        "max_rel_err": worst(report, "max_rel_err"),
        "failures": list(report.get("failures", []))[:10],
    }


def smoke_sample(model_bytes: bytes, cases, runtime: Optional[Runtime] = None) -> Optional[Dict[str, Any]]:
    """Request/response pair from the first validation case, run in onnxruntime.

    The expected response is what the VALIDATED model answered (it matched the
    original within tolerance), encoded exactly as score.py encodes it.
    ``runtime``: the run's sessions and outputs for these very bytes (reused).
    """
    from onnxgate.pipeline.core.session import Runtime
    from onnxgate.pipeline.deployment import score_template

    if not cases:
        return None
    runtime = runtime if runtime is not None and runtime.model_bytes == model_bytes else Runtime(model_bytes)
    session = runtime.session()
    inputs = dict(cases[0].inputs)
    fixed_batch = any(
        i.shape and isinstance(i.shape[0], int) for i in session.get_inputs()
    )
    rows = {k: v[:SMOKE_MAX_ROWS] if getattr(v, "ndim", 0) else v for k, v in inputs.items()}
    whole = fixed_batch or all(getattr(rows[k], "shape", None) == getattr(v, "shape", None) for k, v in inputs.items())
    names = [o.name for o in session.get_outputs()]
    try:
        if whole:  # the validation case itself: its outputs are already known
            found = runtime.run(cases[0])
            values = [found[n] for n in names]
        else:
            inputs, values = rows, session.run(names, rows)
    except Exception:  # a case that failed validation: no smoke test to offer
        return None
    request = {"inputs": {k: score_template.to_json_value(v) for k, v in inputs.items()}}
    response = {"outputs": {n: score_template.to_json_value(v) for n, v in zip(names, values)}}
    # JSON round trip so the stored form is exactly what travels over HTTP.
    return {"request": json.loads(json.dumps(request)), "response": json.loads(json.dumps(response))}


def build(report: Dict[str, Any], model_bytes: bytes, model_name: str, cases=None,
          runtime: Optional[Runtime] = None) -> Dict[str, Any]:
    """The record for ``model_bytes`` from a finished gate report (JSON form)."""
    from onnxgate.pipeline.report.document import package_versions  # importlib.metadata: not for --help

    versions = package_versions()
    return {
        "kind": RECORD_KIND,
        "record_version": RECORD_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": model_name, "sha256": sha256_bytes(model_bytes), "size": len(model_bytes)},
        "passed": bool(report["passed"]),
        # "unverified" (accepted with --accept-unverified) passes, and says so in every tag
        "verdict": report.get("verdict") or ("passed" if report["passed"] else "failed"),
        "summary": _summary(report),
        "tolerance": dict(report.get("tolerance", {})),
        "validated_with": {
            "onnxruntime": versions.get("onnxruntime", ""),
            "onnx": versions.get("onnx", ""),
            "numpy": versions.get("numpy", ""),
            "python": versions.get("python", ""),
            "onnxgate": versions.get("onnxgate", ""),
        },
        "source": {k: report.get("source", {}).get(k, "") for k in ("framework", "framework_version", "sha256", "path")},
        "converter": {k: report.get("converter", {}).get(k, "") for k in ("name", "exporter", "opset")},
        "signature": {k: report.get("onnx", {}).get(k, []) for k in ("inputs", "outputs")},
        "smoke": smoke_sample(model_bytes, cases, runtime) if cases else None,
    }


def write_for(result, model_path: Path) -> Path:
    """Write the record for the model file at ``model_path`` (its bytes on disk)."""
    model_path = Path(model_path)
    data = model_path.read_bytes()
    report = as_dict(result.report)
    validated = report.get("onnx", {}).get("sha256")
    if validated and validated != sha256_bytes(data):
        raise UsageError(f"{model_path}: the file changed while it was being validated; validate it again")
    cases = getattr(result.artifact, "cases", None)
    rec = build(report, data, model_path.name, cases, getattr(result, "runtime", None))
    out = path_for(model_path)
    atomic.write_bytes(out, dumps(rec))
    return out


def load(model_path: Path) -> Dict[str, Any]:
    path = path_for(model_path)
    if not path.is_file():
        raise DeployRefused(
            f"{model_path}: no validation record ({path.name}); run `onnxgate convert` or "
            f"`onnxgate validate SOURCE {model_path}` first"
        )
    try:
        rec = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployRefused(f"{path}: unreadable validation record: {exc}") from None
    if not isinstance(rec, dict) or rec.get("kind") != RECORD_KIND:
        raise DeployRefused(f"{path}: not an onnxgate validation record")
    return rec


@dataclass
class Gate:
    """What the deploy-time gate decided about one model file."""

    model_path: Path
    sha256: str
    record: Optional[Dict[str, Any]]
    #: Non-empty when the user overrode a refusal: the refusal's reason.
    override: str = ""

    @property
    def passed(self) -> bool:
        return not self.override


def check(model_path: Path, allow_unvalidated: bool = False) -> Gate:
    """Refuse (DeployRefused, exit 2) unless a passing record matches the bytes."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UsageError(f"{model_path}: no such model file")
    digest = sha256_path(model_path)
    try:
        rec = load(model_path)
        if rec.get("model", {}).get("sha256") != digest:
            raise DeployRefused(
                f"{model_path}: its bytes changed since validation (sha256 {digest[:12]} != "
                f"recorded {str(rec.get('model', {}).get('sha256', ''))[:12]}); validate it again"
            )
        if not rec.get("passed"):
            why = "; ".join(rec.get("summary", {}).get("failures", [])[:3]) or "see its report"
            raise DeployRefused(f"{model_path}: its validation failed ({why})")
    except DeployRefused as exc:
        if not allow_unvalidated:
            raise DeployRefused(f"{exc} (override: {OVERRIDE_FLAG})") from None
        rec = _try_load(model_path)
        return Gate(model_path, digest, rec if rec and rec.get("model", {}).get("sha256") == digest else None, str(exc))
    return Gate(model_path, digest, rec)


def _try_load(model_path: Path) -> Optional[Dict[str, Any]]:
    try:
        return load(model_path)
    except DeployRefused:
        return None
