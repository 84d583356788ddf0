"""The report as a typed document: what ``Result.report`` is.

Built in one place (``pipeline.report.build``), serialised to the JSON of
``report.schema.json`` by ``to_dict``/``to_json`` and read back by
``Report.from_dict``/``Report.read``. Optional parts are None when absent and
then left out of the JSON; ``extra`` holds keys the schema leaves open (task
metrics of an output, for example) and is written inline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from onnxgate.plugins.spec import Tolerance

SCHEMA_VERSION = 1


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: list[Any]


@dataclass
class SourceInfo:
    path: str = ""
    reference: str = ""
    sha256: str = ""
    framework: str = ""
    framework_version: str = ""


@dataclass
class ConverterInfo:
    plugin: str = ""
    name: str = ""
    version: str = ""
    exporter: str = ""
    opset: int = 0
    #: The plugin's distribution: whom to tell when the conversion is wrong.
    distribution: str = ""


@dataclass
class OnnxInfo:
    path: str
    sha256: str
    ir_version: int
    opsets: dict[str, int]
    inputs: list[Tensor]
    outputs: list[Tensor]


@dataclass
class Check:
    name: str
    passed: bool
    message: str


@dataclass
class OutputResult:
    """One output of one case, compared with the original's."""

    name: str
    shape: list[int] | None = None
    expected_shape: list[int] | None = None
    dtype: str | None = None
    rtol: float | None = None
    atol: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mismatch_fraction: float | None = None
    passed: bool = True
    reason: str = ""
    #: Task-aware comparison (pipeline.gate.tasks): the task and its metrics.
    task: str | None = None
    metrics: dict[str, Any] | None = None
    #: The same case with graph optimisations off, and who is to blame.
    optimizer: dict[str, Any] | None = None
    attribution: str | None = None
    #: Tree ensembles: why a failing output was tolerated, and the failure.
    tolerated: str | None = None
    failed_reason: str | None = None
    #: The tolerance rule that judged it (gate.compare): "float32-noise" with the
    #: original's float32 noise floor and its multiple, or "scale-aware"; the
    #: absolute error bound it applied.
    tolerance_rule: str | None = None
    noise_floor: float | None = None
    noise_multiple: float | None = None
    bound: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    """One set of inputs run through onnxruntime."""

    name: str
    kind: str = "base"
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    outputs: list[OutputResult] = field(default_factory=list)
    passed: bool = True
    #: Sweep and edge-value cases: the swept axis and size, the edge kind.
    axis: Any | None = None
    size: int | None = None
    edge: str | None = None
    #: The original rejected these inputs: nothing to hold ONNX to.
    skipped: Any | None = None
    error: str | None = None
    unverified: bool | None = None
    tree_flips: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputStats:
    """One output over every compared case (``Result.outputs[name]``)."""

    name: str
    passed: bool
    max_abs_err: float
    max_rel_err: float
    mismatch_fraction: float
    cases: int
    #: The original's largest float32 noise floor over those cases (None: not measured).
    noise_floor: float | None = None


@dataclass
class Report:
    """One report per model run; ``passed``/``verdict``/``failures`` come from
    ``pipeline.gate.verdict.decide`` and nowhere else."""

    created: str
    passed: bool
    verdict: str
    failures: list[str]
    source: SourceInfo
    converter: ConverterInfo
    onnx: OnnxInfo
    tolerance: Tolerance
    seed: int
    notes: list[str]
    checks: list[Check]
    cases: list[CaseResult]
    timings: dict[str, float]
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    gate: dict[str, Any] | None = None
    runtime_compat: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    tree_flips: dict[str, Any] | None = None
    error_histograms: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def case(self, name: str) -> CaseResult | None:
        return next((c for c in self.cases if c.name == name), None)

    @property
    def outputs(self) -> dict[str, OutputStats]:
        """Per output, the worst error over the cases that compared it."""
        found: dict[str, list[OutputResult]] = {}
        for case in self.cases:
            if case.skipped:
                continue
            for out in case.outputs:
                found.setdefault(out.name, []).append(out)
        return {
            name: OutputStats(
                name=name,
                passed=all(o.passed for o in outs),
                max_abs_err=max(_num(o.max_abs_err) for o in outs),
                max_rel_err=max(_num(o.max_rel_err) for o in outs),
                mismatch_fraction=max(_num(o.mismatch_fraction) for o in outs),
                cases=len(outs),
                noise_floor=max((o.noise_floor for o in outs if o.noise_floor is not None), default=None),
            )
            for name, outs in found.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``report.schema.json``); floats stay floats."""
        first = {"schema_version": self.schema_version}
        return {**first, **{k: v for k, v in _to_plain(self).items() if k != "schema_version"}}

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return _from_plain(cls, data)

    @classmethod
    def read(cls, path: str | Path) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def as_dict(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Renderers take the JSON form: a report read from a file renders the same."""
    return report.to_dict() if isinstance(report, Report) else report


def plain(value: Any) -> Any:
    """Any part of the document (``OnnxInfo``, ``CaseResult``...) in its JSON form."""
    return _to_plain(value)


def _num(value: Any) -> float:
    if isinstance(value, str):  # "inf"/"nan" as read back from JSON
        return float(value)
    return float(value) if value is not None else 0.0


def _clean(value):
    """JSON has no NaN/Infinity: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(document: Report | dict[str, Any]) -> str:
    return json.dumps(_clean(as_dict(document)), indent=2, sort_keys=False, default=str) + "\n"


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name == "extra":
                out.update({k: _to_plain(v) for k, v in item.items()})
            elif item is not None or f.default is not None:
                out[f.name] = _to_plain(item)
        return out
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(cls: Any, data: Any) -> Any:
    """The dataclass ``cls`` from its JSON form; unknown keys go to ``extra``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key in names and key != "extra":
            kwargs[key] = _typed(hints[key], value)
        else:
            extra[key] = value
    if "extra" in names:
        kwargs["extra"] = extra
    return cls(**kwargs)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:  # Optional[X]
        return _typed(next(a for a in args if a is not type(None)), value)
    if origin in (list, list) and args and dataclasses.is_dataclass(args[0]):
        return [_from_plain(args[0], v) for v in value]
    if dataclasses.is_dataclass(hint):
        return _from_plain(hint, value)
    return value
