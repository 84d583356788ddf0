"""The serving venv: Azure ML's inference server + the validating onnxruntime.

``azureml-inference-server-http`` pins flask, pydantic and opentelemetry in
ways that fight ``azure-ai-ml`` inside one venv, so the server runs from its
own venv, one per onnxruntime version (a model is served by the onnxruntime
release that validated it). Created by ``onnxgate serve --setup``.

Location: ``$ONNXGATE_SERVING_HOME/ort-<version>``; the default home is
``$ONNXGATE_HOME/serving`` (``~/.local/share/onnxgate/serving``).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from onnxgate.plugins.errors import UsageError

HOME_ENV = "ONNXGATE_SERVING_HOME"
#: The server Azure ML's inference images run; the venv pins it.
SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
NUMPY_REQUIREMENT = "numpy>=1.24,<3"
#: The Python minor version the Azure environment file asks for.
PYTHON_VERSION = "3.11"


def home() -> Path:
    """``$ONNXGATE_SERVING_HOME``, else ``serving/`` under onnxgate's home."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    from onnxgate.pipeline.envs.isolated import home as onnxgate_home

    return onnxgate_home() / "serving"


def current_onnxruntime() -> str:
    from importlib import metadata

    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return ""


def venv_dir(ort_version: str) -> Path:
    return home() / f"ort-{ort_version}"


def requirements(ort_version: str) -> list:
    return [SERVER_REQUIREMENT, f"onnxruntime=={ort_version}", NUMPY_REQUIREMENT]


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def find(ort_version: str) -> Path:
    """The ready venv for ``ort_version``, or a UsageError saying how to make it."""
    venv = venv_dir(ort_version)
    if not (venv / ".onnxgate-ready").is_file():
        raise UsageError(
            f"no serving environment for onnxruntime {ort_version} at {venv}; create it with "
            f"`onnxgate serve --setup --onnxruntime {ort_version}` (needs PyPI, ~30 s)"
        )
    return venv


def create(ort_version: Optional[str] = None, python: Optional[str] = None, quiet: bool = False) -> Path:
    """Create (or complete) the venv. Idempotent: a ready venv is left alone."""
    ort_version = ort_version or current_onnxruntime()
    if not ort_version:
        raise UsageError("no onnxruntime version given and none installed here; pass --onnxruntime VERSION")
    venv = venv_dir(ort_version)
    marker = venv / ".onnxgate-ready"
    if marker.is_file():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    # built in place (a renamed venv keeps the old path in its scripts' shebangs,
    # and the server is started through bin/gunicorn); the marker is written
    # last, so an interrupted create is finished by the next one
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():  # built by someone else while we waited
            return venv
        _build(venv, marker, ort_version, python, quiet)
    return venv


def _build(venv: Path, marker: Path, ort_version: str, python: Optional[str], quiet: bool) -> None:
    started = time.perf_counter()
    # from the base interpreter, not from inside onnxgate's own venv
    base = python or getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        # the pip that a fresh venv ships sometimes crashes resolving Azure packages
        [str(python_of(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip>=24"],
        [str(python_of(venv)), "-m", "pip", "install", "-q", *requirements(ort_version)],
    ]
    for step in steps:
        if not quiet:
            print("+ " + " ".join(step), file=sys.stderr)
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise UsageError(f"creating the serving environment failed at `{' '.join(step[:4])} ...`: "
                             f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    marker.write_text(f"{' '.join(requirements(ort_version))}\n", "utf-8")
    if not quiet:
        print(f"serving environment ready at {venv} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
