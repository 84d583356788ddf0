"""The small dataclasses that plugins return from their hooks.

Nothing here imports a framework or onnx: building a spec must stay cheap so
that `onnxgate plugins` and source detection never pay for a framework import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .options import OptionSpec
from .versioning import adapt_inputs

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")

#: A dimension is an int (fixed) or a str/None (dynamic, optionally named).
Dim = Union[int, str, None]


def normalize_name(name: str) -> str:
    """Plugin and converter names are compared case-insensitively, `-` == `_`."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Tolerance:
    """Elementwise closeness: |actual - expected| <= atol + rtol * |expected|."""

    rtol: float = 1e-4
    atol: float = 1e-5


@dataclass(frozen=True)
class InputSpec:
    """One model input, enough to synthesise validation data without a sample."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    #: For integer inputs: values are drawn from [low, high).
    low: float = 0
    high: float = 10
    #: Names of a 2-D input's columns, in order (a model trained on a
    #: DataFrame): a sample with a header is ordered by them. () = positional.
    columns: tuple[str, ...] = ()
    #: (API 1.3) A sample may leave this input out (the model's default applies,
    #: e.g. a transformers model's ``token_type_ids``); synthesised samples hold it.
    optional: bool = False


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked of a conversion."""

    opset: int | None = None
    dynamic_batch: bool = True
    #: The converter's own options (``--option key=value`` on the CLI), checked
    #: against ``ConverterSpec.options`` and typed; defaults filled in.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Conversion:
    """What a converter's ``convert`` callable returns.

    ``model`` is an ``onnx.ModelProto``. ``exporter`` names the code path that
    produced it (e.g. ``"torch.onnx dynamo"``) and lands in the report.
    """

    model: Any
    exporter: str
    notes: list = field(default_factory=list)


#: load(path, trusted) -> model object. ``trusted`` is True only when the user
#: passed --trust-source; loaders must refuse anything that could run code
#: otherwise. A loader may take a third argument, the ConvertOptions, when the
#: file alone is not enough (``load(path, trusted, options)``).
Loader = Callable[..., Any]
#: convert(model, example_inputs, options) -> Conversion
ConvertFn = Callable[[Any, Mapping[str, Any], ConvertOptions], Conversion]
#: run(model, inputs) -> outputs of the ORIGINAL model, in the order of the
#: ONNX model's outputs (a sequence) or keyed by ONNX output name (a mapping).
RunFn = Callable[[Any, Mapping[str, Any]], Sequence[Any] | Mapping[str, Any]]
#: run_float64(model, inputs) -> the same outputs computed in float64, or None
#: when not applicable (API 1.3).
Float64RunFn = Callable[[Any, Mapping[str, Any]], Sequence[Any] | Mapping[str, Any] | None]
#: inputs(model, options) -> the model's input signature, or None when it
#: cannot be known (then the user must give --sample). ``options`` is the
#: ConvertOptions, so a plugin can take the signature from the user's
#: ``--option``s. The API 1.0 form inputs(model) is deprecated.
SignatureFn = Callable[[Any, ConvertOptions], Sequence[InputSpec] | None]
#: sniff(path) -> True when the file's content is this converter's format.
SniffFn = Callable[[Path], bool]


@dataclass
class Intermediate:
    """One layer or step of the ORIGINAL model and the ONNX tensor that holds
    the same value; used by ``onnxgate diagnose`` to find where outputs part."""

    #: Layer/step name in the source (``"encoder.fc2"``, ``"scaler"``).
    name: str
    #: Its kind (module class, estimator class), for the message.
    kind: str
    #: Name of the ONNX tensor computed for it.
    onnx_tensor: str
    #: The original model's value there (a numpy array).
    value: Any


#: text_sample(model, texts) -> validation inputs (arrays keyed by input name)
#: built from the user's ``--text`` strings, e.g. with the model's tokenizer.
TextSampleFn = Callable[[Any, Sequence[str]], Mapping[str, Any]]
#: intermediates(model, inputs, onnx_model) -> the original model's values at
#: its layers/steps, in execution order, each mapped to an ONNX tensor.
IntermediatesFn = Callable[[Any, Mapping[str, Any], Any], Sequence[Intermediate]]


@dataclass(frozen=True)
class ConverterSpec:
    """A converter from one source framework to ONNX.

    Detection data (``suffixes``, ``sniff``, ``object_types``) must be usable
    without importing the framework; the callables import it lazily.
    """

    name: str
    framework: str
    convert: ConvertFn
    #: None when the original model cannot run here (CoreML off macOS): the
    #: user then supplies expected outputs (--expected) or the verdict is
    #: "unverified".
    run: RunFn | None
    load: Loader | None = None
    inputs: SignatureFn | None = None
    #: File suffixes this converter reads, lower case with the dot (".skops").
    suffixes: tuple[str, ...] = ()
    #: Suffixes whose loading unpickles: refused unless the source is trusted.
    unsafe_suffixes: tuple[str, ...] = ()
    #: Optional content check, for suffixes several converters share (".json").
    sniff: SniffFn | None = None
    #: Dotted paths of classes (``"torch.nn.modules.module.Module"``); an
    #: object matches when one of them is in its type's MRO. The converter
    #: whose class sits closest to the object's own type wins.
    object_types: tuple[str, ...] = ()
    tolerance: Tolerance = Tolerance()
    #: Distribution names that must be installed (checked without importing).
    requires: tuple[str, ...] = ()
    #: Distribution whose version is reported as the framework version.
    framework_distribution: str | None = None
    #: Name of an isolated environment the converter runs in (see
    #: ``onnxgate_environments``); None = this interpreter.
    environment: str | None = None
    #: Exporter opset used when the user gives none.
    default_opset: int | None = None
    #: True for tree ensembles: validation may tolerate threshold-rounding flips.
    tree_ensemble: bool = False
    description: str = ""
    #: Optional: values at the original's layers/steps for diagnosis
    #: (``onnxgate diagnose``); None = only ONNX Runtime vs onnx.reference.
    intermediates: IntermediatesFn | None = None
    #: The options ``convert``/``load`` read from ``ConvertOptions.extra``
    #: (``--option KEY=VALUE``); any other key is refused.
    options: tuple[OptionSpec, ...] = ()
    #: Optional (API 1.3): the original run once more in float64, same
    #: signature and output order as ``run`` (float inputs cast to float64;
    #: None when not applicable). The gate measures the float32 run's own
    #: rounding noise against it and holds ONNX Runtime to a multiple of that
    #: noise (docs/validation.md). None = no noise floor: the scale-aware default.
    run_float64: Float64RunFn | None = None
    #: Optional (API 1.3): builds the sample from ``--text`` (text models);
    #: None = the converter takes no text.
    text_sample: TextSampleFn | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(normalize_name(self.name)):
            raise ValueError(f"invalid converter name {self.name!r}")
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "suffixes", tuple(s.lower() for s in self.suffixes))
        object.__setattr__(self, "unsafe_suffixes", tuple(s.lower() for s in self.unsafe_suffixes))
        object.__setattr__(self, "inputs", adapt_inputs(self.inputs, self.name))


@dataclass(frozen=True)
class EnvironmentSpec:
    """An isolated Python environment a converter needs (retired frameworks)."""

    name: str
    #: pip requirement lines, installed in order, each a list of pip arguments
    #: (``("--no-deps", "onnx-chainer==1.6.0")``). onnxgate adds one step of its
    #: own (the worker's needs: pluggy). Only the package registry is used.
    install_steps: tuple[tuple[str, ...], ...]
    #: Interpreter the venv is made from: a name looked up on PATH
    #: (``"python3.11"``) or an absolute path.
    python: str = "python3"
    description: str = ""
    #: Pins applied to every install step (``pip -c``), so a later step cannot
    #: move a version an earlier one chose (``"numpy==1.23.5"``).
    constraints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "install_steps", tuple(tuple(step) for step in self.install_steps))
        object.__setattr__(self, "constraints", tuple(self.constraints))


