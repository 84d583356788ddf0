"""onnxgate's plugin contract: hook specifications, spec types, errors, helpers.

Plugins and the built-in converters import from here only::

    from onnxgate.plugins import ConverterSpec, Conversion, UsageError, hookimpl
"""

from .detect import read_head, type_paths
from .errors import (
    EXIT_CONVERSION_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VALIDATION_FAILED,
    ConversionError,
    OnnxgateError,
    UntrustedSourceError,
    UsageError,
    ValidationFailed,
)
from .helpers import distribution_version, graph_inputs, installed_distribution, one_line
from .hookspecs import hookimpl, hookspec
from .options import OptionSpec, parse_options
from .spec import (
    CompareContext,
    CompareRule,
    Conversion,
    ConverterSpec,
    ConvertOptions,
    DeployTargetSpec,
    EnvironmentSpec,
    InputSpec,
    Intermediate,
    ReportFormat,
    Tolerance,
    normalize_name,
)
from .versioning import API_VERSION

__all__ = [
    "API_VERSION",
    "CompareContext",
    "CompareRule",
    "Conversion",
    "ConversionError",
    "ConvertOptions",
    "ConverterSpec",
    "DeployTargetSpec",
    "EXIT_CONVERSION_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VALIDATION_FAILED",
    "EnvironmentSpec",
    "InputSpec",
    "Intermediate",
    "OnnxgateError",
    "OptionSpec",
    "ReportFormat",
    "Tolerance",
    "UntrustedSourceError",
    "UsageError",
    "ValidationFailed",
    "distribution_version",
    "graph_inputs",
    "hookimpl",
    "hookspec",
    "installed_distribution",
    "normalize_name",
    "one_line",
    "parse_options",
    "read_head",
    "type_paths",
]
