"""The batch manifest: TOML (or JSON), validated in full before any work.

::

    [defaults]                      # applies to every entry
    timeout = 600
    tags = ["nightly"]

    [[models]]
    name = "iris"                   # default: the source's file name
    source = "models/iris.skops"    # relative to the manifest's folder
    sample = "samples/iris.npz"

    [[models]]
    source = "models/**/*.skops"    # a glob: one entry per file, named after its path
    [models.outputs.probabilities]  # per-output rules, as in --gate-config
    rtol = 1e-3

Every error names its entry and key; all of them are reported at once and
nothing runs (exit 2). Types are checked exactly: ``"false"`` is a string,
not a boolean.
"""

from __future__ import annotations

import glob as globlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.plugins.errors import UsageError

#: For editors and CI linting; the loader checks more (files, unique names, options).
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")

#: Names become file names in --out: no separators, no leading dot, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
GLOB_CHARS = set("*?[")

#: Options the built-in converters read (``--option KEY=VALUE``); a
#: third-party converter's options are free-form scalars.
CONVERTER_OPTIONS: dict[str, dict[str, type]] = {
    "chainer": {"model": str},
    "mxnet": {"params": str},
}
_NO_OPTIONS = ("sklearn", "torch", "tensorflow", "xgboost", "lightgbm", "catboost", "onnx", "coreml", "libsvm", "cntk")

RULE_TYPES = {
    "rtol": float,
    "atol": float,
    "min_agreement": float,
    "min_cosine": float,
    "min_topk": float,
    "topk": int,
    "elementwise": bool,
}


@dataclass(frozen=True)
class Entry:
    """One model to convert, every path absolute."""

    name: str
    source: str
    framework: str | None = None
    sample: str | None = None
    expected: str | None = None
    golden: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    trust_source: bool = False
    accept_unverified: bool = False
    static_batch: bool = False
    opset: int | None = None
    seed: int = 0
    rtol: float | None = None
    atol: float | None = None
    #: Per-output rules: {output: {rtol, atol, min_agreement, ...}}.
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout: float | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data


class _Bad(ValueError):
    """A value of the wrong type or range; the caller adds entry and key."""


