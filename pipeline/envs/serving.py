"""The serving venv: Azure ML's inference server + the validating onnxruntime.

``azureml-inference-server-http`` pins flask, pydantic and opentelemetry in
ways that fight ``azure-ai-ml`` inside one venv, so the server runs from its
own venv, one per onnxruntime version (a model is served by the onnxruntime
release that validated it). Created by ``onnxgate serve --setup`` with the
builder the isolated environments use (``envs.venv``), in place.

Location: ``$ONNXGATE_SERVING_HOME/ort-<version>``; the default home is
``$ONNXGATE_HOME/serving`` (``~/.local/share/onnxgate/serving``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from onnxgate.pipeline.envs import venv
from onnxgate.pipeline.envs.isolated import home as onnxgate_home
from onnxgate.pipeline.envs.venv import lock, read_marker
from onnxgate.plugins.errors import UsageError

HOME_ENV = "ONNXGATE_SERVING_HOME"
#: The server Azure ML's inference images run; the venv pins it.
SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
NUMPY_REQUIREMENT = "numpy>=1.24,<3"
#: The Python minor version the Azure environment file asks for.
PYTHON_VERSION = "3.11"
#: What marked a finished serving venv before ``envs.venv``'s marker.
LEGACY_MARKER = ".onnxgate-ready"


def home() -> Path:
    """``$ONNXGATE_SERVING_HOME``, else ``serving/`` under onnxgate's home."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
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


def install_steps(ort_version: str) -> list:
    """pip install steps, in order."""
    # the pip that a fresh venv ships sometimes crashes resolving Azure packages
    return [["--upgrade", "pip>=24"], requirements(ort_version)]


def is_ready(path: Path) -> bool:
    """Built to the end: the builder's marker (or, for a venv built before
    onnxgate used one builder for every venv, its old ``.onnxgate-ready``)."""
    return read_marker(path) is not None or (path / LEGACY_MARKER).is_file()


def find(ort_version: str) -> Path:
    """The ready venv for ``ort_version``, or a UsageError saying how to make it."""
    venv = venv_dir(ort_version)
    if not is_ready(venv):
        raise UsageError(
            f"no serving environment for onnxruntime {ort_version} at {venv}; create it with "
            f"`onnxgate serve --setup --onnxruntime {ort_version}` (needs PyPI, ~30 s)"
        )
    return venv


def create(ort_version: str | None = None, python: str | None = None, quiet: bool = False) -> Path:
    """Create (or complete) the venv. Idempotent: a ready venv is left alone."""
    ort_version = ort_version or current_onnxruntime()
    if not ort_version:
        raise UsageError("no onnxruntime version given and none installed here; pass --onnxruntime VERSION")
    path = venv_dir(ort_version)
    if is_ready(path):
        return path
    # built in place (a renamed venv keeps the old path in its scripts' shebangs,
    # and the server is started through bin/gunicorn); the marker is written
    # last, so an interrupted create is finished by the next one
    with lock(path.parent / f".{path.name}.lock"):
        if is_ready(path):  # built by someone else while we waited
            return path
        started = time.perf_counter()
        # from the base interpreter, not from inside onnxgate's own venv
        base = python or getattr(sys, "_base_executable", None) or sys.executable
        say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
        venv.build(
            path,
            base,
            install_steps(ort_version),
            log_path=path.parent / ".logs" / f"{path.name}.log",
            marker={"name": f"serving {path.name}", "requirements": requirements(ort_version)},
            log=say,
        )
        say(f"serving environment ready at {path} ({time.perf_counter() - started:.0f} s)")
    return path
