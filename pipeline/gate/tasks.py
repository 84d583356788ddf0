"""Task-aware comparison: what each output IS decides how it is judged.

The kinds are comparison rules (``onnxgate.plugins.CompareRule``) that
plugins declare through ``onnxgate_compare_rules``; the built-ins
(classifier labels, probabilities, embeddings/logits, regression, any tensor)
live in ``rules.py``. For each output the rule the user named
(``OUT:rule=NAME``) judges it, else the highest-priority rule that matches.
This module runs them: prepare, elementwise comparison, metrics, verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from onnxgate.pipeline.core.arrays import as_array, is_zipmap
from onnxgate.pipeline.gate.compare import Noise, compare_output, row_mask
from onnxgate.pipeline.gate.config import GateConfig, OutputRule
from onnxgate.plugins import CompareContext, CompareRule, UsageError
from onnxgate.plugins.spec import Tolerance

CLASSIFIER_OPS = ("TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier", "ZipMap")


def model_classes(model) -> list[Any] | None:
    """The class list a converted classifier declares, in column order."""
    from onnx import helper

    for node in model.graph.node if model is not None else ():
        if node.op_type in CLASSIFIER_OPS:
            for attr in node.attribute:
                if attr.name in ("classlabels_strings", "classlabels_int64s"):
                    values = helper.get_attribute_value(attr)
                    if len(values):
                        return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


@lru_cache(maxsize=1)
def _registered_rules() -> tuple[CompareRule, ...]:
    from onnxgate.plugins.manager import Registry

    return tuple(Registry().compare_rules())


def rules_of(gate: GateConfig | None) -> Sequence[CompareRule]:
    """The rules a run uses: the gate's (``api.run`` sets them from its
    registry), else those of the installed plugins."""
    if gate is not None and gate.rules is not None:
        return gate.rules
    return _registered_rules()


def detect(actual: dict[str, Any], expected: dict[str, Any], gate: GateConfig | None = None) -> dict[str, CompareRule]:
    """The rule per output name."""
    rules = rules_of(gate)
    by_name = {rule.name: rule for rule in rules}
    chosen = {}
    for name, exp in expected.items():
        wanted = gate.rule(name).rule if gate is not None else None
        if wanted:
            if wanted not in by_name:
                raise UsageError(
                    f"output {name!r}: unknown comparison rule {wanted!r} (known: {', '.join(sorted(by_name))})"
                )
            chosen[name] = by_name[wanted]
            continue
        act = actual.get(name)
        chosen[name] = next((rule for rule in rules if rule.matches(act, exp)), _ELEMENTWISE)
    return chosen


class _Elementwise(CompareRule):
    """What judges an output no registered rule matches (all rule plugins disabled)."""

    name = "tensor"


_ELEMENTWISE = _Elementwise()


def _zipmap_keys(*values: Any) -> list[Any] | None:
    for value in values:
        if is_zipmap(value):
            return list(value[0])
    return None


def compare_case(
    actual: dict[str, Any],
    expected: dict[str, Any],
    tol: Tolerance,
    gate: GateConfig | None,
    classes: Sequence[Any] | None = None,
    noise: Mapping[str, float] | None = None,
    explicit: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray | None]]:
    """Results per output (report entries) and per-output row masks (True = row disagrees).
    ``noise``: the original's float32 noise floor per output (stage 1's float64
    run); ``explicit``: the run's rtol/atol are the user's, not the converter's."""
    gate = gate or GateConfig()
    chosen = detect(actual, expected, gate)
    context = CompareContext(
        actual=actual,
        expected=expected,
        kinds={n: r.name for n, r in chosen.items()},
        classes=classes or _zipmap_keys(*actual.values(), *expected.values()),
    )
    results, masks = [], {}
    for name, exp in expected.items():
        rule, settings = chosen[name], gate.rule(name)
        out_tol = settings.tolerance(tol)
        out_noise = noise_of(name, noise, gate, explicit)
        act, exp, note = rule.prepare(actual[name], exp, context)
        per_element = bool(getattr(rule, "per_element_scale", False)) or _computed_in_float64(exp)
        result = compare_output(name, act, exp, out_tol, out_noise, per_element)
        result["task"] = rule.name
        if note:
            result["normalised"] = note
        mask = row_mask(act, exp, out_tol, out_noise, per_element)
        metrics = dict(rule.metrics(*_lined_up(act, exp), result, settings))
        if mask is not None and len(mask):
            metrics["rows"] = int(len(mask))
            metrics["rows_mismatched"] = int(mask.sum())
        result["metrics"] = metrics
        _apply_gates(rule, settings, result, metrics)
        results.append(result)
        masks[name] = mask
    return results, masks


def _computed_in_float64(expected: Any) -> bool:
    """The original gave float64 (scikit-learn): no float32 accumulation of its
    own to scale by a row, so each element keeps its own magnitude, as before
    the scale-aware rule (docs/validation.md)."""
    return getattr(expected, "dtype", None) == np.float64


def noise_of(name: str, noise: Mapping[str, float] | None, gate: GateConfig, explicit: bool = False) -> Noise | None:
    """The float32-noise bound for one output, or None for the scale-aware
    default: no floor measured, multiple 0, or a tolerance the user set (the
    run's --rtol/--atol, or the output's own rtol/atol) which is then the rule."""
    floor = (noise or {}).get(name)
    settings = gate.rule(name)
    multiple = settings.noise_multiple if settings.noise_multiple is not None else gate.noise_multiple
    if floor is None or not multiple or explicit or settings.rtol is not None or settings.atol is not None:
        return None
    return Noise(float(floor), float(multiple))


def _lined_up(actual: Any, expected: Any) -> tuple[np.ndarray, np.ndarray]:
    """Arrays, ``actual`` in ``expected``'s shape when only the shape differs
    ((n, 1) against (n,)): what a rule's metrics can take element by element."""
    a, e = as_array(actual), as_array(expected)
    if a.shape != e.shape and a.size == e.size:
        a = a.reshape(e.shape)
    return a, e


def _apply_gates(rule: CompareRule, settings: OutputRule, result, metrics) -> None:
    """The rule's gates on top of (or instead of) the elementwise verdict."""
    if "shape" in result.get("reason", "") and not result["passed"]:
        return  # nothing lines up: no metric can rescue it
    reasons = list(rule.check(metrics, settings))
    if rule.elementwise and settings.elementwise is not False and not result["passed"]:
        reasons.insert(0, result["reason"])
    passed = not reasons
    result["passed"] = passed
    result["reason"] = "; ".join(r for r in reasons if r) if not passed else ""
    if settings.elementwise is False:
        result["elementwise_gated"] = False
