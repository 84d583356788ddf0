"""The Python API, mirroring the CLI: ``convert`` and ``validate``."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from onnxgate.plugins.manager import Registry
from onnxgate.plugins.spec import ConvertOptions, Tolerance
from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core import latency as latency_mod
from onnxgate.pipeline.conversion import provenance
from onnxgate.pipeline.report import document as report_mod
from onnxgate.pipeline.conversion import stage as stage_convert
from onnxgate.pipeline.gate import stage as stage_validate
from onnxgate.plugins.errors import UsageError
from onnxgate.pipeline.gate.config import GateConfig
from onnxgate.pipeline.conversion.inputs import DEFAULT_SEED
from onnxgate.pipeline.conversion.sources import resolve, sha256_path

PathLike = Union[str, Path]


@dataclass
class Result:
    """A converted (or given) ONNX model and the gate's report on it."""

    model: Any  # onnx.ModelProto
    report: Dict[str, Any]
    artifact: Any = None

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()

    def save(self, path: PathLike, report_path: Optional[PathLike] = None) -> None:
        """Write the model (and the report) atomically."""
        path = Path(path)
        atomic.check_writable(path)
        if report_path is not None:
            atomic.check_writable(Path(report_path))
        self.report["onnx"]["path"] = str(path)
        atomic.write_bytes(path, self.model_bytes())
        if report_path is not None:
            report_mod.write(self.report, Path(report_path))
        # deploy's gate reads this record, bound to the bytes just written
        from onnxgate.pipeline.deployment import record

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
    input_map: Optional[Dict[str, str]] = None,
    reference_timeout: Optional[float] = None,
    upgrade_opset: Optional[int] = None,
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
    runtime, drift baseline (``pipeline.gate_config.GateConfig``).
    """
    started = time.perf_counter()
    gate = gate or GateConfig()
    registry = registry or Registry()
    src = resolve(source)
    spec = stage_convert.pick_converter(src, registry, framework)
    options = dict(options or {})
    if upgrade_opset is not None:
        if spec.name != "onnx":
            raise UsageError(f"--upgrade-opset applies to ready-made ONNX models; this source is {spec.framework}")
        options["upgrade_opset"] = int(upgrade_opset)
    convert_options = ConvertOptions(opset=opset or spec.default_opset, dynamic_batch=dynamic_batch, extra=options)
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
        input_map=input_map,
        reference_timeout=reference_timeout,
    )
    if onnx_model is None and stamp:  # a given model is validated byte for byte, not re-stamped
        provenance.stamp(artifact.model, {
            "version": report_mod.onnxgate_version(),
            "converter": artifact.converter["name"],
            "converter_version": artifact.converter["version"],
            "exporter": artifact.converter["exporter"],
            "framework": artifact.source["framework"],
            "framework_version": artifact.source["framework_version"],
            "source_sha256": artifact.source["sha256"],
        })
    validation = stage_validate.validate(artifact, _tolerance(artifact.tolerance, rtol, atol), gate=gate)
    _apply_unverified(artifact, validation, accept_unverified)
    validation.update(latency_mod.runtime_pass(artifact, measure=latency))  # latency, error histograms
    digest = onnx_sha256 or hashlib.sha256(artifact.model.SerializeToString()).hexdigest()
    info = report_mod.onnx_info(artifact.model, "", digest)
    report = report_mod.build(artifact, validation, info, started)
    if gate.baseline is not None:  # drift: compare with the accepted baseline
        from onnxgate.pipeline.gate import drift

        drift.apply(report, Path(gate.baseline), gate.drift_factor, gate.drift_floor)
    return Result(model=artifact.model, report=report, artifact=artifact)


def _apply_unverified(artifact, validation: Dict[str, Any], accepted: bool) -> None:
    """Without expected outputs the gate only saw the model load and run."""
    if artifact.verified:
        return
    message = (
        "no expected outputs: the original model could not be run here and none were given "
        "(--golden or --expected); only loading and running in onnxruntime were checked"
    )
    reason = artifact.gate_info.get("unverified_reason")
    if reason:
        message = f"no expected outputs ({reason}) and none were given (--golden or --expected); " \
                  "only loading and running in onnxruntime were checked"
    validation["checks"].append({"name": "comparison", "passed": accepted, "message": message})
    validation["verdict"] = "unverified"
    if not accepted:
        validation["failures"].append(f"check comparison: {message} (pass --accept-unverified to accept)")
        validation["passed"] = False


def convert(source: Any, **kwargs: Any) -> Result:
    """Convert a model object, file or ``module:attr`` and validate the result.

    >>> result = convert(my_sklearn_model)          # doctest: +SKIP
    >>> result.passed, result.save("model.onnx")     # doctest: +SKIP
    """
    return run(source, **kwargs)


def validate(source: Any, model: Union[PathLike, Any, None] = None, **kwargs: Any) -> Result:
    """Validate an existing ONNX model against the original ``source``.

    Without ``model``, ``source`` is itself the ONNX model (ready-made), checked
    as it is (``golden=DIR`` or ``expected=`` with ``sample=`` give its
    expected outputs).
    """
    if model is None:
        digest = sha256_path(Path(source)) if isinstance(source, (str, Path)) and Path(source).is_file() else None
        return run(source, onnx_sha256=digest, stamp=False, **kwargs)
    onnx_model = load_onnx(model)  # checks the path first: a missing file is exit 2
    digest = sha256_path(Path(model)) if isinstance(model, (str, Path)) else None
    return run(source, onnx_model=onnx_model, onnx_sha256=digest, **kwargs)


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

    from onnxgate.plugins.spec import Conversion

    def given(model, example, options):
        return Conversion(onnx_model, exporter="given")

    # a converter running in another environment gets the model as a file (environments.py)
    given.onnxgate_given_model = onnx_model
    return replace(spec, convert=given)
