"""onnxgate's engine, by stage: ``conversion`` (stage 1), ``gate`` (stage 2),
``deployment`` (stage 3), with ``report``, ``envs``, ``batch`` and ``cli``.
See docs/architecture.md.

The public Python API is re-exported here; it is imported lazily so that
importing the CLI stays cheap.
"""
from typing import Any

from onnxgate.plugins.errors import (
    ConversionError,
    OnnxgateError,
    UntrustedSourceError,
    UsageError,
    ValidationFailed,
)

__all__ = [
    "ConversionError",
    "OnnxgateError",
    "Result",
    "UntrustedSourceError",
    "UsageError",
    "ValidationFailed",
    "convert",
    "validate",
]

_API = ("convert", "validate", "Result")


def __getattr__(name: str) -> Any:
    if name in _API:
        from onnxgate.pipeline import api

        return getattr(api, name)
    raise AttributeError(name)
