"""onnxgate's plugin contract: hook specifications, spec types, the manager.

Third-party converters import from here only::

    from onnxgate.plugins import ConverterSpec, Conversion, UsageError, hookimpl
"""
from .errors import ConversionError, UntrustedSourceError, UsageError
from .hookspecs import hookimpl, hookspec
from .versioning import API_VERSION
from .spec import (
    Conversion,
    ConverterSpec,
    ConvertOptions,
    DeployTargetSpec,
    EnvironmentSpec,
    InputSpec,
    Intermediate,
    Tolerance,
    normalize_name,
)

__all__ = [
    "API_VERSION",
    "Conversion",
    "ConversionError",
    "ConverterSpec",
    "ConvertOptions",
    "DeployTargetSpec",
    "EnvironmentSpec",
    "InputSpec",
    "Intermediate",
    "Tolerance",
    "UntrustedSourceError",
    "UsageError",
    "hookimpl",
    "hookspec",
    "normalize_name",
]
