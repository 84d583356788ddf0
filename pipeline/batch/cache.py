"""Results keyed by content, so a rerun skips what is already done.

A model's key is the sha256 of: its source (file or folder), sample, expected
and golden files; the entry's options; the gate configuration; and the
versions of onnxgate, the converter, the framework and onnxruntime. A
finished result (passed or failed) is a small JSON record under
``OUT/.onnxgate-batch/``, written atomically after the model's outputs, so a
killed run leaves either a complete result or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.report.document import onnxgate_version
from onnxgate.plugins.manager import distribution_version

STATE_DIR = ".onnxgate-batch"
#: The record format; bump it when rows change meaning.
RECORD_VERSION = 1


def versions(spec) -> dict[str, str]:
    """What a model's result depends on besides its files and options.

    ``spec`` is the converter (None when it can only be known by importing the
    source): then every converter's versions count, so any upgrade reruns it.
    """
    found = {
        "onnxgate": onnxgate_version(),
        "onnxruntime": distribution_version("onnxruntime"),
        "onnx": distribution_version("onnx"),
    }
    for s in [spec] if spec is not None else _all_specs():
        for dist in (*s.requires, s.framework_distribution):
            if dist:
                found[dist] = distribution_version(dist)
    return found


def _all_specs():
    from onnxgate.plugins.manager import Registry

    return Registry().converters()


def _file_digest(path: str | None) -> str:
    if not path:
        return ""
    from onnxgate.pipeline.conversion.sources import sha256_path

    p = Path(path)
    return sha256_path(p) if p.exists() else ""


def _source_digest(source: str) -> str:
    if Path(source).exists():
        return _file_digest(source)
    origin = module_file(source.partition(":")[0])
    return _file_digest(str(origin)) if origin else ""


def module_file(name: str) -> Path | None:
    """The file of module ``name`` on sys.path, found without importing it or
    its packages: their code runs only in a worker, where a crash is contained."""
    import sys

    parts = name.split(".")
    for base in sys.path:
        stem = Path(base or ".", *parts)
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def key(entry, gate_summary: dict[str, Any], spec) -> str:
    """The content key of one entry (hex sha256)."""
    data = entry.to_dict()
    material = {
        "record": RECORD_VERSION,
        "source": _source_digest(entry.source),
        "files": {k: _file_digest(data[k]) for k in ("sample", "expected", "golden")},
        # what changes the result; name, tags and timeout do not
        "entry": {
            k: v
            for k, v in data.items()
            if k not in ("name", "source", "sample", "expected", "golden", "tags", "timeout")
        },
        "gate": gate_summary,
        "versions": versions(spec),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def state_dir(out: Path) -> Path:
    return Path(out) / STATE_DIR


def record_path(out: Path, name: str) -> Path:
    return state_dir(out) / f"{name}.json"


def lookup(out: Path, name: str, content_key: str) -> dict[str, Any] | None:
    """The finished row for ``name`` when its key matches and its files exist."""
    path = record_path(out, name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != content_key:
        return None
    row = record.get("row")
    if not isinstance(row, dict):
        return None
    for rel in (row.get("files") or {}).values():
        if rel and not (Path(out) / rel).is_file():
            return None  # an output was deleted: redo the model
    return row


def previous_seconds(out: Path, name: str) -> float | None:
    """How long ``name`` took in the last run into ``out``, whatever its key:
    the scheduler's estimate (a converter-upgrade rerun knows every model's)."""
    try:
        seconds = json.loads(record_path(out, name).read_text(encoding="utf-8"))["row"]["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None


def store(out: Path, row: dict[str, Any], content_key: str) -> None:
    state_dir(out).mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(record_path(out, row["name"]), json.dumps({"key": content_key, "row": row}, indent=1))


def sweep_partial(out: Path) -> list[Path]:
    """Remove temp files a killed run left (atomic writes' ``.NAME.*.tmp``)."""
    removed = []
    for folder in (Path(out), state_dir(out)):
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed
