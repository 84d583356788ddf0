"""Turning what the user typed (a path or ``module:attribute``) into a source."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.plugins.errors import UsageError

_REFERENCE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class Source:
    """A model file/folder, or an in-memory object."""

    path: Path | None = None
    obj: Any = None
    reference: str = ""  # "pkg.mod:attr" when given that way

    @property
    def is_path(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return self.reference or f"<{type(self.obj).__module__}.{type(self.obj).__qualname__} object>"

    def sha256(self) -> str:
        return sha256_path(self.path) if self.path is not None else ""


def resolve(source: Any) -> Source:
    """A Source for a path, a ``module:attribute`` string, or an object."""
    if isinstance(source, Source):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and not _REFERENCE_RE.match(source)):
        return Source(path=_checked_path(Path(source)))
    if isinstance(source, str):
        if Path(source).exists():
            return Source(path=_checked_path(Path(source)))
        return Source(obj=_import_reference(source), reference=source)
    return Source(obj=source)


def _checked_path(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                empty = fh.read(1) == b""
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
        if empty:
            raise UsageError(f"{path}: file is empty")
    return path


def _callable_bare(fn) -> bool:
    """Whether ``fn`` can be called without arguments (a factory)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _import_reference(reference: str) -> Any:
    module_name, _, attr_path = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{reference}: cannot import module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{reference}: module {module_name!r} has no attribute {attr_path!r}") from None
    # A factory (function or class) is called with no arguments; a model
    # instance is used as is even when it is callable (nn.Module is), and so
    # is a function that needs arguments: it is the model (a JAX function).
    if inspect.isclass(obj) or (inspect.isfunction(obj) or inspect.ismethod(obj)) and _callable_bare(obj):
        try:
            obj = obj()
        except TypeError as exc:
            raise UsageError(f"{reference}: cannot call it without arguments: {exc}") from exc
    return obj
