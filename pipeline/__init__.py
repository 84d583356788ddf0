"""onnxgate's engine, by stage: ``conversion`` (stage 1), ``gate`` (stage 2),
``deployment`` (stage 3), with ``report``, ``envs``, ``batch`` and ``cli``.
See docs/architecture.md.

The public Python API is re-exported here; it is imported lazily so that
importing the CLI stays cheap.
"""

from typing import TYPE_CHECKING, Any

from onnxgate.plugins.errors import (
    ConversionError,
    OnnxgateError,
    UntrustedSourceError,
    UsageError,
    ValidationFailed,
)

__all__ = [
    "AzureMLDeployment",
    "ConversionError",
    "DeployRefused",
    "Deployment",
    "GateConfig",
    "LocalDeployment",
    "OnnxgateError",
    "OutputRule",
    "Result",
    "Tolerance",
    "UntrustedSourceError",
    "UsageError",
    "ValidationFailed",
    "convert",
    "deploy",
    "register",
    "validate",
]

if TYPE_CHECKING:  # what type checkers see; at run time the names load lazily
    from onnxgate.pipeline.api import Result, convert, validate
    from onnxgate.pipeline.deployment.handles import (
        AzureMLDeployment,
        Deployment,
        LocalDeployment,
        deploy,
        register,
    )
    from onnxgate.pipeline.deployment.record import DeployRefused
    from onnxgate.pipeline.gate.config import GateConfig, OutputRule
    from onnxgate.plugins.spec import Tolerance

#: name -> module it lives in (imported on first use).
_LAZY = {
    "convert": "onnxgate.pipeline.api",
    "validate": "onnxgate.pipeline.api",
    "Result": "onnxgate.pipeline.api",
    "deploy": "onnxgate.pipeline.deployment.handles",
    "register": "onnxgate.pipeline.deployment.handles",
    "Deployment": "onnxgate.pipeline.deployment.handles",
    "LocalDeployment": "onnxgate.pipeline.deployment.handles",
    "AzureMLDeployment": "onnxgate.pipeline.deployment.handles",
    "DeployRefused": "onnxgate.pipeline.deployment.record",
    "GateConfig": "onnxgate.pipeline.gate.config",
    "OutputRule": "onnxgate.pipeline.gate.config",
    "Tolerance": "onnxgate.plugins.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
