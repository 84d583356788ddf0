"""The Python API, mirroring the CLI: ``convert``, ``validate`` and ``deploy``.

Data arguments (``sample``, ``expected``) take a file path, as on the CLI,
or the data itself: numpy arrays, lists, torch and TensorFlow tensors, pandas
DataFrames, or dicts of these keyed by input (output) name. See docs/api.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from onnxgate.pipeline.conversion import provenance
from onnxgate.pipeline.conversion import stage as stage_convert
from onnxgate.pipeline.conversion.inputs import DEFAULT_SEED
from onnxgate.pipeline.conversion.sources import resolve
from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core import latency as latency_mod
from onnxgate.pipeline.core.digest import sha256_bytes, sha256_path
from onnxgate.pipeline.core.session import Runtime
from onnxgate.pipeline.deployment import record
from onnxgate.pipeline.gate import config as gate_config_mod
from onnxgate.pipeline.gate import stage as stage_validate
from onnxgate.pipeline.gate import tasks
from onnxgate.pipeline.gate.compare import DEFAULT_NOISE_MULTIPLE
from onnxgate.pipeline.gate.config import GateConfig
from onnxgate.pipeline.report import build as report_build
from onnxgate.pipeline.report import document as report_doc
from onnxgate.pipeline.report.model import OutputStats, Report
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.manager import Registry
from onnxgate.plugins.options import parse_options
from onnxgate.plugins.spec import Conversion, ConvertOptions, Tolerance

if TYPE_CHECKING:
    import onnxruntime

    from onnxgate.pipeline.deployment.handles import Deployment
    from onnxgate.pipeline.gate.keywords import ToleranceLike

PathLike = Union[str, Path]
#: A file path or in-memory data: ndarray, list, torch/TF tensor, DataFrame, or a dict of these by name.
Data = Any


@dataclass
class Result:
    """A converted (or given) ONNX model and the gate's typed report on it.

    ``result.passed``, ``result.verdict``, ``result.failures``, and
    ``result.outputs["probabilities"].max_abs_err`` (per output, worst over
    the cases); ``result.report`` is the whole ``Report`` (``to_dict()``,
    ``to_json()``).
    """

    model: Any  # onnx.ModelProto
    report: Report
    artifact: Any = None
    #: The onnxruntime sessions and outputs of the run (``core.session.Runtime``).
    runtime: Runtime | None = None

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def verdict(self) -> str:
        return self.report.verdict

    @property
    def failures(self) -> list[str]:
        return list(self.report.failures)

    @property
    def outputs(self) -> dict[str, OutputStats]:
        return self.report.outputs

    def _report_dict(self) -> dict[str, Any]:
        """The report as a plain dict (the one accessor the methods below read)."""
        return self.report.to_dict()

    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()

    def onnx_bytes(self) -> bytes:
        """The ONNX model, serialised (what ``save`` writes)."""
        return self.model_bytes()

    def session(self, providers: list | None = None) -> onnxruntime.InferenceSession:
        """An onnxruntime session on this model, ready for ``session.run(None, {name: array})``."""
        import onnxruntime as ort

        from onnxgate.pipeline.core.session import load_session

        if providers is None:
            return load_session(self.model_bytes())
        return ort.InferenceSession(self.model_bytes(), providers=providers)

    def deploy(self, target: str = "local", **kwargs: Any) -> Deployment:
        """Register and deploy this model: ``onnxgate.pipeline.deploy(self, target, **kwargs)``.

        A result that did not pass the gate is refused, as on the CLI.
        """
        from onnxgate.pipeline.deployment.handles import deploy

        return deploy(self, target, **kwargs)

    def __repr__(self) -> str:
        from onnxgate.pipeline.report.summary import worst

        report = self._report_dict()
        conv, source = report.get("converter", {}), report.get("source", {})
        cases = report.get("cases", [])
        outputs = sum(len(c.get("outputs", [])) for c in cases)
        text = (
            f"<Result {str(report.get('verdict', 'passed' if report.get('passed') else 'failed')).upper()}: "
            f"{source.get('framework', '?')} via {conv.get('name', '?')} ({conv.get('exporter', '?')}), "
            f"opset {conv.get('opset', '?')}; {len(cases)} cases, {outputs} outputs compared, "
            f"max abs err {worst(report, 'max_abs_err'):.3g}"
        )
        failures = report.get("failures") or []
        if failures:
            text += f"; {len(failures)} failure{'s' if len(failures) > 1 else ''}: {str(failures[0])[:120]}"
        return text + ">"

    def _repr_html_(self) -> str:
        """Jupyter: the self-contained HTML report, inline (in an iframe, so its styles stay its own)."""
        from html import escape

        from onnxgate.pipeline.report.html import to_html

        page = to_html(self._report_dict())
        return (
            f'<iframe srcdoc="{escape(page, quote=True)}" sandbox="allow-scripts" '
            'style="width:100%;height:640px;border:1px solid #e6e9f0;border-radius:8px" '
            'title="onnxgate report"></iframe>'
        )

    def save(self, path: PathLike, report_path: PathLike | None = None) -> None:
        """Write the model (and the report) atomically, and the validation
        record deploy's gate reads, bound to the bytes just written."""
        path = Path(path)
        atomic.check_writable(path)
        if report_path is not None:
            atomic.check_writable(Path(report_path))
        self.report.onnx.path = str(path)  # the report describes the file it was saved as
        atomic.write_bytes(path, self.model_bytes())
        if report_path is not None:
            report_doc.write(self.report, Path(report_path))
        record.write_for(self, path)


