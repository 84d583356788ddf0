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
    [outputs.scores]
    rule = "tensor"                # judge it with this comparison rule
    [outputs.logits]
    noise_multiple = 8             # up to 8x the original's float32 noise floor

The keys besides rtol/atol/elementwise/rule are declared by the comparison
rules (``CompareRule.keys``, see ``rules.py``), so a plugin's rule brings its
own keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.pipeline.gate import drift, runtime_compat
from onnxgate.pipeline.gate.compare import DEFAULT_NOISE_MULTIPLE
from onnxgate.plugins import CompareRule, OptionSpec, Tolerance, UsageError
from onnxgate.plugins.manager import PluginError

#: Keys every output takes, whatever its comparison rule; the rules add
#: their own (``CompareRule.keys``: min_agreement, min_cosine, ...).
COMMON_KEYS = (
    OptionSpec("rtol", float, help="relative tolerance"),
    OptionSpec("atol", float, help="absolute tolerance"),
    OptionSpec("elementwise", bool, help="false: do not gate on elementwise error (gate on the rule's metrics)"),
    OptionSpec("rule", str, help="the comparison rule for this output (default: picked by the output's kind)"),
    OptionSpec(
        "noise_multiple",
        float,
        help="accept errors up to this multiple of the original's float32 noise floor (0: not noise-aware)",
    ),
)


