"""Atomic file output: a failed or interrupted run leaves no partial file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from onnxgate.plugins.errors import UsageError


def check_writable(path: Path) -> None:
    """Fail early (before any costly work) when ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"output {path}: is a directory")
    if not parent.is_dir():
        raise UsageError(f"output {path}: folder {parent} does not exist")
    # probe with a real file: os.access says yes to root on read-only mounts
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxgate-probe-", dir=parent)
    except OSError as exc:
        raise UsageError(f"output {path}: folder {parent} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def write_bytes(path: Path, data: Union[bytes, str]) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    check_writable(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise UsageError(f"output {path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
