"""Atomic file output: a failed or interrupted run leaves no partial file.

Files and folders end with the permissions a plain ``open(path, "w")`` or
``mkdir`` would give (0666/0777 minus the umask), not mkstemp's 0600/0700, so
a model folder can be shared or copied into a container.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def umask() -> int:
    """The process umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # the portable way: set and restore at once
    os.umask(current)
    return current


def file_mode() -> int:
    return 0o666 & ~umask()


def temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh folder in ``parent`` to fill and then rename into place,
    with a plain ``mkdir``'s permissions."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~umask())
    return path


def write_bytes(path: Path, data: bytes | str) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    check_writable(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        clean_stale(path.parent or Path("."), f".{path.name}.", ".", suffix=".tmp")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise UsageError(f"output {path}: cannot write: {exc.strerror}") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # a full disk, a read-only mount: an unusable output place
            raise UsageError(f"output {path}: cannot write: {exc.strerror or exc}") from None
        raise


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_stale(folder: Path, prefix: str, separator: str = ".", suffix: str = "") -> list[Path]:
    """Remove temp files and folders named ``PREFIX<pid><separator>...SUFFIX``
    whose process is gone (left by a killed run); the paths removed."""
    import shutil

    removed: list[Path] = []
    try:
        candidates = [p for p in Path(folder).iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)]
    except OSError:
        return removed
    for path in candidates:
        pid = path.name[len(prefix) :].split(separator, 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
