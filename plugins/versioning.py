"""The plugin API's version, the range a plugin declares, and deprecations.

Policy (docs/plugins.md, "Versioning"): ``API_VERSION`` is MAJOR.MINOR. A
minor release only adds; a hook or spec field changed in one keeps its old
form working, with a ``DeprecationWarning``, for at least one more minor
version. A major release may remove what was deprecated.

A plugin declares the versions it works with as a module attribute of its
entry-point object, in the usual specifier syntax::

    ONNXGATE_API = ">=1.1,<2"

Out of range, onnxgate refuses to load the plugin and lists it as broken
with this module's message, instead of failing later in a confusing way.
"""

from __future__ import annotations

import inspect
import operator
import re
import warnings
from collections.abc import Callable
from typing import Any

#: Version of the plugin surface (hooks, spec types, contract kit).
#: 1.0: hooks onnxgate_converters/environments/deploy_targets, ConverterSpec.
#: 1.1: ``inputs(model, options)`` (``inputs(model)`` deprecated), ``ONNXGATE_API``.
#: 1.2: ``OptionSpec``/``ConverterSpec.options`` (undeclared options deprecated),
#:      ``DeployTargetSpec.options``, hooks ``onnxgate_compare_rules`` and ``onnxgate_report_formats``.
#: 1.3: ``InputSpec.columns`` (a 2-D input's column names: samples with a header are ordered by them),
#:      the optional ``ConverterSpec.run_float64`` (the gate's float32 noise floor),
#:      ``ConverterSpec.text_sample`` (samples from ``--text``).
API_VERSION = "1.3"
#: Module attribute a plugin sets to declare the API versions it supports.
DECLARATION = "ONNXGATE_API"

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*$")


class SpecifierError(ValueError):
    """A version range a plugin declared cannot be read."""


def _version(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def supports(specifier: str, version: str = API_VERSION) -> bool:
    """Whether ``version`` lies in ``specifier`` (``">=1.1,<2"``)."""
    clauses = [c for c in str(specifier).split(",") if c.strip()]
    if not clauses:
        raise SpecifierError(f"empty version range {specifier!r}")
    for clause in clauses:
        match = _CLAUSE.match(clause)
        if not match:
            raise SpecifierError(f"cannot read {clause.strip()!r} in {specifier!r} (expected e.g. '>=1.1,<2')")
        op, bound = match.groups()
        if not _OPS[op](_version(version), _version(bound)):
            return False
    return True


def check_declared(plugin: Any) -> str | None:
    """Why ``plugin`` cannot be used with this API version, or None."""
    declared = getattr(plugin, DECLARATION, None)
    if declared is None:
        return None
    try:
        if supports(declared):
            return None
    except SpecifierError as exc:
        return f"{DECLARATION} = {declared!r}: {exc}"
    return (
        f"supports onnxgate plugin API {declared}, this onnxgate provides {API_VERSION}: "
        "install a release of the plugin made for it, or a matching onnxgate"
    )


def deprecated(message: str, *, since: str, stacklevel: int = 3) -> None:
    """Warn that an old form still works but will go (``since`` = API version)."""
    warnings.warn(
        f"{message} (deprecated since onnxgate plugin API {since})", DeprecationWarning, stacklevel=stacklevel
    )


def _accepts_positional(fn: Callable, count: int) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the current form
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= count


def adapt_inputs(fn: Callable | None, owner: str) -> Callable | None:
    """``inputs(model, options)``; the API 1.0 form ``inputs(model)`` keeps
    working with a DeprecationWarning."""
    if fn is None or _accepts_positional(fn, 2):
        return fn
    deprecated(
        f"converter {owner!r}: inputs(model) is the old form; write inputs(model, options)", since="1.1", stacklevel=5
    )

    def inputs(model, options=None):
        return fn(model)

    inputs.onnxgate_adapted = fn  # type: ignore[attr-defined]  # marker attribute on a function
    return inputs
