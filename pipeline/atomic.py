"""Atomic file output: a failed or interrupted run leaves no partial file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from .errors import UsageError


def check_writable(path: Path) -> None:
    """Fail early (before any costly work) when ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"output {path}: is a directory")
    if not parent.is_dir():
        raise UsageError(f"output {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output {path}: folder {parent} is not writable")


def write_bytes(path: Path, data: Union[bytes, str]) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    check_writable(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
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