def _tolerance(base: Tolerance, rtol: float | None, atol: float | None) -> Tolerance:
    return Tolerance(rtol=base.rtol if rtol is None else rtol, atol=base.atol if atol is None else atol)


def _converter_options(spec, options: dict[str, Any], plugin: str) -> dict[str, Any]:
    """The converter's declared options, typed; unknown ones are a usage error.

    Plugin API 1.2 made declaring options (``ConverterSpec.options``) a rule;
    a third-party converter that declares none still gets its options as
    given, with a DeprecationWarning, as the versioning policy promises."""
    from onnxgate.plugins.manager import plugin_distribution

    if options and not spec.options and plugin_distribution(plugin)[0] not in ("", "onnxgate"):
        import warnings

        warnings.warn(
            f"converter {spec.name!r} declares no options but was given {sorted(options)}: declare them with "
            "ConverterSpec.options (OptionSpec); undeclared options are refused from plugin API 2.0",
            DeprecationWarning,
            stacklevel=3,
        )
        return dict(options)
    return parse_options(spec.options, options, f"converter {spec.name!r}")


def _with_rules(gate: GateConfig, registry: Registry) -> GateConfig:
    """The gate with its registry's comparison rules (a registry without any,
    built without entry points, leaves the installed ones); a rule named for
    an output must exist (checked before any conversion work)."""
    if gate.rules is None and registry.compare_rules():
        gate = replace(gate, rules=tuple(registry.compare_rules()))
    known = {rule.name for rule in tasks.rules_of(gate)}
    for output, settings in gate.outputs.items():
        if settings.rule is not None and settings.rule not in known:
            raise UsageError(
                f"output {output!r}: unknown comparison rule {settings.rule!r} (known: {', '.join(sorted(known))})"
            )
    return gate


