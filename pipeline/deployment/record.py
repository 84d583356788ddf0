"""The validation record: the gate's verdict bound to a model's bytes.

``convert`` and ``validate`` write ``MODEL.onnx.onnxgate.json`` next to the
model, passed or failed. ``deploy``, ``serve`` and ``package`` read it back and
refuse a model without a record, with a failed record, or whose bytes no longer
hash to the record's sha256. The record also carries the smoke test: a sample
request built from the validation inputs and the response the validated model
gave in onnxruntime, so a deployed endpoint can be compared with it.

The model's sha256 covers every file that makes it up: the .onnx file's own
sha256 when it has no external data, otherwise the sha256 of
``{"onnx": sha, "external": {location: sha}}`` (``sha256_model``; score.py
computes the same). The record is plain JSON: with ``ONNXGATE_RECORD_KEY``
set it is signed (HMAC-SHA256) when written and verified by the gate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
#: A shared secret: records are signed with it, and the gate requires a valid signature.
KEY_ENV = "ONNXGATE_RECORD_KEY"


class DeployRefused(UsageError):
    """The gate refuses to ship this model (exit 2, with the reason)."""


def path_for(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + RECORD_SUFFIX)


def external_locations(model_path: Path) -> list:
    """Relative paths of the model's external-data files (none for most models)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # not an ONNX file: the gate refuses it elsewhere
        return []
    folder = Path(model_path).resolve().parent
    found = []
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or folder not in target.parents:
            raise UsageError(f"{model_path}: external data {location!r} lies outside the model's folder")
        if location not in found:
            found.append(location)
    return sorted(found)


def model_files(model_path: Path) -> dict[str, Any]:
    """``{"onnx": sha256, "external": {location: sha256}}`` of every file of the model."""
    model_path = Path(model_path)
    external = {}
    for location in external_locations(model_path):
        path = model_path.parent / location
        if not path.is_file():
            raise UsageError(f"{model_path}: its external data file {location} is missing")
        external[location] = sha256_path(path)
    return {"onnx": sha256_path(model_path), "external": external}


def sha256_model(model_path: Path) -> str:
    """The one hash of a model on disk, external data included (see the module doc)."""
    from onnxgate.pipeline.deployment.score_template import model_digest

    return model_digest(model_files(model_path))


def copy_model(model_path: Path, folder: Path, name: str) -> str:
    """Copy the model as ``folder/name`` with its external-data files; the copy's sha256."""
    import shutil

    model_path = Path(model_path)
    shutil.copyfile(model_path, folder / name)
    for location in external_locations(model_path):
        (folder / location).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path.parent / location, folder / location)
    return sha256_model(folder / name)


def signature(rec: dict[str, Any], key: str) -> str:
    body = json.dumps({k: v for k, v in rec.items() if k != "hmac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with an ``hmac`` entry when ONNXGATE_RECORD_KEY is set (unchanged otherwise)."""
    key = os.environ.get(KEY_ENV)
    if not key:
        return rec
    rec = json.loads(json.dumps({k: v for k, v in rec.items() if k != "hmac"}))  # exactly what is read back
    rec["hmac"] = {"alg": "hmac-sha256", "value": signature(rec, key)}
    return rec


def verify_signature(rec: dict[str, Any], where: Path) -> None:
    key = os.environ.get(KEY_ENV)
    if not key:
        return
    mac = rec.get("hmac")
    if not isinstance(mac, dict) or not mac.get("value"):
        raise DeployRefused(f"{where}: the validation record is not signed, and {KEY_ENV} is set")
    if not hmac.compare_digest(str(mac["value"]), signature(rec, key)):
        raise DeployRefused(
            f"{where}: the validation record's signature does not match {KEY_ENV} (edited, or signed with another key)"
        )


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "cases": len(report.get("cases", [])),
        "outputs_compared": sum(len(c.get("outputs", [])) for c in report.get("cases", [])),
        "max_abs_err": worst(report, "max_abs_err"),
        "max_rel_err": worst(report, "max_rel_err"),
        "failures": list(report.get("failures", []))[:10],
    }


def smoke_sample(model_bytes: bytes | str, cases, runtime: Runtime | None = None) -> dict[str, Any] | None:
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
    fixed_batch = any(i.shape and isinstance(i.shape[0], int) for i in session.get_inputs())
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


def build(
    report: dict[str, Any],
    model_bytes: bytes,
    model_name: str,
    cases=None,
    runtime: Runtime | None = None,
    files: dict[str, Any] | None = None,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """The record for ``model_bytes`` (with its external-data ``files``) from a
    finished gate report (JSON form). ``runtime``: the run's sessions, reused."""
    from onnxgate.pipeline.deployment.score_template import model_digest
    from onnxgate.pipeline.report.document import package_versions  # importlib.metadata: not for --help

    versions = package_versions()
    files = files or {"onnx": sha256_bytes(model_bytes), "external": {}}
    # a model with external data loads from its path (the bytes alone lack the weights)
    session_source = str(model_path) if files["external"] and model_path else model_bytes
    return {
        "kind": RECORD_KIND,
        "record_version": RECORD_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"file": model_name, "sha256": model_digest(files), "size": len(model_bytes), "files": files},
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
        "source": {
            k: report.get("source", {}).get(k, "") for k in ("framework", "framework_version", "sha256", "path")
        },
        "converter": {k: report.get("converter", {}).get(k, "") for k in ("name", "exporter", "opset")},
        "signature": {k: report.get("onnx", {}).get(k, []) for k in ("inputs", "outputs")},
        "smoke": smoke_sample(session_source, cases, runtime if session_source is model_bytes else None)
        if cases
        else None,
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
    files = model_files(model_path)
    rec = sign(
        build(
            report, data, model_path.name, cases, getattr(result, "runtime", None), files=files, model_path=model_path
        )
    )
    out = path_for(model_path)
    atomic.write_bytes(out, dumps(rec))
    return out


def load(model_path: Path) -> dict[str, Any]:
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
    record: dict[str, Any] | None
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
    digest = sha256_model(model_path)
    try:
        rec = load(model_path)
        verify_signature(rec, path_for(model_path))
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
        loaded = _try_load(model_path)
        trusted = loaded and loaded.get("model", {}).get("sha256") == digest and _signature_ok(loaded, model_path)
        return Gate(model_path, digest, loaded if trusted else None, str(exc))
    return Gate(model_path, digest, rec)


def _signature_ok(rec: dict[str, Any], model_path: Path) -> bool:
    try:
        verify_signature(rec, model_path)
    except DeployRefused:
        return False
    return True


def _try_load(model_path: Path) -> dict[str, Any] | None:
    try:
        return load(model_path)
    except DeployRefused:
        return None
