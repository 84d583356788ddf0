"""Stage 1: load the source, convert it, and run the ORIGINAL model.

Its product is an ``Artifact``: the ONNX model plus every validation case
with the original model's outputs. Stage 2 needs nothing but that, so this
stage may run in another process or another Python environment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.pipeline.conversion import golden as golden_mod
from onnxgate.pipeline.conversion import inputs as inputs_mod
from onnxgate.pipeline.conversion import matching, noise, sweep
from onnxgate.pipeline.conversion import reference as reference_mod
from onnxgate.pipeline.conversion import samples as samples_mod
from onnxgate.pipeline.conversion.sources import Source
from onnxgate.pipeline.core import latency as latency_mod
from onnxgate.pipeline.core.artifact import DEFAULT_SEED, Artifact
from onnxgate.pipeline.core.session import frozen_batch_inputs
from onnxgate.pipeline.envs import isolated as environments
from onnxgate.plugins import detect
from onnxgate.plugins.errors import ConversionError, UntrustedSourceError, UsageError
from onnxgate.plugins.helpers import graph_inputs, one_line
from onnxgate.plugins.manager import Registry, distribution_version, missing_requirements, plugin_distribution
from onnxgate.plugins.spec import ConverterSpec, ConvertOptions


def pick_converter(source: Source, registry: Registry, framework: str | None) -> ConverterSpec:
    if framework:
        try:
            return registry.converter(framework)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    try:
        return _detect(source, registry.converters())
    except detect.DetectionError as exc:
        raise UsageError(str(exc) + _broken_hint(source, registry)) from None


def _detect(source: Source, specs) -> ConverterSpec:
    if source.path is not None:  # source.is_path
        return detect.for_path(source.path, specs)
    return detect.for_object(source.obj, specs)


def _broken_hint(source: Source, registry: Registry) -> str:
    """Why detection may have failed: a broken plugin that claims the source,
    or else the broken plugins there are."""
    try:
        spec = _detect(source, registry.broken_converters())
    except detect.DetectionError:
        spec = None
    if spec is not None:
        owner = registry.broken_for(spec.name)
        assert owner is not None  # spec is one of a broken plugin's specs
        return f"; converter {spec.name!r} reads it, but {owner.describe()}"
    broken = registry.broken()
    if broken:
        return "; broken plugins were not consulted: " + "; ".join(b.describe() for b in broken)
    return ""


def ensure_usable(spec: ConverterSpec) -> None:
    missing = missing_requirements(spec.requires)
    if missing:
        raise UsageError(
            f"converter {spec.name!r} needs {', '.join(missing)}; install them (pip install 'onnxgate[{spec.name}]')"
        )


def load_model(
    spec: ConverterSpec, source: Source, trusted: bool, plugin: str = "", options: ConvertOptions | None = None
) -> Any:
    if source.path is None:  # not source.is_path
        return source.obj
    suffix = detect.suffix_of(source.path)
    if suffix in spec.unsafe_suffixes and not trusted:
        raise UntrustedSourceError(
            f"{source.path}: loading {suffix} files unpickles them, which can run arbitrary code; "
            "pass --trust-source only if you trust where this file came from"
        )
    if spec.load is None:
        raise UsageError(f"converter {spec.name!r} cannot read files; pass the model object")
    try:
        if options is not None and _takes_options(spec.load):  # load(path, trusted, options)
            return spec.load(source.path, trusted, options)
        return spec.load(source.path, trusted)
    except (UsageError, ConversionError):
        raise
    except Exception as exc:  # any loader failure on user input is bad input
        raise UsageError(
            f"{source.path}: cannot load as {spec.framework} ({_origin(spec, plugin)}): {one_line(exc, with_type=True)}"
        ) from exc


def _takes_options(load) -> bool:
    import inspect

    try:
        return len(inspect.signature(load).parameters) >= 3
    except (TypeError, ValueError):
        return False


def build_cases(
    spec: ConverterSpec,
    model: Any,
    sample: Any | None,
    dynamic_batch: bool,
    seed: int,
    options: ConvertOptions = ConvertOptions(),
    input_map: Mapping[str, str] | None = None,
    onnx_names=(),
    signature=None,
):
    signature = signature if signature is not None else source_signature(spec, model, options)
    if sample is not None:
        loaded = samples_mod.read_sample(sample, signature)  # a file, or in-memory data
        loaded = matching.apply_input_map(loaded, input_map or {})
        arrays = matching.bind_to_source(
            loaded, matching.names_of(signature), onnx_names, matching.optional_of(signature)
        )
    elif input_map:
        raise UsageError("--input-map renames the arrays of --sample; there is no --sample")
    elif signature:
        arrays = inputs_mod.synthesize(signature, seed=seed)
    else:
        raise UsageError(
            f"cannot tell the input shape of this {spec.framework} model; pass --sample FILE "
            "(.npz keyed by input name, .npy, .csv, .parquet)"
        )
    return inputs_mod.batch_cases(arrays, dynamic_batch)


def source_signature(
    spec: ConverterSpec,
    model: Any,
    options: ConvertOptions = ConvertOptions(),
    plugin: str = "",
    required: bool = False,
):
    """The converter's ``inputs(model, options)``; None when it cannot tell.

    A failing ``inputs()`` is only a missing hint when a sample gives the
    inputs; ``required`` (nothing else to go on) makes it an error naming
    the plugin, e.g. a scaffolded plugin whose ``inputs()`` is not written."""
    if spec.inputs is None:
        return None
    try:
        return spec.inputs(model, options)
    except (UsageError, ConversionError):
        raise
    except Exception as exc:
        if required:
            raise ConversionError(
                f"{spec.name}: inputs() failed ({_origin(spec, plugin)}): {one_line(exc, with_type=True)}"
            ) from exc
        return None


def static_batch(signature) -> int | None:
    """The batch size a source fixes for every input (``torch.export`` without
    ``dynamic_shapes``, traced TorchScript, Keras ``Input(batch_size=N)``)."""
    firsts = [s.shape[0] for s in signature or () if s.shape]
    if firsts and all(isinstance(d, int) and d > 0 for d in firsts) and len(set(firsts)) == 1:
        return firsts[0]
    return None


def produce(
    spec: ConverterSpec,
    source: Source,
    *,
    sample: Path | None = None,
    options: ConvertOptions = ConvertOptions(),
    trusted: bool = False,
    seed: int = DEFAULT_SEED,
    plugin: str = "",
    expected: Path | None = None,
    golden: Path | None = None,
    gate: Any = None,
    measure_latency: bool = True,
    input_map: Mapping[str, str] | None = None,
    reference_timeout: float | None = None,
    text: Sequence[str] | None = None,
) -> Artifact:
    if text and spec.environment:
        raise UsageError(f"--text: converter {spec.name!r} does not build samples from text")
    if spec.environment:  # stage 1 runs in the converter's own Python environment
        return environments.produce(
            spec,
            source,
            sample=sample,
            options=options,
            trusted=trusted,
            seed=seed,
            plugin=plugin,
            expected=expected,
            golden=golden,
            gate=gate,
            measure_latency=measure_latency,
            input_map=dict(input_map) if input_map else None,
            reference_timeout=reference_timeout,
        )
    ensure_usable(spec)
    if expected is not None and sample is None:
        raise UsageError("--expected needs --sample: the expected outputs must belong to known inputs")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model = load_model(spec, source, trusted, plugin, options)
    timings["load_s"] = time.perf_counter() - t0
    if text:
        sample = text_sample(spec, model, text, sample, golden)

    dynamic_batch = options.dynamic_batch
    notes = []
    signature = (
        None
        if golden is not None
        else source_signature(
            spec, model, options, plugin, required=sample is None and expected is None and not _is_onnx_model(model)
        )
    )
    if _is_onnx_model(model):  # ready-made: nothing converts, so the batch is as declared, not as asked
        dynamic_batch = dynamic_batch and not frozen_batch_inputs(model)
    elif dynamic_batch and static_batch(signature):
        # the source cannot run at a second batch: validate at its own, and say so
        dynamic_batch = False
        options = replace(options, dynamic_batch=False)
        notes.append(
            f"batch is static in the source (batch {static_batch(signature)}): validated at that "
            "batch only; re-export the source with a dynamic batch for a dynamic ONNX model"
        )
    given = getattr(spec.convert, "onnxgate_given_model", None)
    onnx_names = [i.name for i in graph_inputs(given)] if given is not None else ()
    if given is not None and not signature and sample is None:  # synthesise from the user's ONNX model
        signature = _onnx_signature(given)
    cases = _golden_cases(golden, model, sample, expected) or build_cases(
        spec, model, sample, dynamic_batch and expected is None, seed, options, input_map, onnx_names, signature
    )
    if dynamic_batch and golden is None and expected is None and _static_in_source(spec, model, cases):
        dynamic_batch = False
        options = replace(options, dynamic_batch=False)
        cases = cases[:1]
        notes.append(
            f"batch is static in the source (it runs at batch {inputs_mod._batch_of(cases[0].inputs)} "
            "but not at another): validated at that batch only"
        )

    t0 = time.perf_counter()
    conversion = _convert(spec, model, cases[0].inputs, options, plugin)
    timings["convert_s"] = time.perf_counter() - t0
    onnx_model = conversion.model
    notes += list(conversion.notes)
    if golden is not None and not _is_onnx_model(model):  # keyed by the converted model's names
        cases = golden_mod.read(Path(golden), onnx_model)
    else:
        spec = _match_inputs(spec, cases, onnx_model, matching.names_of(signature), converted=given is None)
    _cast_to_model_inputs(cases, onnx_model)

    t0 = time.perf_counter()
    output_names = [o.name for o in onnx_model.graph.output]
    gate_info: dict[str, Any] = {}
    by_reference = golden is None and expected is None and spec.run is None and _is_onnx_model(model)
    if by_reference:  # a ready-made model: the ONNX spec's reference implementation gives the outputs
        spec = _with_reference(spec, model, reference_timeout, gate_info, notes)
    runs_original = golden is None and expected is None and spec.run is not None
    if expected is not None:
        cases[0].expected = load_expected(expected, output_names, notes)
    elif runs_original:
        try:
            cases, gate_info = _run_original_cases(
                spec, model, onnx_model, cases, output_names, gate, seed, options, plugin
            )
        except UsageError as exc:
            if not isinstance(exc.__cause__, reference_mod.ReferenceUnavailable):
                raise
            for case in cases:
                case.expected = None
            gate_info["unverified_reason"] = str(exc.__cause__)
            notes.append(f"no reference outputs: {exc.__cause__}")
        if by_reference:
            gate_info.setdefault("reference", reference_mod.name())
    timings["reference_s"] = time.perf_counter() - t0
    latency = {}
    if measure_latency and runs_original and not by_reference:
        assert spec.run is not None  # runs_original
        latency = latency_mod.measure_original(spec.run, model, cases)
    if sample is None and golden is None and not any(c.expected is not None for c in cases):
        notes.append(f"inputs synthesised from the model's declared inputs (seed {seed})")

    framework_version = distribution_version(spec.framework_distribution)
    return Artifact(
        model=onnx_model,
        cases=cases,
        tolerance=spec.tolerance,
        source={
            "path": str(source.path) if source.path else "",
            "reference": source.reference,
            "sha256": source.sha256(),
            "framework": spec.framework,
            "framework_version": framework_version,
        },
        converter={
            "plugin": plugin or spec.name,
            "name": spec.name,
            "version": _plugin_version(plugin),
            "distribution": _plugin_distribution_name(plugin),  # whom to tell when it fails
            "exporter": conversion.exporter,
            "opset": _default_domain_opset(onnx_model),
        },
        dynamic_batch=dynamic_batch,
        seed=seed,
        tree_ensemble=spec.tree_ensemble,
        gate_info=gate_info,
        notes=notes,
        timings=timings,
        verified=any(c.expected is not None for c in cases),
        latency=latency,
        versions={spec.framework_distribution: framework_version}
        if spec.framework_distribution and framework_version  # a version implies a distribution
        else {},
    )


def text_sample(spec: ConverterSpec, model: Any, text: Sequence[str], sample: Any, golden: Any) -> Any:
    """The sample the converter builds from ``--text`` (its tokenizer)."""
    if sample is not None or golden is not None:
        raise UsageError("--text builds the sample: drop --sample/--golden")
    if spec.text_sample is None:
        raise UsageError(f"--text: converter {spec.name!r} does not build samples from text")
    texts = [str(t) for t in text]
    if not all(texts):
        raise UsageError("--text: empty text")
    try:
        return dict(spec.text_sample(model, texts))
    except (UsageError, ConversionError):
        raise
    except Exception as exc:
        raise UsageError(f"--text: {spec.name} could not build a sample: {one_line(exc, with_type=True)}") from exc


def _with_reference(spec, model, timeout, gate_info, notes) -> ConverterSpec:
    try:
        runner = reference_mod.make_runner(model, timeout if timeout is not None else reference_mod.DEFAULT_TIMEOUT)
    except reference_mod.ReferenceUnavailable as exc:
        gate_info["unverified_reason"] = str(exc)
        notes.append(f"no reference outputs: {exc}")
        return spec
    notes.append(
        f"expected outputs computed by {reference_mod.name()}, an implementation of the ONNX "
        "specification independent of onnxruntime"
    )
    return replace(spec, run=runner)


def _static_in_source(spec, model, cases) -> bool:
    """The original runs the first case but not the second batch size (a
    traced TorchScript module or an exported program with a fixed batch)."""
    if spec.run is None or len(cases) < 2 or _is_onnx_model(model):
        return False
    try:
        spec.run(model, cases[1].inputs)
        return False
    except Exception:
        pass
    try:
        spec.run(model, cases[0].inputs)
    except Exception:
        return False  # the sample itself fails: reported as such later
    return True


def _onnx_signature(onnx_model):
    from onnx import helper

    from onnxgate.plugins.spec import InputSpec

    specs = []
    for vi in graph_inputs(onnx_model):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.elem_type:
            return None
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dtype.kind == "O":
            return None
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim)
        specs.append(InputSpec(name=vi.name, shape=shape, dtype=dtype.name))
    return specs


def _match_inputs(spec: ConverterSpec, cases, onnx_model, source_names, converted: bool) -> ConverterSpec:
    """Key the cases by the ONNX input names; the original still gets its own."""
    onnx_names = [i.name for i in graph_inputs(onnx_model)]
    given = [n for n in source_names if n in cases[0].inputs]  # optional inputs the sample left out
    if len(given) == len(cases[0].inputs):
        source_names = given
    mapping = matching.to_onnx_names(list(cases[0].inputs), onnx_names, source_names, converted)
    if all(k == v for k, v in mapping.items()):
        return spec
    for case in cases:
        case.inputs = matching.rename(case.inputs, mapping)
    back = matching.reverse(mapping)

    def renamed(original_run):
        if original_run is None:
            return None
        return lambda model, inputs: original_run(model, matching.rename(inputs, back))

    return replace(spec, run=renamed(spec.run), run_float64=renamed(spec.run_float64))


def _convert(spec: ConverterSpec, model: Any, example, options: ConvertOptions, plugin: str = ""):
    try:
        return spec.convert(model, example, options)
    except (UsageError, ConversionError):
        raise
    except Exception as exc:
        raise ConversionError(
            f"{spec.name} conversion failed ({_origin(spec, plugin)}): {one_line(exc, with_type=True)}"
        ) from exc


def _origin(spec: ConverterSpec, plugin: str) -> str:
    """Whom to tell: ``plugin 'x' from dist 1.0``."""
    from onnxgate.plugins.manager import plugin_origin

    return plugin_origin(plugin or spec.name)


def _run_original_cases(
    spec,
    model,
    onnx_model,
    cases,
    output_names,
    gate,
    seed,
    options: ConvertOptions = ConvertOptions(),
    plugin: str = "",
):
    """The original's outputs on every case, plus the sweep and edge-value
    cases (those the original rejects are marked skipped, not failed)."""
    extra, gate_info = sweep.extend(spec, model, onnx_model, cases, gate, seed, options)
    _cast_to_model_inputs(extra, onnx_model)
    for case in cases:
        case.expected = _run_original(spec, model, case, output_names, plugin)
    sweep.run_source(extra, lambda case: _run_original(spec, model, case, output_names, plugin))
    if getattr(gate, "float64_reference", True):
        gate_info["float64_reference"] = noise.measure(spec, model, cases + extra, output_names)
    return cases + extra, gate_info


def _run_original(spec, model, case, output_names, plugin: str = "") -> dict[str, np.ndarray]:
    try:
        produced = spec.run(model, case.inputs)
    except Exception as exc:
        raise UsageError(
            f"the original {spec.framework} model (run by {_origin(spec, plugin)}) failed on the "
            f"validation inputs ({_shapes(case.inputs)}): {one_line(exc, with_type=True)}"
        ) from exc
    if isinstance(produced, Mapping):
        missing = [n for n in output_names if n not in produced]
        if missing and len(missing) == len(output_names) == len(produced):
            # a user's export names its outputs its own way; exporters keep the order
            produced = dict(zip(output_names, produced.values()))
        elif missing:
            raise ConversionError(f"{spec.name}: original model gave no value for ONNX outputs {missing}")
        return {n: np.asarray(produced[n]) if not isinstance(produced[n], list) else produced[n] for n in output_names}
    produced = list(produced)
    if len(produced) != len(output_names):
        raise ConversionError(
            f"{spec.name}: original model gave {len(produced)} outputs, the ONNX model has {len(output_names)}"
        )
    return dict(zip(output_names, produced))


def _is_onnx_model(model) -> bool:
    """The loaded source is itself an ONNX ModelProto (no onnx import needed)."""
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def _golden_cases(golden, model, sample, expected):
    """Golden cases read before conversion when the source is the ONNX model."""
    if golden is None:
        return None
    if sample is not None or expected is not None:
        raise UsageError("--golden holds both inputs and expected outputs: drop --sample and --expected")
    if not _is_onnx_model(model):
        return None  # read against the converted model, after conversion

    return golden_mod.read(Path(golden), model)


def load_expected(path: Any, output_names, notes) -> dict[str, np.ndarray]:
    """User-supplied outputs of the original model (e.g. computed on a Mac);
    ``path`` may also be in-memory data from the Python API."""
    if not samples_mod.is_path(path):
        arrays = samples_mod.expected_from_memory(path, output_names)
        path = "(in memory)"
    else:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise UsageError(f"expected outputs {path}: unreadable: {exc}") from exc
    unknown = sorted(set(arrays) - set(output_names))
    if unknown or not arrays:
        raise UsageError(
            f"expected outputs {path}: keys {sorted(arrays)} do not match the ONNX outputs {list(output_names)}"
        )
    skipped = [n for n in output_names if n not in arrays]
    if skipped:
        notes.append(f"outputs without expected values, not compared: {', '.join(skipped)}")
    return {n: arrays[n] for n in output_names if n in arrays}


def _cast_to_model_inputs(cases, onnx_model) -> None:
    """Feed both models identical data: cast samples to the ONNX input types."""
    from onnx import helper

    graph_inputs = {i.name: i for i in onnx_model.graph.input}
    initializers = {i.name for i in onnx_model.graph.initializer}
    wanted = [n for n in graph_inputs if n not in initializers]
    for case in cases:
        if set(case.inputs) != set(wanted):
            raise UsageError(f"sample inputs {sorted(case.inputs)} do not match the ONNX model's inputs {wanted}")
        for name, value in case.inputs.items():
            elem = graph_inputs[name].type.tensor_type.elem_type
            if elem:
                dtype = helper.tensor_dtype_to_np_dtype(elem)
                if value.dtype != dtype and dtype.kind != "O":
                    case.inputs[name] = value.astype(dtype)


def _default_domain_opset(onnx_model) -> int:
    for imp in onnx_model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _plugin_distribution_name(plugin: str) -> str:
    from onnxgate.plugins.manager import plugin_distribution

    return plugin_distribution(plugin)[0] if plugin else ""


def _plugin_version(plugin: str) -> str:
    return plugin_distribution(plugin)[1] if plugin else ""


def _shapes(arrays: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}{list(np.shape(v))}" for k, v in arrays.items())