def run(
    source: Any,
    *,
    onnx_model: Any = None,
    onnx_sha256: str | None = None,
    framework: str | None = None,
    sample: PathLike | None = None,
    opset: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    trust_source: bool = False,
    dynamic_batch: bool = True,
    seed: int = DEFAULT_SEED,
    options: dict[str, Any] | None = None,
    registry: Registry | None = None,
    expected: PathLike | None = None,
    accept_unverified: bool = False,
    golden: PathLike | None = None,
    stamp: bool = True,
    latency: bool = True,
    gate: GateConfig | None = None,
    model_path: PathLike | None = None,
    ci: bool | None = None,
    gate_config: PathLike | None = None,
    baseline: PathLike | None = None,
    input_map: Mapping[str, str] | None = None,
    reference_timeout: float | None = None,
    upgrade_opset: int | None = None,
    text: Sequence[str] | str | None = None,
) -> Result:
    """Convert ``source`` (or take ``onnx_model``) and validate it.

    ``golden``: a folder in the ONNX test-data layout (``test_data_set_N/
    input_K.pb, output_K.pb``); each set is a case with its expected outputs.
    ``stamp``: write onnxgate provenance into the model's metadata.
    ``latency``: time the original and onnxruntime per batch size (report ``latency``).
    ``input_map``: ``{sample array name: model input name}`` for samples
    keyed by other names than the source's or the ONNX model's.
    ``reference_timeout``: seconds onnx.reference may take to compute the
    expected outputs of a ready-made ONNX model without golden data.
    ``upgrade_opset``: move a ready-made ONNX model to this opset with
    onnx.version_converter (in a subprocess) and validate the result.
    ``gate``: shape sweep, edge values, per-output rules, tree flips, target
    runtime, drift baseline (``pipeline.gate.config.GateConfig``), used as
    given. Without it the gate is built as the CLI builds it
    (``gate.config.resolve``): ``ci`` or the ``CI`` environment variable turn
    edge values on, ``gate_config`` is a per-output rules file, and
    ``baseline`` (default: ``MODEL.onnx.baseline.json`` beside ``model_path``)
    gates drift.
    """
    started = time.perf_counter()
    if gate is None:
        gate = gate_config_mod.resolve(model_path=model_path, ci=ci, gate_config=gate_config, baseline=baseline)
    elif ci is not None or gate_config is not None or baseline is not None:
        raise UsageError("pass either gate=GateConfig(...) or ci/gate_config/baseline, not both")
    registry = registry or Registry()
    gate = _with_rules(gate, registry)
    src = resolve(source)
    spec = stage_convert.pick_converter(src, registry, framework)
    options = dict(options or {})
    if upgrade_opset is not None:
        if spec.name != "onnx":
            raise UsageError(f"--upgrade-opset applies to ready-made ONNX models; this source is {spec.framework}")
        options["upgrade_opset"] = int(upgrade_opset)
    extra = _converter_options(spec, options, registry.plugin_of(spec.name))
    convert_options = ConvertOptions(opset=opset or spec.default_opset, dynamic_batch=dynamic_batch, extra=extra)
    if onnx_model is not None:
        spec = _given_model_spec(spec, onnx_model)
    artifact = stage_convert.produce(
        spec,
        src,
        sample=_data(sample),
        options=convert_options,
        trusted=trust_source,
        seed=seed,
        plugin=registry.plugin_of(spec.name),
        expected=_data(expected),
        golden=Path(golden) if golden is not None else None,
        measure_latency=latency,
        gate=gate,
        input_map=input_map,
        reference_timeout=reference_timeout,
        text=[text] if isinstance(text, str) else text,
    )
    if onnx_model is None and stamp:  # a given model is validated byte for byte, not re-stamped
        provenance.stamp(
            artifact.model,
            {
                "version": report_doc.onnxgate_version(),
                "converter": artifact.converter["name"],
                "converter_version": artifact.converter["version"],
                "exporter": artifact.converter["exporter"],
                "framework": artifact.source["framework"],
                "framework_version": artifact.source["framework_version"],
                "source_sha256": artifact.source["sha256"],
            },
        )
    model_bytes = artifact.model.SerializeToString()
    ort = Runtime(model_bytes)  # one session per optimisation level, for every use
    validation = stage_validate.validate(artifact, _tolerance(artifact.tolerance, rtol, atol), gate=gate, runtime=ort)
    runtime = latency_mod.runtime_pass(artifact, ort, measure=latency)  # latency, error histograms
    # a file's digest describes the validated model only when that file is the ONNX model itself
    file_is_model = onnx_model is not None or spec.framework == "ONNX"
    digest = (onnx_sha256 if file_is_model else None) or sha256_bytes(model_bytes)
    onnx = report_build.onnx_info(artifact.model, str(model_path or ""), digest)
    report = report_build.build(
        artifact, validation, runtime, onnx=onnx, started=started, accept_unverified=accept_unverified, gate=gate
    )
    return Result(model=artifact.model, report=report, artifact=artifact, runtime=ort)


_COMMON_DOC = """
    Data (the CLI's ``--sample``/``--expected``, by the same names):

    - ``sample``: validation inputs: a file (``.npz`` keyed by input name,
      ``.npy``, ``.csv``) or the data itself: a numpy array, list, torch or
      TensorFlow tensor or pandas DataFrame for a single-input model, or a
      dict of these keyed by input name. Default: synthesised from the
      model's declared inputs with ``seed``.
    - ``expected``: the original's outputs on ``sample`` (when it cannot run
      here): ``.npz`` keyed by ONNX output name, a dict of arrays keyed by
      output name, or one array for a single-output model.
    - ``golden``: a folder in the ONNX test-data layout.

    Conversion: ``framework`` (default: detected), ``trust_source`` (allow
    unpickling), ``static_batch`` (do not make the batch dynamic), ``seed``,
    ``options`` (converter-specific, the CLI's ``--option KEY=VALUE``),
    ``text`` (a string or strings: the converter builds the sample from
    them, e.g. a Hugging Face folder's tokenizer; the CLI's ``--text``),
    ``input_map`` (``{sample name: model input}``), ``upgrade_opset`` (move a
    ready-made ONNX model to this opset with onnx.version_converter first),
    ``reference_timeout`` (seconds onnx.reference may take for a ready-made
    model without golden data).

    Gate: ``rtol``/``atol`` (default: the converter's), ``tolerance`` (a
    ``Tolerance``, or per-output rules ``{"probabilities": Tolerance(...) or
    {"rtol": 1e-3, "min_agreement": 0.99, ...}}``), ``gate_config`` (a .toml
    or .json rules file), ``accept_unverified``, ``sweep``, ``edge_values``
    (default: on when ``ci``), ``ci``, ``max_flip_rate``, ``target_runtime``,
    ``optimizer_check``, ``baseline`` (a baseline file: drift check; none by
    default), ``drift_factor``, ``drift_floor``, ``float64_reference`` (run
    the original once more in float64 to measure its float32 noise floor;
    ``--float64-reference``), ``noise_multiple`` (ONNX errors within this
    multiple of that floor pass; ``--noise-multiple``), ``latency`` (time both
    models). ``gate``: a ready ``GateConfig`` instead of the gate keywords.

    Raises ``UsageError`` (bad input, exit 2 on the CLI), ``UntrustedSourceError``
    and ``ConversionError`` (exit 3). A model that fails the gate is not an
    exception: ``result.passed`` is False and ``result.report`` says why.
"""


