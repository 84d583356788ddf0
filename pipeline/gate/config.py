"""What the gate checks, beyond the converter's tolerance: one dataclass.

Built from CLI flags (``--tolerance``, ``--gate-config``, ``--edge-values``...)
or by Python callers; ``api.run(gate=GateConfig(...))`` carries it through
both stages. Per-output rules come from ``--tolerance OUTPUT:rtol=..,atol=..``
and from a TOML or JSON file::

    [outputs.probabilities]        # or {"outputs": {"probabilities": {...}}}
    rtol = 1e-3
    atol = 1e-4
    [outputs.label]
    min_agreement = 0.99           # classifier labels: share of rows that agree
    [outputs.embedding]
    min_cosine = 0.999             # embeddings/logits: worst row's cosine
    elementwise = false            # gate on cosine/top-k only
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from onnxgate.plugins.spec import Tolerance
from onnxgate.plugins.errors import UsageError


@dataclass(frozen=True)
class OutputRule:
    """Per-output overrides; None means "the run's default"."""

    rtol: Optional[float] = None
    atol: Optional[float] = None
    #: Classifier labels: minimum share of rows whose label agrees (default 1.0).
    min_agreement: Optional[float] = None
    #: Embeddings/logits: minimum cosine similarity of every row (default: not gated).
    min_cosine: Optional[float] = None
    #: Embeddings/logits: minimum share of rows whose top-k indices agree (default: not gated).
    min_topk: Optional[float] = None
    topk: Optional[int] = None
    #: False: do not gate on elementwise error (then gate on cosine/top-k/agreement).
    elementwise: Optional[bool] = None
    #: Where the rule was written (file and table, or the --tolerance flag), for error messages.
    origin: Optional[str] = field(default=None, compare=False)

    def tolerance(self, base: Tolerance) -> Tolerance:
        return Tolerance(rtol=base.rtol if self.rtol is None else self.rtol,
                         atol=base.atol if self.atol is None else self.atol)

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "origin" and getattr(self, f.name) is not None}


_RULE_TYPES = {"rtol": float, "atol": float, "min_agreement": float, "min_cosine": float,
               "min_topk": float, "topk": int, "elementwise": bool}


@dataclass(frozen=True)
class GateConfig:
    """Every switch of the in-depth gate. Defaults are what ``convert`` does."""

    #: Shape sweep over every dynamic axis (sizes in ``sweep.SIZES``).
    sweep: bool = True
    #: Zeros, large magnitudes, NaN and inf cases (on by default in CI mode).
    edge_values: bool = False
    ci: bool = False
    #: Run every case with onnxruntime graph optimisations on and off.
    optimizer_check: bool = True
    #: Tree ensembles: acceptable share of rows whose decision flips for a
    #: reason other than float32 threshold rounding.
    max_flip_rate: float = 0.0
    #: "1.17" etc.; None = the installed onnxruntime.
    target_runtime: Optional[str] = None
    outputs: Mapping[str, OutputRule] = field(default_factory=dict)
    #: Drift: baseline file to compare with (None = none), growth factor and
    #: the absolute floor under which growth is never a failure.
    baseline: Optional[Path] = None
    drift_factor: float = 10.0
    drift_floor: float = 1e-6

    def rule(self, output: str) -> OutputRule:
        return self.outputs.get(output, OutputRule())

    def summary(self) -> Dict[str, Any]:
        """The report's ``gate`` section (JSON-serialisable)."""
        return {
            "sweep": self.sweep, "edge_values": self.edge_values, "ci": self.ci,
            "optimizer_check": self.optimizer_check, "max_flip_rate": self.max_flip_rate,
            "target_runtime": self.target_runtime,
            "outputs": {k: v.as_dict() for k, v in self.outputs.items()},
            "baseline": str(self.baseline) if self.baseline else None,
            "drift_factor": self.drift_factor, "drift_floor": self.drift_floor,
        }


