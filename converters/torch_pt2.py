"""Loading ``.pt2`` programs whose inputs or outputs are library types.

A program exported from a Hugging Face model returns a ``ModelOutput``;
``torch.export.load`` can rebuild it only when the type is registered with
torch's pytree, which the library does when its module is imported. The
archive names the types (``transformers.modeling_outputs.MaskedLMOutput``) in
its call signature: their modules are imported when they belong to a known
library (importing installed code only, never code from the file), else the
load fails with one line naming the type and what to install. Any other
module is imported only with --trust-source.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import zipfile
from pathlib import Path

from onnxgate.plugins import UsageError

#: Libraries known to register pytree node types on import.
KNOWN_LIBRARIES = ("transformers", "diffusers", "timm", "torchvision", "torchaudio", "peft", "sentence_transformers")
#: Distribution to install for a library's import name.
DISTRIBUTIONS = {"sentence_transformers": "sentence-transformers"}
#: Bytes of a program's JSON read to find its call signature.
MAX_PROGRAM_JSON = 512 * 1024 * 1024


def serialized_types(path: Path) -> set[str]:
    """Pytree type names in the call signatures of the program(s) in a .pt2."""
    found: set[str] = set()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not (info.filename.endswith(".json") and "/models/" in info.filename):
                continue
            if info.file_size > MAX_PROGRAM_JSON:
                continue
            try:
                program = json.loads(zf.read(info))
            except (ValueError, UnicodeDecodeError):
                continue
            for spec in _call_specs(program):
                _types(spec, found)
    return found


def _call_specs(node):
    """The in_spec/out_spec strings anywhere in the program's JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("in_spec", "out_spec") and isinstance(value, str):
                yield value
            else:
                yield from _call_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _call_specs(item)


def _types(spec: str, found: set[str]) -> None:
    try:
        _protocol, tree = json.loads(spec)
    except (ValueError, TypeError):
        return
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        stack.extend(node.get("children_spec") or [])


def register_types(path: Path, trusted: bool) -> list[str]:
    """Import the modules defining the unregistered pytree types of the
    program; returns the modules imported. Raises UsageError naming a type
    that stays unknown."""
    from torch.utils import _pytree

    missing = sorted(t for t in serialized_types(path) if t not in _pytree.SERIALIZED_TYPE_TO_PYTHON_TYPE)
    imported = []
    for type_name in missing:
        module = type_name.rpartition(".")[0]
        top = module.partition(".")[0]
        if not module:
            raise UsageError(f"{path}: the program uses pytree type {type_name!r}, which torch does not know")
        if top not in KNOWN_LIBRARIES and not trusted:
            raise UsageError(
                f"{path}: the program returns or takes {type_name}; importing module {module!r} to register "
                "it runs that installed code: pass --trust-source if you trust it"
            )
        if importlib.util.find_spec(top) is None:
            raise UsageError(
                f"{path}: the program returns or takes {type_name}; install "
                f"{DISTRIBUTIONS.get(top, top)} (module {module}) to load it"
            )
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise UsageError(
                f"{path}: importing {module} (for {type_name}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        if type_name not in _pytree.SERIALIZED_TYPE_TO_PYTHON_TYPE:
            raise UsageError(
                f"{path}: the program returns or takes {type_name}, which importing {module} did not register "
                "with torch's pytree (a different version of the library?)"
            )
        imported.append(module)
    return imported


class _LastProblem(logging.Handler):
    """Keeps the line of torch.export's load warning that names the cause."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        lines = [ln.strip() for ln in record.getMessage().splitlines() if ln.strip()]
        if lines:
            self.line = lines[-1]


def load(path: Path, trusted: bool):
    """torch.export.load, with the types registered and the cause of a
    failure in the message (torch logs it as a traceback, then raises a
    generic error)."""
    import torch

    register_types(path, trusted)
    logger = logging.getLogger("torch.export")
    handler = _LastProblem()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise ValueError(handler.line or str(exc)) from exc
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