def _gate(
    rtol,
    atol,
    tolerance,
    gate,
    gate_config,
    sweep,
    edge_values,
    ci,
    max_flip_rate,
    target_runtime,
    optimizer_check,
    baseline,
    drift_factor,
    drift_floor,
    float64_reference=True,
    noise_multiple=DEFAULT_NOISE_MULTIPLE,
    model_path=None,
) -> dict[str, Any]:
    from onnxgate.pipeline.gate import keywords

    rtol, atol, gate = keywords.resolve(
        rtol=rtol,
        atol=atol,
        tolerance=tolerance,
        gate=gate,
        gate_config=gate_config,
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
        model_path=model_path,
    )
    return {"rtol": rtol, "atol": atol, "gate": gate}


def convert(
    source: Any,
    output: PathLike | None = None,
    report: PathLike | None = None,
    *,
    sample: Data = None,
    expected: Data = None,
    golden: PathLike | None = None,
    framework: str | None = None,
    opset: int | None = None,
    trust_source: bool = False,
    static_batch: bool = False,
    seed: int = DEFAULT_SEED,
    options: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: ToleranceLike = None,
    gate_config: PathLike | None = None,
    accept_unverified: bool = False,
    sweep: bool = True,
    edge_values: bool | None = None,
    ci: bool | None = None,
    max_flip_rate: float = 0.0,
    target_runtime: str | None = None,
    optimizer_check: bool = True,
    baseline: PathLike | None = None,
    drift_factor: float = 10.0,
    drift_floor: float = 1e-6,
    float64_reference: bool = True,
    noise_multiple: float = DEFAULT_NOISE_MULTIPLE,
    latency: bool = True,
    gate: GateConfig | None = None,
    dynamic_batch: bool | None = None,
    registry: Registry | None = None,
    input_map: Mapping[str, str] | None = None,
    reference_timeout: float | None = None,
    upgrade_opset: int | None = None,
    text: Sequence[str] | str | None = None,
) -> Result:
    """Convert ``source`` to ONNX and validate it against the original.

    ``source``: a model object (estimator, ``nn.Module``, Keras model...), a
    model file or folder, or ``"package.module:attribute"``. ``opset``: the
    target ONNX opset (default: the converter's).
    ``dynamic_batch``: the inverse of ``static_batch`` (kept for older callers).
    ``output``: save the model there (with its validation record, and the
    JSON report at ``report``), as ``onnxgate convert -o`` does; its baseline
    ``OUTPUT.baseline.json``, when present, gates drift.

    >>> result = convert(model, sample=X[:10])     # doctest: +SKIP
    >>> result.passed, result.save("model.onnx")   # doctest: +SKIP
    """
    if report is not None and output is None:
        raise UsageError("report= needs output=: the report describes the saved model")
    if output is not None:
        atomic.check_writable(Path(output))  # before any costly work
        if report is not None:
            atomic.check_writable(Path(report))
    result = run(
        source,
        sample=sample,
        expected=expected,
        golden=golden,
        framework=framework,
        opset=opset,
        trust_source=trust_source,
        dynamic_batch=_dynamic(static_batch, dynamic_batch),
        seed=seed,
        options=dict(options or {}),
        accept_unverified=accept_unverified,
        latency=latency,
        registry=registry,
        model_path=output,
        input_map=input_map,
        reference_timeout=reference_timeout,
        upgrade_opset=upgrade_opset,
        text=text,
        **_gate(
            rtol,
            atol,
            tolerance,
            gate,
            gate_config,
            sweep,
            edge_values,
            ci,
            max_flip_rate,
            target_runtime,
            optimizer_check,
            baseline,
            drift_factor,
            drift_floor,
            float64_reference,
            noise_multiple,
            model_path=output,
        ),
    )
    if output is not None:
        result.save(output, report)
    return result


