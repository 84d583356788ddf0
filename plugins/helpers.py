"""Helpers that converters and the engine share (import them from ``onnxgate.plugins``)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

#: Longest message kept from a third-party exception; the rest is noise on a terminal.
MAX_MESSAGE = 500


def one_line(exc: BaseException | str, *, with_type: bool = False, limit: int = MAX_MESSAGE) -> str:
    """The first non-empty line of ``exc``'s message, truncated to ``limit``.

    ``with_type`` prefixes the exception's class name (``ValueError: ...``),
    which helps when the message alone is ambiguous (``KeyError: 'x'``).
    ``exc`` may also be a message (a service's error text): then an empty one
    gives "".
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    if isinstance(exc, str):
        return first
    if not first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}" if with_type else first


def graph_inputs(model: Any) -> list[Any]:
    """An ONNX model's real inputs (ValueInfoProtos), initializers excluded."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def distribution_version(name: str | None) -> str:
    if not name:
        return ""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def installed_distribution(*candidates: str) -> str:
    """The first of ``candidates`` that is installed (no import), else the
    first one: for frameworks shipped under several names (``tensorflow`` /
    ``tensorflow-cpu``, ``xgboost`` / ``xgboost-cpu``)."""
    for name in candidates:
        if distribution_version(name):
            return name
    return candidates[0]
