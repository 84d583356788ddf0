"""Keep third-party noise off the user's terminal unless ``--debug``.

TensorFlow's C++ logging (absl, oneDNN, XNNPACK) writes straight to file
descriptor 2, past Python's ``sys.stderr``, and some of it comes before
``TF_CPP_MIN_LOG_LEVEL`` is read. So the descriptor itself is pointed at
/dev/null while onnxgate runs, and Python's ``sys.stderr`` (onnxgate's own
messages) keeps writing to the real terminal through a duplicate of it.
numpy's RuntimeWarnings (overflow on edge values, empty slices) are
expected findings the report carries, not news for the terminal.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings


@contextlib.contextmanager
def quiet_third_party(debug: bool):
    if debug:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with _native_stderr_to_devnull():
            yield


@contextlib.contextmanager
def _native_stderr_to_devnull():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no descriptor 2 to redirect (embedded interpreters)
        return
    replaced = _writes_to_fd2(sys.stderr)
    old_stderr = sys.stderr
    if replaced:  # onnxgate's own messages go where descriptor 2 went
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0),
                                      encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                                      errors="backslashreplace", line_buffering=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        if replaced:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
