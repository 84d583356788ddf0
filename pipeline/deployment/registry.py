"""A file registry of validated models: ``ROOT/NAME/VERSION/``.

Each version folder holds ``model.onnx``, ``validation-record.json`` and
``meta.json``. Versions are 1, 2, 3... A version is written in a temporary
folder and renamed into place, so it appears whole or not at all, and an
existing version is never overwritten. Registering bytes already registered
under the name returns that version. A lock file serialises writers.

Default root: ``$ONNXGATE_REGISTRY`` or ``$XDG_DATA_HOME/onnxgate/registry``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.deployment.record import OVERRIDE_FLAG, Gate, copy_model
from onnxgate.plugins.errors import UsageError

ROOT_ENV = "ONNXGATE_REGISTRY"
MODEL_FILE = "model.onnx"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def default_root() -> Path:
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "onnxgate" / "registry"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    return name


@dataclass
class Version:
    name: str
    version: int
    path: Path
    meta: dict[str, Any]
    created: bool = False  # True when this call registered it

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def record(self) -> dict[str, Any] | None:
        p = self.path / "validation-record.json"
        return json.loads(p.read_text("utf-8")) if p.is_file() else None

    @property
    def sha256(self) -> str:
        return self.meta["model_sha256"]


class LocalRegistry:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_root()

    @contextmanager
    def _lock(self, name: str):
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def versions(self, name: str) -> list[Version]:
        folder = self.root / check_name(name)
        out = []
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name.isdigit() and (child / "meta.json").is_file():
                    meta = json.loads((child / "meta.json").read_text("utf-8"))
                    out.append(Version(name, int(child.name), child, meta))
        return sorted(out, key=lambda v: v.version)

    def get(self, name: str, version: int | None = None) -> Version:
        versions = self.versions(name)
        if not versions:
            raise UsageError(f"no model {name!r} in the registry at {self.root}")
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        raise UsageError(f"model {name!r} has no version {version} (has {[v.version for v in versions]})")

    def find_bytes(self, name: str, sha256: str) -> Version | None:
        for v in self.versions(name):
            if v.sha256 == sha256:
                return v
        return None

    def register(self, gate: Gate, name: str) -> Version:
        """Register the checked model; the same bytes give back the existing version.
        A registry that cannot be written (read-only, full disk) is exit 2."""
        check_name(name)
        try:
            return self._register(gate, name)
        except OSError as exc:
            raise UsageError(f"registry {self.root}: cannot write: {exc.strerror or exc}") from None

    def _register(self, gate: Gate, name: str) -> Version:
        with self._lock(name) as folder:
            existing = self.find_bytes(name, gate.sha256)
            if existing is not None:
                return existing
            number = max((v.version for v in self.versions(name)), default=0) + 1
            atomic.clean_stale(folder, ".register.")  # left by a killed run (we hold the lock)
            tmp = atomic.temp_dir(folder, f".register.{os.getpid()}.")
            try:
                if copy_model(gate.model_path, tmp, MODEL_FILE) != gate.sha256:  # with its external data
                    raise UsageError(f"{gate.model_path}: changed while it was being registered")
                if gate.record:
                    (tmp / "validation-record.json").write_text(json.dumps(gate.record, indent=2) + "\n", "utf-8")
                meta = metadata(gate, name, number)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
                target = folder / str(number)
                # rename onto a missing name only: never replaces a version
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return Version(name, number, target, meta, created=True)


def metadata(gate: Gate, name: str, version: int) -> dict[str, Any]:
    rec = gate.record or {}
    return {
        "name": name,
        "version": version,
        "registered": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_sha256": gate.sha256,
        "source_file": str(gate.model_path),
        "verdict": rec.get("verdict", "none"),
        "onnxruntime": rec.get("validated_with", {}).get("onnxruntime", ""),
        "tags": tags(gate),
    }


def tags(gate: Gate) -> dict[str, str]:
    """Flat string tags shared by every target (Azure ML tags are strings too)."""
    rec = gate.record or {}
    summary = rec.get("summary", {})
    out = {
        "onnxgate.model_sha256": gate.sha256,
        "onnxgate.verdict": rec.get("verdict", "none"),
        "onnxgate.onnxruntime": rec.get("validated_with", {}).get("onnxruntime", ""),
        "onnxgate.max_abs_err": f"{summary.get('max_abs_err', '')}",
        "onnxgate.source_sha256": rec.get("source", {}).get("sha256", ""),
        "onnxgate.framework": rec.get("source", {}).get("framework", ""),
        "onnxgate.converter": rec.get("converter", {}).get("name", ""),
    }
    if gate.override:
        out["onnxgate.override"] = OVERRIDE_FLAG
        out["onnxgate.override_reason"] = gate.override[:250]
    return out