def validate(
    source: Any,
    model: PathLike | Any | None = None,
    *,
    sample: Data = None,
    expected: Data = None,
    golden: PathLike | None = None,
    framework: str | None = None,
    opset: int | None = None,
    trust_source: bool = False,
    static_batch: bool = False,
    seed: int = DEFAULT_SEED,
    options: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: ToleranceLike = None,
    gate_config: PathLike | None = None,
    accept_unverified: bool = False,
    sweep: bool = True,
    edge_values: bool | None = None,
    ci: bool | None = None,
    max_flip_rate: float = 0.0,
    target_runtime: str | None = None,
    optimizer_check: bool = True,
    baseline: PathLike | None = None,
    drift_factor: float = 10.0,
    drift_floor: float = 1e-6,
    float64_reference: bool = True,
    noise_multiple: float = DEFAULT_NOISE_MULTIPLE,
    latency: bool = True,
    gate: GateConfig | None = None,
    dynamic_batch: bool | None = None,
    registry: Registry | None = None,
    input_map: Mapping[str, str] | None = None,
    reference_timeout: float | None = None,
    upgrade_opset: int | None = None,
    text: Sequence[str] | str | None = None,
) -> Result:
    """Validate an existing ONNX ``model`` (a path or ``onnx.ModelProto``) against the original ``source``.

    Without ``model``, ``source`` is itself the ONNX model (ready-made), checked
    as it is (``golden=DIR`` or ``expected=`` with ``sample=`` give its
    expected outputs). ``opset``: for a ready-made model, move it to this
    opset first (onnx.version_converter).
    """
    extra: dict[str, Any]  # keyword arguments for run()
    if model is None:
        path = Path(source) if isinstance(source, (str, Path)) and Path(source).is_file() else None
        onnx_model, extra = None, {"stamp": False}
    else:
        onnx_model = load_onnx(model)  # checks the path first: a missing file is exit 2
        path = Path(model) if isinstance(model, (str, Path)) else None
        extra = {"onnx_model": onnx_model}
    return run(
        source,
        onnx_sha256=sha256_path(path) if path else None,
        model_path=path,
        **extra,
        sample=sample,
        expected=expected,
        golden=golden,
        framework=framework,
        opset=opset,
        trust_source=trust_source,
        dynamic_batch=_dynamic(static_batch, dynamic_batch),
        seed=seed,
        options=dict(options or {}),
        accept_unverified=accept_unverified,
        latency=latency,
        registry=registry,
        input_map=input_map,
        reference_timeout=reference_timeout,
        upgrade_opset=upgrade_opset,
        text=text,
        **_gate(
            rtol,
            atol,
            tolerance,
            gate,
            gate_config,
            sweep,
            edge_values,
            ci,
            max_flip_rate,
            target_runtime,
            optimizer_check,
            baseline,
            drift_factor,
            drift_floor,
            float64_reference,
            noise_multiple,
            model_path=path,
        ),
    )


convert.__doc__ = (convert.__doc__ or "") + _COMMON_DOC
validate.__doc__ = (validate.__doc__ or "") + _COMMON_DOC


def _dynamic(static_batch: bool, dynamic_batch: bool | None) -> bool:
    if dynamic_batch is not None:
        if static_batch and dynamic_batch:
            raise UsageError("static_batch=True and dynamic_batch=True contradict each other")
        return dynamic_batch
    return not static_batch


def _data(value: Data) -> Any:
    """Paths as Path; in-memory data as it is (conversion.samples reads both)."""
    return Path(value) if isinstance(value, str) else value


def load_onnx(model: PathLike | Any):
    import onnx

    if not isinstance(model, (str, Path)):
        return model
    path = Path(model)
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise UsageError(f"{path}: not a readable ONNX model: {type(exc).__name__}") from exc


def _given_model_spec(spec, onnx_model):
    """The source's converter, with ``convert`` returning the given model."""
    from dataclasses import replace

    def given(model, example, options):
        return Conversion(onnx_model, exporter="given")

    # a converter running in another environment gets the model as a file (environments.py)
    given.onnxgate_given_model = onnx_model
    return replace(spec, convert=given)