@dataclass(frozen=True)
class DeployTargetSpec:
    """A place validated models are registered and served (local, azureml...)."""

    name: str
    #: deploy(request) -> result dict; imports its SDK lazily.
    deploy: Callable[..., Any]
    requires: tuple[str, ...] = ()
    description: str = ""
    #: The target's command-line flags (``OptionSpec("endpoint")`` is
    #: ``onnxgate deploy --endpoint``); values arrive in ``request.options``
    #: by name, defaults filled in. Targets may share a flag of one type.
    options: tuple[OptionSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))


@dataclass
class CompareContext:
    """What a comparison rule may look at beyond its own output: every output
    of the case (both sides), the kind chosen for each, the model's classes."""

    actual: Mapping[str, Any]
    expected: Mapping[str, Any]
    #: Output name -> name of the rule that judges it.
    kinds: dict[str, str]
    #: The classifier's class list in column order, when the model declares one.
    classes: Sequence[Any] | None = None


class CompareRule:
    """How one kind of output is judged (classifier labels, embeddings...).

    Subclass it and yield an instance from ``onnxgate_compare_rules``. For each
    output the rule the user named (``--tolerance OUT:rule=NAME``) judges it,
    else the highest-``priority`` rule whose ``matches`` is true. The
    elementwise comparison (shape, NaN/inf, the tolerance)
    runs first on what ``prepare`` returns (the scale-aware default holds an
    element to ``atol + rtol * max|expected in its row|``, or to its own
    ``|expected|`` when ``per_element_scale``); the rule then adds ``metrics``
    and ``check`` turns them into failure reasons. ``settings`` holds the
    output's configured values by key (``rtol``, ``atol``, ``elementwise``
    and the rule's own ``keys``; None when not set).
    """

    name: str = ""
    #: Higher is tried first; the built-ins use 0 (any tensor) to 40 (labels).
    priority: int = 0
    #: Per-output settings the rule reads (``--tolerance OUT:KEY=VALUE``,
    #: ``[outputs.OUT]`` in ``--gate-config``); their defaults are documentation.
    keys: tuple[OptionSpec, ...] = ()
    #: False: the elementwise error never decides (labels: agreement does).
    elementwise: bool = True
    #: (API 1.3) True: the scale-aware default scales each element's bound by
    #: its own magnitude, not its row's (probabilities: a softmax's error on a
    #: class is proportional to that class's probability).
    per_element_scale: bool = False
    description: str = ""

    def matches(self, actual: Any, expected: Any) -> bool:
        """Whether this output (raw values as the runtimes returned them) is this kind."""
        return False

    def prepare(self, actual: Any, expected: Any, context: CompareContext) -> tuple[Any, Any, str]:
        """Both sides as comparable arrays, and a note for the report ("" = none)."""
        return actual, expected, ""

    def metrics(
        self, actual: Any, expected: Any, result: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Numbers for the report (``metrics``); ``result`` is the elementwise
        result. Both sides are arrays, ``actual`` in ``expected``'s shape when
        their sizes agree."""
        return {}

    def check(self, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
        """Why the output fails on this rule's own terms (empty: it passes them)."""
        return []


@dataclass(frozen=True)
class ReportFormat:
    """A rendering of the report (junit, html, markdown...).

    ``render(report) -> str | bytes`` receives the finished report document
    (the JSON report as a dict) and returns the file's content; onnxgate
    writes it atomically to the path the user gave (``--format NAME=PATH``).
    """

    name: str
    suffix: str
    render: Callable[[Mapping[str, Any]], str | bytes]
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(normalize_name(self.name)):
            raise ValueError(f"invalid report format name {self.name!r}")
        object.__setattr__(self, "name", normalize_name(self.name))
