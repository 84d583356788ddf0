"""The ``local`` deploy target: file registry + Azure ML's server on 127.0.0.1.

register (numbered version, same bytes = same version) -> package (once per
version) -> start the server from the serving venv -> wait healthy -> smoke
test -> stop, unless ``keep_running``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from onnxgate.pipeline.deployment import package as package_mod
from onnxgate.pipeline.deployment import record as record_mod
from onnxgate.pipeline.deployment import serve
from onnxgate.pipeline.deployment.record import Gate
from onnxgate.pipeline.deployment.registry import LocalRegistry, Version
from onnxgate.pipeline.deployment.service import DeployRequest
from onnxgate.pipeline.envs import serving as serving_env


def validated_sha256(version: Version, gate: Gate) -> str:
    """What the served bytes must hash to: the version's validation record
    (never meta.json, which anyone editing the registry can edit too), or,
    for an override without a record, the bytes the user handed over."""
    return (version.record or {}).get("model", {}).get("sha256") or gate.sha256


def ensure_package(version: Version, gate: Gate) -> Path:
    """The version's package folder, built on first use (atomically); a
    package already there is verified against the record before it is reused."""
    expected = validated_sha256(version, gate)
    pkg = version.path / "package"
    if (pkg / "manifest.json").is_file():
        got = record_mod.sha256_model(pkg / "model" / package_mod.MODEL_FILE)
        if got != expected:
            raise record_mod.DeployRefused(
                f"{pkg}: the package's model (sha256 {got[:12]}) is not the validated model ({expected[:12]}); "
                "remove the package folder to rebuild it from the registry"
            )
        return pkg
    package_mod.build(Gate(version.model_path, expected, version.record or gate.record, gate.override), pkg)
    return pkg


def gate_for_version(version: Version, allow_unvalidated: bool) -> Gate:
    """The gate for a registered version: its files hashed now, against its record."""
    digest = record_mod.sha256_model(version.model_path)
    rec = version.record
    problem = ""
    if not rec:
        problem = "it has no validation record"
    elif rec.get("model", {}).get("sha256") != digest:
        problem = (
            f"its bytes are not the validated model's (sha256 {digest[:12]} != recorded "
            f"{str(rec.get('model', {}).get('sha256', ''))[:12]})"
        )
    elif not rec.get("passed"):
        problem = "its validation failed"
    elif not record_mod._signature_ok(rec, version.path / "validation-record.json"):
        problem = f"its validation record's signature does not match {record_mod.KEY_ENV}"
    gate = Gate(version.model_path, digest, rec if not problem else None, problem)
    if problem and not allow_unvalidated:
        raise record_mod.DeployRefused(
            f"{version.name}:{version.version} in {version.path.parent.parent}: "
            f"{problem} (override: {record_mod.OVERRIDE_FLAG})"
        )
    return gate


def ort_version(gate: Gate) -> str:
    return package_mod.ort_version_of(gate)


def deploy(request: DeployRequest) -> dict[str, Any]:
    opts = request.options
    registry = LocalRegistry(opts.get("registry"))
    gate, log = request.gate, request.log
    ort = ort_version(gate)
    venv = serving_env.venv_dir(ort)
    if request.dry_run:
        existing = registry.find_bytes(request.name, gate.sha256)
        plan = [
            f"register {request.name} in {registry.root}: "
            + (
                f"exists as version {existing.version} (unchanged)"
                if existing
                else f"new version {max((v.version for v in registry.versions(request.name)), default=0) + 1}"
            ),
            f"package: model.onnx, code/score.py, environment (onnxruntime=={ort}, {serving_env.SERVER_REQUIREMENT})",
            f"start: {' '.join(serve.command(venv, opts.get('port') or 0))} (port 0 = a free port)",
            "smoke test: POST the record's sample request, compare with the validated outputs",
            "leave the server running" if opts.get("keep_running") else "stop the server",
        ]
        for line in plan:
            log(f"[dry-run] {line}")
        return {"dry_run": True, "plan": plan, "passed": True}

    venv = serve.ensure_venv_for(ort)
    version = registry.register(gate, request.name)
    log(
        f"registered {request.name} version {version.version}"
        + ("" if version.created else " (these bytes were already registered)")
        + f" at {version.path}"
    )
    pkg = ensure_package(version, gate)
    t0 = time.perf_counter()
    server = serve.start(
        pkg,
        venv,
        port=opts.get("port"),
        workers=int(opts.get("workers") or 1),
        expected_sha256=validated_sha256(version, gate),
    )
    started_s = time.perf_counter() - t0
    log(f"server healthy at {server.url} (pid {server.pid}, {started_s:.1f} s)")
    result: dict[str, Any] = {
        "registry": str(registry.root),
        "name": request.name,
        "version": version.version,
        "registered": version.created,
        "package": str(pkg),
        "scoring_uri": server.scoring_uri,
        "server_log": str(server.log_path),
        "startup_s": round(started_s, 3),
    }
    try:
        result["smoke_test"] = run_smoke(server.scoring_uri, gate, version, log)
    except BaseException:
        server.stop()
        raise
    if server.process.poll() is not None:  # answered, then died: nothing is serving
        raise serve.ServeError(
            f"the server exited (code {server.process.returncode}) after the smoke test; log:\n{server.log_tail()}"
        )
    if opts.get("keep_running"):
        server.detach()
        result.update(pid=server.pid, running=True)
        if request.keep_server is not None:
            request.keep_server(server)
        log(f"left running: {server.scoring_uri} (stop it with: kill {server.pid})")
    else:
        server.stop()
        result["running"] = False
    result["passed"] = True
    return result


def run_smoke(scoring_uri: str, gate: Gate, version: Version | None, log) -> dict[str, Any]:
    rec = (version.record if version else None) or gate.record
    if not (rec or {}).get("smoke") and gate.override:
        log("WARNING: no validated sample for this model: the smoke test could not run")
        return {"passed": None, "message": "not run: no validation record (override)"}
    smoke = serve.smoke_test(scoring_uri, rec)
    log(f"smoke test passed: {smoke.message}")
    return smoke.as_dict()
