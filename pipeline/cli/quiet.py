"""Keep third-party noise off the user's terminal unless ``--debug``.

TensorFlow's C++ logging (absl, oneDNN, XNNPACK) writes straight to file
descriptor 2, past Python's ``sys.stderr``, and some of it comes before
``TF_CPP_MIN_LOG_LEVEL`` is read; torch's TorchScript exporter prints a
whole IR graph to descriptor 1 when it fails. So both descriptors are
pointed at /dev/null while a conversion runs, and Python's ``sys.stdout``
and ``sys.stderr`` (onnxgate's own messages) keep writing to the real
terminal through duplicates of them.
numpy's RuntimeWarnings (overflow on edge values, empty slices) are
expected findings the report carries, not news for the terminal; the
frameworks' FutureWarnings (scikit-learn's deprecations, read by the
converters) are about the user's library, not this conversion.
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
        warnings.simplefilter("ignore", FutureWarning)
        with _native_to_devnull(1, "stdout"), _native_to_devnull(2, "stderr"):
            yield


@contextlib.contextmanager
def _native_to_devnull(fd: int, attr: str):
    stream = getattr(sys, attr)
    try:
        stream.flush()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        yield  # no such descriptor to redirect (embedded interpreters)
        return
    replaced = _writes_to(stream, fd)
    if replaced:  # onnxgate's own messages go where the descriptor went
        setattr(
            sys,
            attr,
            io.TextIOWrapper(
                os.fdopen(os.dup(saved), "wb", buffering=0),
                encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="backslashreplace",
                line_buffering=True,
            ),
        )
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    try:
        yield
    finally:
        if replaced:
            getattr(sys, attr).flush()
            getattr(sys, attr).close()
            setattr(sys, attr, stream)
        os.dup2(saved, fd)
        os.close(saved)


def _writes_to(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