def ci_mode(env: Optional[Mapping[str, str]] = None) -> bool:
    """CI mode: ``CI`` set to true/1/yes (GitHub Actions, GitLab, most CIs)."""
    value = (env if env is not None else os.environ).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def parse_rule(text: str) -> tuple:
    """``OUTPUT:rtol=1e-3,atol=1e-4`` -> (output, OutputRule)."""
    name, sep, body = text.rpartition(":")
    if not sep or not name or not body:
        raise UsageError(f"--tolerance {text!r}: expected OUTPUT:key=value[,key=value]")
    values = {}
    for pair in body.split(","):
        key, eq, value = pair.partition("=")
        if not eq:
            raise UsageError(f"--tolerance {text!r}: {pair!r} is not key=value")
        values[key.strip()] = value.strip()
    return name.strip(), _rule(values, f"--tolerance {text!r}")


#: Allowed range of each key: (low, high), both inclusive.
_RULE_RANGES = {"rtol": (0.0, None), "atol": (0.0, None), "min_agreement": (0.0, 1.0),
                "min_cosine": (-1.0, 1.0), "min_topk": (0.0, 1.0), "topk": (1, None)}


def _rule(values: Mapping[str, Any], where: str) -> OutputRule:
    """Strict: a bool is not a number (``atol = true`` would loosen the gate),
    a number is not a bool, tolerances are finite and not negative."""
    out = {}
    for key, value in values.items():
        kind = _RULE_TYPES.get(key)
        if kind is None:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(_RULE_TYPES)})")
        out[key] = _typed(key, value, kind, where)
        low, high = _RULE_RANGES.get(key, (None, None))
        if kind is not bool and ((low is not None and out[key] < low) or (high is not None and out[key] > high)):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise UsageError(f"{where}: {key}={value!r} is out of range (must be {bounds})")
    return OutputRule(**out, origin=where)


def _typed(key: str, value: Any, kind: type, where: str) -> Any:
    import math

    wrong = UsageError(f"{where}: {key}={value!r} is not a {kind.__name__}")
    if isinstance(value, str):  # from --tolerance OUTPUT:key=value
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise wrong
            return value.lower() in ("true", "1")
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            raise wrong from None
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise wrong
        return int(value)
    if not math.isfinite(value):
        raise UsageError(f"{where}: {key}={value!r} is not a finite number")
    return float(value)


def load_file(path: Path) -> Dict[str, OutputRule]:
    """Per-output rules from a ``.toml`` or ``.json`` file (``[outputs.NAME]``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"gate config {path}: no such file")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise UsageError(f"gate config {path}: use a .toml or .json file")
    except UsageError:
        raise
    except Exception as exc:  # tomllib/json errors, bad encoding
        raise UsageError(f"gate config {path}: unreadable: {exc}") from exc
    outputs = data.get("outputs", {}) if isinstance(data, dict) else None
    if not isinstance(outputs, dict) or not all(isinstance(v, dict) for v in outputs.values()):
        raise UsageError(f"gate config {path}: expected an 'outputs' table of tables")
    unknown = sorted(set(data) - {"outputs"})
    if unknown:
        raise UsageError(f"gate config {path}: unknown key {unknown[0]!r} (only [outputs.NAME] tables)")
    return {name: _rule(values, f"gate config {path} [outputs.{name}]") for name, values in outputs.items()}


def check_output_names(rules: Mapping[str, OutputRule], outputs) -> None:
    """A rule for an output the model does not have is a typo that would
    silently leave the real output on the default tolerance: exit 2."""
    outputs = list(outputs)
    for name, rule in rules.items():
        if name not in outputs:
            where = rule.origin or f"output rule {name!r}"
            raise UsageError(f"{where}: output {name!r} matches no output of the model "
                             f"(outputs: {', '.join(outputs)})")


def merge(*maps: Mapping[str, OutputRule]) -> Dict[str, OutputRule]:
    """Later maps win key by key (the CLI overrides the file)."""
    merged: Dict[str, OutputRule] = {}
    for rules in maps:
        for name, rule in rules.items():
            base = merged.get(name, OutputRule())
            merged[name] = replace(base, **rule.as_dict(), origin=rule.origin or base.origin)
    return merged
