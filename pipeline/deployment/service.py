"""``deploy``: the gate, then a deploy target (``local``, ``azureml``, plugins).

The gate runs here, once, for every target: a model without a passing
validation record bound to its bytes is refused (exit 2) unless the loudly
named override is given, and then the override travels to the target, which
records it in the registered model's tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.pipeline.deployment import record as record_mod
from onnxgate.plugins.errors import EXIT_CONVERSION_FAILED, OnnxgateError, UsageError
from onnxgate.plugins.manager import Registry, missing_requirements


class DeployError(OnnxgateError):
    """The service or the server reported a failure (exit 3), with its message."""

    exit_code = EXIT_CONVERSION_FAILED


@dataclass
class DeployRequest:
    """What a target's ``deploy(request)`` receives."""

    gate: record_mod.Gate
    name: str
    dry_run: bool = False
    #: Target-specific settings (``--registry``, ``--endpoint``...), by option name.
    options: dict[str, Any] = field(default_factory=dict)
    #: Where progress lines go (a callable taking one str); print by default.
    log: Any = print
    #: Called with the server a target leaves running (``keep_running``), so
    #: a Python caller can hold and stop it (``deployment.handles``).
    keep_server: Any = None

    @property
    def record(self) -> dict[str, Any] | None:
        return self.gate.record


def default_name(model_path: Path) -> str:
    import re

    stem = Path(model_path).name.split(".")[0] or "model"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:100]


def check(model_path: Path, allow_unvalidated: bool = False) -> record_mod.Gate:
    gate = record_mod.check(Path(model_path), allow_unvalidated=allow_unvalidated)
    if gate.override:
        import sys

        print(
            f"onnxgate: WARNING: deploying a model the gate refused ({gate.override}); "
            f"{record_mod.OVERRIDE_FLAG} is recorded in its tags",
            file=sys.stderr,
        )
    return gate


def deploy(
    model_path: Path,
    target: str = "local",
    *,
    name: str | None = None,
    dry_run: bool = False,
    allow_unvalidated: bool = False,
    options: dict[str, Any] | None = None,
    registry=None,
    log=print,
    keep_server=None,
) -> dict[str, Any]:
    """Check the gate and hand the model to ``target``; returns the target's result dict."""
    registry = registry or Registry()
    try:
        spec = registry.deploy_target(target)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    gate = check(model_path, allow_unvalidated)
    missing = missing_requirements(spec.requires)
    if missing and not dry_run:
        raise UsageError(f"deploy target {spec.name!r} needs {', '.join(missing)}: pip install 'onnxgate[{spec.name}]'")
    request = DeployRequest(
        gate=gate,
        name=name or default_name(model_path),
        dry_run=dry_run,
        options=dict(options or {}),
        log=log,
        keep_server=keep_server,
    )
    result = spec.deploy(request)
    result.setdefault("target", spec.name)
    result.setdefault("model", {"path": str(model_path), "sha256": gate.sha256})
    result.setdefault("gate", {"passed": gate.passed, "override": gate.override})
    return result
