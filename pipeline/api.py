"""The Python API, mirroring the CLI: ``convert`` and ``validate``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from onnxgate.plugins.manager import Registry
from onnxgate.plugins.spec import ConvertOptions, Tolerance
from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core import latency as latency_mod
from onnxgate.pipeline.core.session import Runtime
from onnxgate.pipeline.conversion import provenance
from onnxgate.pipeline.deployment import record
from onnxgate.pipeline.report import build as report_build
from onnxgate.pipeline.report import document as report_doc
from onnxgate.pipeline.report.model import OutputStats, Report
from onnxgate.pipeline.conversion import stage as stage_convert
from onnxgate.pipeline.gate import stage as stage_validate
from onnxgate.plugins.errors import UsageError
from onnxgate.pipeline.gate import config as gate_config_mod
from onnxgate.pipeline.gate.config import GateConfig
from onnxgate.pipeline.conversion.inputs import DEFAULT_SEED
from onnxgate.pipeline.conversion.sources import resolve
from onnxgate.pipeline.core.digest import sha256_bytes, sha256_path
from onnxgate.plugins.spec import Conversion

PathLike = Union[str, Path]


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
    runtime: Optional[Runtime] = None

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def verdict(self) -> str:
        return self.report.verdict

    @property
    def failures(self) -> List[str]:
        return list(self.report.failures)

    @property
    def outputs(self) -> Dict[str, OutputStats]:
        return self.report.outputs

    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()

    def save(self, path: PathLike, report_path: Optional[PathLike] = None) -> None:
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


def _tolerance(base: Tolerance, rtol: Optional[float], atol: Optional[float]) -> Tolerance:
    return Tolerance(rtol=base.rtol if rtol is None else rtol, atol=base.atol if atol is None else atol)


def run(
    source: Any,
    *,
    onnx_model: Any = None,
    onnx_sha256: Optional[str] = None,
    framework: Optional[str] = None,
    sample: Optional[PathLike] = None,
    opset: Optional[int] = None,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    trust_source: bool = False,
    dynamic_batch: bool = True,
    seed: int = DEFAULT_SEED,
    options: Optional[Dict[str, Any]] = None,
    registry: Optional[Registry] = None,
    expected: Optional[PathLike] = None,
    accept_unverified: bool = False,
    golden: Optional[PathLike] = None,
    stamp: bool = True,
    latency: bool = True,
    gate: Optional[GateConfig] = None,
    model_path: Optional[PathLike] = None,
    ci: Optional[bool] = None,
    gate_config: Optional[PathLike] = None,
    baseline: Optional[PathLike] = None,
) -> Result:
    """Convert ``source`` (or take ``onnx_model``) and validate it.

    ``golden``: a folder in the ONNX test-data layout (``test_data_set_N/
    input_K.pb, output_K.pb``); each set is a case with its expected outputs.
    ``stamp``: write onnxgate provenance into the model's metadata.
    ``latency``: time the original and onnxruntime per batch size (report ``latency``).
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
    src = resolve(source)
    spec = stage_convert.pick_converter(src, registry, framework)
    convert_options = ConvertOptions(opset=opset or spec.default_opset, dynamic_batch=dynamic_batch, extra=options or {})
    if onnx_model is not None:
        spec = _given_model_spec(spec, onnx_model)
    artifact = stage_convert.produce(
        spec, src,
        sample=Path(sample) if sample is not None else None,
        options=convert_options, trusted=trust_source, seed=seed,
        plugin=registry.plugin_of(spec.name),
        expected=Path(expected) if expected is not None else None,
        golden=Path(golden) if golden is not None else None,
        measure_latency=latency,
        gate=gate,
    )
    if onnx_model is None and stamp:  # a given model is validated byte for byte, not re-stamped
        provenance.stamp(artifact.model, {
            "version": report_doc.onnxgate_version(),
            "converter": artifact.converter["name"],
            "converter_version": artifact.converter["version"],
            "exporter": artifact.converter["exporter"],
            "framework": artifact.source["framework"],
            "framework_version": artifact.source["framework_version"],
            "source_sha256": artifact.source["sha256"],
        })
    ort = Runtime(artifact.model.SerializeToString())  # one session per optimisation level, for every use
    validation = stage_validate.validate(artifact, _tolerance(artifact.tolerance, rtol, atol), gate=gate, runtime=ort)
    runtime = latency_mod.runtime_pass(artifact, ort, measure=latency)  # latency, error histograms
    digest = onnx_sha256 or sha256_bytes(ort.model_bytes)
    onnx = report_build.onnx_info(artifact.model, str(model_path or ""), digest)
    report = report_build.build(artifact, validation, runtime, onnx=onnx, started=started,
                                accept_unverified=accept_unverified, gate=gate)
    return Result(model=artifact.model, report=report, artifact=artifact, runtime=ort)


def convert(source: Any, output: Optional[PathLike] = None, report: Optional[PathLike] = None,
            **kwargs: Any) -> Result:
    """Convert a model object, file or ``module:attr`` and validate the result.

    ``output``: save the model there (with its validation record, and the
    JSON report at ``report``), as ``onnxgate convert -o`` does; its baseline
    ``OUTPUT.baseline.json``, when present, gates drift.

    >>> result = convert(my_sklearn_model)          # doctest: +SKIP
    >>> result.passed, result.save("model.onnx")     # doctest: +SKIP
    """
    if report is not None and output is None:
        raise UsageError("report= needs output=: the report describes the saved model")
    if output is not None:
        atomic.check_writable(Path(output))  # before any costly work
        if report is not None:
            atomic.check_writable(Path(report))
    result = run(source, model_path=output, **kwargs)
    if output is not None:
        result.save(output, report)
    return result


def validate(source: Any, model: Union[PathLike, Any, None] = None, **kwargs: Any) -> Result:
    """Validate an existing ONNX model against the original ``source``.

    Without ``model``, ``source`` is itself the ONNX model (ready-made), checked
    as it is (``golden=DIR`` or ``expected=`` with ``sample=`` give its
    expected outputs).
    """
    if model is None:
        path = Path(source) if isinstance(source, (str, Path)) and Path(source).is_file() else None
        digest = sha256_path(path) if path else None
        return run(source, onnx_sha256=digest, stamp=False, model_path=path, **kwargs)
    onnx_model = load_onnx(model)  # checks the path first: a missing file is exit 2
    path = Path(model) if isinstance(model, (str, Path)) else None
    digest = sha256_path(path) if path else None
    return run(source, onnx_model=onnx_model, onnx_sha256=digest, model_path=path, **kwargs)


def load_onnx(model: Union[PathLike, Any]):
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
