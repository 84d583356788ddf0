"""The gate's settings from the Python API's keyword arguments (the CLI's
options, by the same names): a ``GateConfig`` and the run's tolerance.

``tolerance`` is a ``Tolerance`` (the run's rtol/atol, like ``--rtol``/
``--atol``) or a dict of per-output rules keyed by output name, each a
``Tolerance``, an ``OutputRule`` or a dict (``{"rtol": 1e-3}``,
``{"min_agreement": 0.99}``), like ``--tolerance OUTPUT:KEY=VALUE``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from onnxgate.pipeline.gate.config import GateConfig, OutputRule, _rule, load_file, merge
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.spec import Tolerance

RuleLike = Union[Tolerance, OutputRule, Mapping[str, Any]]
ToleranceLike = Union[Tolerance, Mapping[str, RuleLike], None]

_DEFAULTS = GateConfig()


def output_rules(rules: Mapping[str, RuleLike]) -> Dict[str, OutputRule]:
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
            raise UsageError(f"tolerance[{name!r}]: a {type(rule).__name__}; give a Tolerance, an OutputRule "
                             "or a dict such as {'rtol': 1e-3, 'atol': 1e-4}")
    return out


def resolve(
    *,
    rtol: Optional[float],
    atol: Optional[float],
    tolerance: ToleranceLike,
    gate: Optional[GateConfig],
    gate_config: Optional[Union[str, Path]],
    sweep: bool,
    edge_values: Optional[bool],
    ci: bool,
    max_flip_rate: float,
    target_runtime: Optional[str],
    optimizer_check: bool,
    baseline: Optional[Union[str, Path]],
    drift_factor: float,
    drift_floor: float,
) -> Tuple[Optional[float], Optional[float], GateConfig]:
    """(rtol, atol, gate) for ``api.run``; conflicting or bad values are UsageErrors."""
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
    asked = dict(sweep=sweep, edge_values=edge_values, ci=ci, max_flip_rate=max_flip_rate,
                 target_runtime=target_runtime, optimizer_check=optimizer_check, baseline=baseline,
                 drift_factor=drift_factor, drift_floor=drift_floor)
    if gate is not None:
        changed = [k for k, v in asked.items() if v is not None and v != getattr(_DEFAULTS, k)]
        if changed or rules or gate_config is not None:
            raise UsageError(f"give gate=GateConfig(...) or the gate keywords ({', '.join(changed) or 'tolerance'}), "
                             "not both")
        return rtol, atol, gate
    if not 0 <= max_flip_rate <= 1:
        raise UsageError("max_flip_rate must be between 0 and 1")
    if drift_factor < 1:
        raise UsageError("drift_factor must be at least 1")
    if baseline is not None and not Path(baseline).is_file():
        raise UsageError(f"baseline {baseline}: no such file")
    if target_runtime is not None:
        from onnxgate.pipeline.gate.runtime_compat import minor

        try:
            minor(target_runtime)
        except ValueError:
            raise UsageError(f"target_runtime {target_runtime!r}: expected a version like 1.17") from None
    file_rules = load_file(Path(gate_config)) if gate_config is not None else {}
    return rtol, atol, GateConfig(
        sweep=sweep, edge_values=bool(ci if edge_values is None else edge_values), ci=ci,
        optimizer_check=optimizer_check, max_flip_rate=max_flip_rate, target_runtime=target_runtime,
        outputs=merge(file_rules, rules), baseline=Path(baseline) if baseline is not None else None,
        drift_factor=drift_factor, drift_floor=drift_floor,
    )
