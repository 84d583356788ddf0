"""Errors that end a run, each with the exit code the CLI documents."""

EXIT_OK = 0
EXIT_VALIDATION_FAILED = 1
EXIT_USAGE = 2
EXIT_CONVERSION_FAILED = 3


class OnnxgateError(Exception):
    """A failure the user can act on; the CLI prints it as one line."""

    exit_code = EXIT_USAGE


class UsageError(OnnxgateError):
    """Bad arguments or bad input: unreadable source, bad sample, bad path."""

    exit_code = EXIT_USAGE


class UntrustedSourceError(UsageError):
    """Loading the source would unpickle (run code) and it is not trusted."""


class ConversionError(OnnxgateError):
    """The converter failed, or produced a model onnxruntime cannot use."""

    exit_code = EXIT_CONVERSION_FAILED


class ValidationFailed(OnnxgateError):
    """Raised by callers that want an exception instead of ``passed=False``."""

    exit_code = EXIT_VALIDATION_FAILED
