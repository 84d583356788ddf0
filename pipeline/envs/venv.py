"""The one venv builder, its lock and its marker, for both the isolated
framework environments (``envs.isolated``) and the serving environment
(``envs.serving``).

A build is ``python -m venv``, then each pip install step in order (pip's own
output goes to a log file whose last error line ends up in the failure
message), then the marker ``onnxgate-env.json`` written LAST: a folder without
a marker is an unfinished build. Callers hold ``lock`` around a build, so two
concurrent creates build once. Imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from onnxgate.plugins.errors import UsageError

MARKER = "onnxgate-env.json"


def python_of(path: Path) -> Path:
    return Path(path) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker of a finished build; None when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class lock:
    """An exclusive file lock: two concurrent creates build the venv once."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): no cross-process lock
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()


def build(
    path: Path,
    python: str,
    steps: Sequence[Sequence[str]],
    *,
    log_path: Path,
    marker: dict[str, Any],
    constraints: Sequence[str] = (),
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Create the venv at ``path`` with ``python``, ``pip install`` each step
    (under ``constraints``), and write the marker: ``marker`` plus the venv's
    Python version and installed distributions. Returns the marker."""
    path = Path(path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_fh:
        _run([python, "-m", "venv", str(path)], log_fh, "creating the venv")
        env_python = str(python_of(path))
        constraint_args = []
        if constraints:
            cfile = path / "onnxgate-constraints.txt"
            cfile.write_text("\n".join(constraints) + "\n", encoding="utf-8")
            constraint_args = ["-c", str(cfile)]
        for i, step in enumerate(steps, 1):
            log(f"[{i}/{len(steps)}] pip install {' '.join(step)}")
            _run(
                [
                    env_python,
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    *constraint_args,
                    *step,
                ],
                log_fh,
                f"pip install {' '.join(step)}",
            )
    probe = (
        "import json, sys; from importlib import metadata; print(json.dumps([sys.version.split()[0], "
        "{d.metadata['Name']: d.version for d in metadata.distributions()}]))"
    )
    version, found = json.loads(
        subprocess.run([env_python, "-I", "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    data = {
        **marker,
        "python_version": version,
        "packages": {dist_key(name): v for name, v in sorted(found.items())},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (path / MARKER).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def dist_key(name: str) -> str:
    """A distribution name as pip normalises it (``Foo_bar.baz`` -> ``foo-bar-baz``)."""
    return name.lower().replace("_", "-").replace(".", "-")


def _run(cmd, log_fh, what: str) -> None:
    log_fh.write(f"$ {' '.join(cmd)}\n")
    log_fh.flush()
    proc = subprocess.run(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        log_fh.flush()
        raise UsageError(
            f"{what} failed (exit {proc.returncode}): {last_line(Path(log_fh.name))} (full log: {log_fh.name})"
        )


def last_line(path: Path) -> str:
    """The most telling line of a log: its last error line, else its last line."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("ERROR") or "Error" in ln]
    return (errors or lines or [""])[-1][:300]