class OutputRule(Mapping):
    """Per-output settings by key (``rtol``, ``min_cosine``...); a key not set
    means "the run's default" (None as an attribute, absent as a mapping)."""

    __slots__ = ("_values", "origin")

    def __init__(self, origin: str | None = None, **values: Any):
        object.__setattr__(self, "_values", {k: v for k, v in values.items() if v is not None})
        #: Where the rule was written (file and table, or the --tolerance flag), for error messages.
        object.__setattr__(self, "origin", origin)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self._values.get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("OutputRule is immutable")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputRule) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return "OutputRule(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def tolerance(self, base: Tolerance) -> Tolerance:
        return Tolerance(
            rtol=base.rtol if self.rtol is None else self.rtol, atol=base.atol if self.atol is None else self.atol
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __reduce__(self):  # immutable and slotted: pickle (batch workers, Dask) through the constructor
        return (_output_rule, (self.origin, dict(self._values)))


def _output_rule(origin: str | None, values: dict[str, Any]) -> OutputRule:
    return OutputRule(origin=origin, **values)


def rule_keys(rules: Sequence[CompareRule] | None = None) -> dict[str, OptionSpec]:
    """Every key an output may set: the common ones, then each rule's
    (``rules`` default: the installed plugins' rules)."""
    if rules is None:
        from onnxgate.plugins.manager import Registry

        rules = Registry().compare_rules()
    keys = {k.name: k for k in COMMON_KEYS}
    owner = {k.name: "onnxgate" for k in COMMON_KEYS}
    for rule in rules:
        for key in rule.keys:
            known = keys.get(key.name)
            if known is not None and known.type is not key.type:
                raise PluginError(
                    f"comparison rules {owner[key.name]!r} and {rule.name!r} declare key "
                    f"{key.name!r} with two types ({known.type.__name__}, {key.type.__name__})"
                )
            keys.setdefault(key.name, key)
            owner.setdefault(key.name, rule.name)
    return keys


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
    target_runtime: str | None = None
    outputs: Mapping[str, OutputRule] = field(default_factory=dict)
    #: Drift: baseline file to compare with (None = none), growth factor and
    #: the absolute floor under which growth is never a failure.
    baseline: Path | None = None
    drift_factor: float = 10.0
    drift_floor: float = 1e-6
    #: Run the original once more in float64 (when its converter can) to
    #: measure its float32 noise floor; ONNX errors within ``noise_multiple``
    #: times that floor pass (docs/validation.md, "The tolerance rule").
    float64_reference: bool = True
    noise_multiple: float = DEFAULT_NOISE_MULTIPLE
    #: The comparison rules in priority order (``api.run`` sets its registry's);
    #: None = the installed plugins' rules.
    rules: tuple[CompareRule, ...] | None = None

    def rule(self, output: str) -> OutputRule:
        return self.outputs.get(output, OutputRule())

    def summary(self) -> dict[str, Any]:
        """The report's ``gate`` section (JSON-serialisable)."""
        return {
            "sweep": self.sweep,
            "edge_values": self.edge_values,
            "ci": self.ci,
            "optimizer_check": self.optimizer_check,
            "max_flip_rate": self.max_flip_rate,
            "target_runtime": self.target_runtime,
            "outputs": {k: v.as_dict() for k, v in self.outputs.items()},
            "baseline": str(self.baseline) if self.baseline else None,
            "drift_factor": self.drift_factor,
            "drift_floor": self.drift_floor,
            "float64_reference": self.float64_reference,
            "noise_multiple": self.noise_multiple,
        }


def ci_mode(env: Mapping[str, str] | None = None) -> bool:
    """CI mode: ``CI`` set to true/1/yes (GitHub Actions, GitLab, most CIs)."""
    value = (env if env is not None else os.environ).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def resolve(
    *,
    model_path: str | Path | None = None,
    ci: bool | None = None,
    edge_values: bool | None = None,
    gate_config: str | Path | None = None,
    tolerances: Iterable[str] = (),
    baseline: str | Path | None = None,
    use_baseline: bool = True,
    sweep: bool = True,
    optimizer_check: bool = True,
    max_flip_rate: float = 0.0,
    target_runtime: str | None = None,
    drift_factor: float = 10.0,
    drift_floor: float = 1e-6,
    float64_reference: bool = True,
    noise_multiple: float = DEFAULT_NOISE_MULTIPLE,
    env: Mapping[str, str] | None = None,
) -> GateConfig:
    """THE way a run's GateConfig is built, for the CLI, the Python API and
    ``onnxgate batch`` alike: explicit options, then the environment (``CI``
    turns edge values on unless ``edge_values`` says otherwise), then the
    model's path (its ``MODEL.onnx.baseline.json``, when present, gates drift
    unless ``baseline`` names another file or ``use_baseline`` is False).
    ``gate_config`` is a .toml/.json file of per-output rules; ``tolerances``
    (``OUTPUT:key=value,...``) win over it."""
    tolerances = list(tolerances)
    keys = rule_keys() if gate_config or tolerances else None  # what the comparison rules accept
    file_rules = load_file(Path(gate_config), keys) if gate_config else {}
    cli_rules = dict(parse_rule(text, keys) for text in tolerances)
    ci = bool(ci) or ci_mode(env)
    edge = edge_values if edge_values is not None else ci
    if not 0 <= max_flip_rate <= 1:
        raise UsageError("--max-flip-rate must be between 0 and 1")
    if drift_factor < 1:
        raise UsageError("--drift-factor must be at least 1")
    if not (isinstance(noise_multiple, (int, float)) and math.isfinite(noise_multiple) and noise_multiple >= 0):
        raise UsageError(f"--noise-multiple {noise_multiple!r}: must be a finite number >= 0")
    if baseline is not None and not Path(baseline).is_file():
        raise UsageError(f"--baseline {baseline}: no such file")
    if baseline is None and model_path is not None and use_baseline:
        candidate = drift.default_path(Path(model_path))
        baseline = candidate if candidate.is_file() else None
    if target_runtime:
        try:
            runtime_compat.minor(target_runtime)
        except ValueError:
            raise UsageError(f"--target-runtime {target_runtime!r}: expected a version like 1.17") from None
    return GateConfig(
        sweep=sweep,
        edge_values=bool(edge),
        ci=ci,
        optimizer_check=optimizer_check,
        max_flip_rate=max_flip_rate,
        target_runtime=target_runtime,
        outputs=merge(file_rules, cli_rules),
        baseline=Path(baseline) if baseline is not None else None,
        drift_factor=drift_factor,
        drift_floor=drift_floor,
        float64_reference=float64_reference,
        noise_multiple=float(noise_multiple),
    )


def parse_rule(text: str, keys: Mapping[str, OptionSpec] | None = None) -> tuple:
    """``OUTPUT:rtol=1e-3,atol=1e-4`` -> (output, OutputRule). ``keys``: what
    an output may set (default: ``rule_keys()``)."""
    name, sep, body = text.rpartition(":")
    if not sep or not name or not body:
        raise UsageError(f"--tolerance {text!r}: expected OUTPUT:key=value[,key=value]")
    values = {}
    for pair in body.split(","):
        key, eq, value = pair.partition("=")
        if not eq:
            raise UsageError(f"--tolerance {text!r}: {pair!r} is not key=value")
        values[key.strip()] = value.strip()
    return name.strip(), _rule(values, f"--tolerance {text!r}", keys)


#: Allowed range of the built-in keys: (low, high), both inclusive.
_RULE_RANGES = {
    "rtol": (0.0, None),
    "atol": (0.0, None),
    "min_agreement": (0.0, 1.0),
    "min_cosine": (-1.0, 1.0),
    "min_topk": (0.0, 1.0),
    "topk": (1, None),
    "noise_multiple": (0.0, None),
}


def _rule(values: Mapping[str, Any], where: str, keys: Mapping[str, OptionSpec] | None = None) -> OutputRule:
    """Strict: a bool is not a number (``atol = true`` would loosen the gate),
    numbers are finite and within the key's range, unknown keys are refused."""
    keys = rule_keys() if keys is None else keys
    out = {}
    for key, value in values.items():
        option = keys.get(key)
        if option is None:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")
        try:
            out[key] = option.parse(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: {key}={value!r} is not a {option.type.__name__}") from None
        _check_range(key, out[key], value, where)
    return OutputRule(origin=where, **out)


def _check_range(key: str, parsed: Any, given: Any, where: str) -> None:
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        return
    if not math.isfinite(parsed):
        raise UsageError(f"{where}: {key}={given!r} is not a finite number")
    low, high = _RULE_RANGES.get(key, (None, None))
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise UsageError(f"{where}: {key}={given!r} is out of range (must be {bounds})")


def load_file(path: Path, keys: Mapping[str, OptionSpec] | None = None) -> dict[str, OutputRule]:
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
    keys = rule_keys() if keys is None else keys
    return {name: _rule(values, f"gate config {path} [outputs.{name}]", keys) for name, values in outputs.items()}


def check_output_names(rules: Mapping[str, OutputRule], outputs) -> None:
    """A rule for an output the model does not have is a typo that would
    silently leave the real output on the default tolerance: exit 2."""
    outputs = list(outputs)
    for name, rule in rules.items():
        if name not in outputs:
            where = rule.origin or f"output rule {name!r}"
            raise UsageError(f"{where}: output {name!r} matches no output of the model (outputs: {', '.join(outputs)})")


def merge(*maps: Mapping[str, OutputRule]) -> dict[str, OutputRule]:
    """Later maps win key by key (the CLI overrides the file)."""
    merged: dict[str, OutputRule] = {}
    for rules in maps:
        for name, rule in rules.items():
            base = merged.get(name, OutputRule())
            merged[name] = OutputRule(origin=rule.origin or base.origin, **{**base.as_dict(), **rule.as_dict()})
    return merged