def _kind(value: Any) -> str:
    return {bool: "boolean", str: "string", int: "integer", float: "number", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def _expect(value: Any, what: str, ok: bool) -> None:
    if not ok:
        raise _Bad(f"expected {what}, got {_kind(value)} {json.dumps(value, default=str)[:60]}")


def _bool(value):
    _expect(value, "a boolean (true/false)", isinstance(value, bool))
    return value


def _str(value):
    _expect(value, "a string", isinstance(value, str) and value != "")
    return value


def _int(value):
    _expect(value, "an integer", isinstance(value, int) and not isinstance(value, bool))
    return value


def _number(value):
    _expect(value, "a number", isinstance(value, (int, float)) and not isinstance(value, bool))
    return float(value)


def _positive(value):
    value = _number(value)
    if not value > 0:
        raise _Bad(f"must be > 0, got {value:g}")
    return value


def _non_negative(value):
    value = _number(value)
    if not value >= 0:
        raise _Bad(f"must be >= 0, got {value:g}")
    return value


def _tags(value):
    _expect(value, "an array of strings", isinstance(value, list) and all(isinstance(t, str) for t in value))
    return tuple(value)


def _table(value):
    _expect(value, "a table", isinstance(value, dict))
    return value


#: key -> check: returns the normalised value or raises _Bad.
_KEYS = {
    "name": _str,
    "source": _str,
    "framework": _str,
    "sample": _str,
    "expected": _str,
    "golden": _str,
    "options": _table,
    "trust_source": _bool,
    "accept_unverified": _bool,
    "static_batch": _bool,
    "opset": _int,
    "seed": _int,
    "rtol": _non_negative,
    "atol": _non_negative,
    "outputs": _table,
    "timeout": _positive,
    "tags": _tags,
}
_PATH_KEYS = ("sample", "expected", "golden")


def load(path: Path, known_frameworks: list[str] | None = None) -> list[Entry]:
    """Read and validate ``path``; raise one UsageError listing every problem."""
    path = Path(path)
    data = _read(path)
    errors: list[str] = []
    entries = _entries(data, path, errors, known_frameworks)
    if errors:
        shown = errors[:50] + ([f"... and {len(errors) - 50} more"] if len(errors) > 50 else [])
        raise UsageError(f"manifest {path}: {len(errors)} error(s):\n  " + "\n  ".join(shown))
    return entries


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"manifest {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"manifest {path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"manifest {path}: expected a table with a 'models' array")
    return data


def _entries(data: dict[str, Any], path: Path, errors: list[str], frameworks) -> list[Entry]:
    for key in set(data) - {"defaults", "models"}:
        errors.append(f"top level: unknown key {key!r} (known: defaults, models)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        errors.append(f"defaults: expected a table, got {_kind(defaults)}")
        defaults = {}
    for key in ("name", "source"):
        if key in defaults:
            errors.append(f"defaults: key {key!r} cannot have a default")
    checked_defaults = _check_keys(defaults, "defaults", errors, frameworks)
    models = data.get("models")
    if not isinstance(models, list) or not models:
        errors.append("models: expected a non-empty array of tables ([[models]])")
        return []
    base = path.resolve().parent
    entries: list[Entry] = []
    for i, raw in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: expected a table, got {_kind(raw)}")
            continue
        if isinstance(raw.get("name"), str):
            where += f" ({raw['name']})"
        values = dict(checked_defaults)
        values.update(_check_keys(raw, where, errors, frameworks))
        if isinstance(raw.get("options"), dict) and isinstance(defaults.get("options"), dict):
            values["options"] = {**defaults["options"], **raw["options"]}
        if "source" not in raw:
            errors.append(f"{where}: key 'source' is required")
            continue
        if "source" not in values:  # ill-typed, already reported
            continue
        entries.extend(_expand(values, base, where, errors))
    _check_unique(entries, errors)
    return entries


def _check_keys(raw: Mapping[str, Any], where: str, errors: list[str], frameworks) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        check = _KEYS.get(key)
        if check is None:
            errors.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
            continue
        try:
            out[key] = check(value)
        except _Bad as exc:
            errors.append(f"{where}: key {key!r}: {exc}")
            continue
        extra = _DEEPER.get(key)
        if extra:
            errors.extend(f"{where}: key {key!r}: {msg}" for msg in extra(out[key]))
    if "framework" in out and frameworks is not None and out["framework"].lower() not in frameworks:
        errors.append(
            f"{where}: key 'framework': unknown framework {out['framework']!r} (known: {', '.join(sorted(frameworks))})"
        )
    if "options" in out:
        errors.extend(f"{where}: key 'options': {msg}" for msg in _options_errors(out["options"], out.get("framework")))
    return out


def _name_error(name: str) -> list[str]:
    if not SAFE_NAME.match(name) or ".." in name:
        return [
            f"{name!r} is not a safe file name (letters, digits, '.', '_', '+', '-'; "
            "no path separators, no leading dot, no '..')"
        ]
    return []


def _outputs_errors(outputs: Mapping[str, Any]) -> list[str]:
    errors = []
    for output, rule in outputs.items():
        if not isinstance(rule, dict):
            errors.append(f"[outputs.{output}]: expected a table, got {_kind(rule)}")
            continue
        for key, value in rule.items():
            kind = RULE_TYPES.get(key)
            if kind is None:
                errors.append(f"[outputs.{output}]: unknown key {key!r} (known: {', '.join(RULE_TYPES)})")
                continue
            try:
                {bool: _bool, int: _int, float: _non_negative}[kind](value)
            except _Bad as exc:
                errors.append(f"[outputs.{output}] {key}: {exc}")
    return errors


#: key -> further checks of a well-typed value (messages, empty when fine).
_DEEPER: dict[str, Callable[[Any], list[str]]] = {"name": _name_error, "outputs": _outputs_errors}


def _options_errors(options: Mapping[str, Any], framework: str | None) -> list[str]:
    errors = []
    known: dict[str, type] | None = None
    if framework:
        fw = framework.lower()
        known = CONVERTER_OPTIONS.get(fw, {} if fw in _NO_OPTIONS else None)
    else:  # the converter is detected later: accept any built-in converter's options
        known = {k: t for opts in CONVERTER_OPTIONS.values() for k, t in opts.items()}
    for key, value in options.items():
        if known is not None and key not in known:
            names = ", ".join(sorted(known)) or "none"
            errors.append(f"unknown option {key!r} for {framework or 'any converter'} (known: {names})")
            continue
        kind = (known or {}).get(key)
        if kind is not None and not isinstance(value, kind):
            errors.append(f"option {key!r}: expected a {kind.__name__}, got {_kind(value)}")
        elif not isinstance(value, (str, int, float, bool)):
            errors.append(f"option {key!r}: expected a scalar, got {_kind(value)}")
    return errors


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _expand(values: dict[str, Any], base: Path, where: str, errors: list[str]) -> list[Entry]:
    for key in _PATH_KEYS:
        if key in values:
            p = _resolve(base, values[key])
            if not p.exists():
                errors.append(f"{where}: key {key!r}: {p}: no such file or directory")
            values[key] = str(p)
    source = values["source"]
    if GLOB_CHARS & set(source):
        pattern = _resolve(base, source)
        matches = sorted(Path(m) for m in globlib.glob(str(pattern), recursive=True))
        if not matches:
            errors.append(f"{where}: key 'source': the glob {source!r} matches nothing (in {base})")
            return []
        root = _glob_root(pattern)
        prefix = values.pop("name", None)
        out = []
        for match in matches:
            stem = "-".join(match.relative_to(root).with_suffix("").parts)
            name = f"{prefix}-{stem}" if prefix else stem
            out.append(_entry({**values, "name": _safe(name), "source": str(match)}, where, errors))
        return [e for e in out if e]
    if REFERENCE.match(source) and not _resolve(base, source).exists():
        values.setdefault("name", _safe(source.replace(":", "-")))
    else:
        path = _resolve(base, source)
        if not path.exists():
            errors.append(f"{where}: key 'source': {path}: no such file or directory")
        values["source"] = str(path)
        values.setdefault("name", _safe(path.name.split(".")[0] or path.name))
    entry = _entry(values, where, errors)
    return [entry] if entry else []


def _glob_root(pattern: Path) -> Path:
    parts = []
    for part in pattern.parts:
        if GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts)


def _safe(name: str) -> str:
    """A derived name made file-safe (explicit names are checked, not changed)."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "model"
    return name.replace("..", "_")[:128]


def _entry(values: dict[str, Any], where: str, errors: list[str]) -> Entry | None:
    try:
        return Entry(**values)
    except TypeError as exc:  # cannot happen for checked keys; kept as a clear error
        errors.append(f"{where}: {exc}")
        return None


def _check_unique(entries: list[Entry], errors: list[str]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        seen[entry.name.lower()] = seen.get(entry.name.lower(), 0) + 1
    for name, count in seen.items():
        if count > 1:
            errors.append(f"name {name!r}: used by {count} entries (names must be unique, case-insensitively)")


def inside(out: Path, name: str) -> bool:
    """True when every file named after ``name`` stays directly in ``out``."""
    out = Path(out).resolve()
    return (out / f"{name}.onnx").resolve().parent == out
