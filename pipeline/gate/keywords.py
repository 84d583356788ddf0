"""The gate's settings from the Python API's keyword arguments (the CLI's
options, by the same names): a ``GateConfig`` and the run's tolerance.

``tolerance`` is a ``Tolerance`` (the run's rtol/atol, like ``--rtol``/
``--atol``) or a dict of per-output rules keyed by output name, each a
``Tolerance``, an ``OutputRule`` or a dict (``{"rtol": 1e-3}``,
``{"min_agreement": 0.99}``), like ``--tolerance OUTPUT:KEY=VALUE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Union

from onnxgate.pipeline.gate.config import GateConfig, OutputRule, _rule, merge
from onnxgate.pipeline.gate.config import resolve as resolve_gate
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.spec import Tolerance

RuleLike = Union[Tolerance, OutputRule, Mapping[str, Any]]
ToleranceLike = Union[Tolerance, Mapping[str, RuleLike], None]

_DEFAULTS = GateConfig()


def output_rules(rules: Mapping[str, RuleLike]) -> dict[str, OutputRule]:
    out = {}
    for name, rule in rules.items():
        if not isinstance(name, str):
            raise UsageError(f"tolerance: keys must be output names (str), got {name!r}")
        if isinstance(rule, OutputRule):
            out[name] = rule
        elif isinstance(rule, Tolerance):
            out[name] = OutputRule(rtol=rule.rtol, atol=rule.atol)
        elif isinstance(rule, Mapping):
            out[name] = _rule(rule, f"tolerance[{name!r}]")
        else:
            raise UsageError(
                f"tolerance[{name!r}]: a {type(rule).__name__}; give a Tolerance, an OutputRule "
                "or a dict such as {'rtol': 1e-3, 'atol': 1e-4}"
            )
    return out


def resolve(
    *,
    rtol: float | None,
    atol: float | None,
    tolerance: ToleranceLike,
    gate: GateConfig | None,
    gate_config: str | Path | None,
    sweep: bool,
    edge_values: bool | None,
    ci: bool | None,
    max_flip_rate: float,
    target_runtime: str | None,
    optimizer_check: bool,
    baseline: str | Path | None,
    drift_factor: float,
    drift_floor: float,
    float64_reference: bool = True,
    noise_multiple: float = _DEFAULTS.noise_multiple,
    model_path: str | Path | None = None,
) -> tuple[float | None, float | None, GateConfig]:
    """(rtol, atol, gate) for ``api.run``; conflicting or bad values are UsageErrors.

    The GateConfig comes from ``gate.config.resolve``, the one path the CLI
    and ``onnxgate batch`` use too: ``ci=None`` reads the ``CI`` variable, and
    ``model_path``'s ``MODEL.onnx.baseline.json`` gates drift when present."""
    if isinstance(tolerance, Tolerance):
        if rtol is not None or atol is not None:
            raise UsageError("give tolerance=Tolerance(...) or rtol/atol, not both")
        rtol, atol, rules = tolerance.rtol, tolerance.atol, {}
    elif isinstance(tolerance, Mapping):
        rules = output_rules(tolerance)
    elif tolerance is None:
        rules = {}
    else:
        raise UsageError(f"tolerance: a {type(tolerance).__name__}; give a Tolerance or a dict of per-output rules")
    for label, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise UsageError(f"{label}={value!r}: must be a number >= 0")
    asked: dict[str, Any] = dict(
        sweep=sweep,
        edge_values=edge_values,
        ci=ci,
        max_flip_rate=max_flip_rate,
        target_runtime=target_runtime,
        optimizer_check=optimizer_check,
        baseline=baseline,
        drift_factor=drift_factor,
        drift_floor=drift_floor,
        float64_reference=float64_reference,
        noise_multiple=noise_multiple,
    )
    if gate is not None:
        changed = [k for k, v in asked.items() if v is not None and v != getattr(_DEFAULTS, k)]
        if changed or rules or gate_config is not None:
            raise UsageError(
                f"give gate=GateConfig(...) or the gate keywords ({', '.join(changed) or 'tolerance'}), not both"
            )
        return rtol, atol, gate
    gate = resolve_gate(model_path=model_path, gate_config=gate_config, **asked)
    return rtol, atol, replace(gate, outputs=merge(gate.outputs, rules))
