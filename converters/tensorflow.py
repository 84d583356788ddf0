"""TensorFlow / Keras -> ONNX with tf2onnx.

Every source that is a graph (Keras model of any kind, ``tf.function``,
SavedModel signature) is wrapped in one ``tf.function`` whose input signature
comes from the model, then converted with ``tf2onnx.convert.from_function``:
``from_keras`` fails on ``keras.Sequential`` under Keras 3, this path does
not. ``.tflite`` flatbuffers go through ``from_tflite`` and the original
outputs come from the TFLite interpreter.

tf2onnx only logs TF ops it cannot map and leaves them in the graph, so the
result is scanned: any op ONNX does not define is a conversion failure that
names the ops, except the few ops this module composes from ONNX ops itself
(see ``tf_ops.compositions``); the gate then validates those like everything else.
"""

from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl, installed_distribution

from . import tf_ops
from .common import zip_names

KERAS_MODEL = "keras.src.models.model.Model"
TF_FUNCTION = "tensorflow.python.eager.polymorphic_function.polymorphic_function.Function"
CONCRETE_FUNCTION = "tensorflow.python.eager.polymorphic_function.concrete_function.ConcreteFunction"
#: Highest opset tf2onnx 1.17 writes.
MAX_OPSET = 18
DEFAULT_OPSET = 17
#: Domain tf2onnx leaves untranslated TF ops in (custom handlers, TF-only ops).
_TENSOR_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")


# --- detection (no framework import) -------------------------------------


def sniff(path: Path) -> bool:
    """SavedModel folder, .keras zip archive, or TFLite flatbuffer."""
    if path.is_dir():
        return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return "config.json" in zip_names(path)
    if suffix == ".tflite":
        return _is_tflite(path)
    return False


def _is_tflite(path: Path) -> bool:
    from onnxgate.plugins import read_head

    return read_head(path, 8)[4:8] == b"TFL3"  # flatbuffer file identifier


# --- sources read from files ----------------------------------------------


@dataclass
class SavedModel:
    """A loaded SavedModel and the serving signature that gets converted."""

    path: Path
    root: Any  # keeps the variables the signature captures alive
    function: Any  # ConcreteFunction
    signature_name: str


@dataclass
class TFLiteModel:
    path: Path


def _quiet_native_logs() -> None:
    """TF's C++ logs (oneDNN, CPU features, grappler sessions) go to stderr
    on import; hide INFO/WARNING unless the user chose a level."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load(path: Path, trusted: bool):
    _quiet_native_logs()
    if path.is_dir():
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _load_tflite(path)
    if suffix == ".keras":
        return _load_keras(path, trusted)
    raise ValueError(f"unsupported file kind {suffix!r} (use .keras, .tflite or a SavedModel folder)")


def _load_keras(path: Path, trusted: bool):
    if "config.json" not in zip_names(path):
        raise ValueError("not a Keras archive (truncated or not a .keras file)")
    import keras

    try:
        # safe_mode refuses Lambda layers holding Python bytecode: loading
        # them runs code, so only --trust-source turns it off.
        return keras.saving.load_model(str(path), compile=False, safe_mode=not trusted)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            from onnxgate.plugins import UntrustedSourceError

            raise UntrustedSourceError(
                f"{path}: the model holds Python code (e.g. a Lambda layer) that Keras' safe mode refuses; "
                "pass --trust-source only if you trust where this file came from"
            ) from None
        raise


def _load_saved_model(path: Path) -> SavedModel:
    if not sniff(path):
        raise ValueError("no saved_model.pb in this folder")
    import tensorflow as tf

    with tf_ops.quiet_tf():
        root = tf.saved_model.load(str(path))
    signatures = dict(getattr(root, "signatures", {}) or {})
    if not signatures:
        raise ValueError("the SavedModel has no signatures; re-export it with model.export() or signatures=")
    name = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    return SavedModel(path=path, root=root, function=signatures[name], signature_name=name)


def _load_tflite(path: Path) -> TFLiteModel:
    if not _is_tflite(path):
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    _interpreter(path)  # the interpreter verifies the flatbuffer: fail at load, not mid-conversion
    return TFLiteModel(path=path)


def _interpreter(path: Path):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice for ai_edge_litert
        # Builtin kernels only: the reference is the model as TFLite defines
        # it, and XNNPACK would print a banner on every run.
        interp = tf.lite.Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interp.allocate_tensors()
    return interp


# --- input signature -------------------------------------------------------


def signature(model, options=None) -> list[InputSpec] | None:
    _quiet_native_logs()
    if isinstance(model, TFLiteModel):
        return [
            InputSpec(
                name=d["name"],
                shape=tuple(int(s) if s >= 0 else None for s in d["shape_signature"]),
                dtype=_np_name(d["dtype"]),
            )
            for d in _interpreter(model.path).get_input_details()
        ]
    if isinstance(model, SavedModel):
        return _function_signature(model.function)
    if _is_keras(model):
        return _keras_signature(model)
    if _has_type(model, TF_FUNCTION):
        specs = model.input_signature
        return _specs_to_inputs(specs, _arg_names(model.python_function)) if specs is not None else None
    if _has_type(model, CONCRETE_FUNCTION):
        return _function_signature(model)
    return None


def _keras_signature(model) -> list[InputSpec] | None:
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # subclassed, or a Sequential without an Input
        inputs = []
    if inputs:
        return [
            # Input(batch_size=N) fixes the batch: keep it, the model runs at N only
            InputSpec(name=_input_name(t.name, i, len(inputs)), shape=tuple(t.shape), dtype=str(t.dtype))
            for i, t in enumerate(inputs)
        ]
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if not shapes or _call_arity(model) > 1:  # Keras records only the first call argument
        return None
    # A subclassed model built by a call: Keras kept each call argument's shape.
    specs = []
    for i, (key, shape) in enumerate(shapes.items()):
        if shape is None or not isinstance(shape, (tuple, list)) or any(isinstance(s, (tuple, list)) for s in shape):
            return None  # nested inputs: ask for a sample
        name = "input" if key == "input_shape" else key.removesuffix("_shape")
        specs.append(
            InputSpec(
                name=_input_name(name, i, len(shapes)),
                shape=(None,) + tuple(shape[1:]),
                dtype=str(getattr(model, "input_dtype", "float32") or "float32"),
            )
        )
    return specs


def _input_name(name: str | None, index: int, count: int) -> str:
    name = (name or "").split(":")[0]
    if not name or name.startswith("keras_tensor") or _TENSOR_NAME.search(name):
        return "input" if count == 1 else f"input_{index}"
    return name


def _function_signature(fn) -> list[InputSpec] | None:
    args, kwargs = fn.structured_input_signature
    specs = list(args) + [kwargs[k] for k in sorted(kwargs)]
    names = [None] * len(args) + sorted(kwargs)
    return _specs_to_inputs(specs, names)


def _specs_to_inputs(specs, names) -> list[InputSpec] | None:
    if not all(hasattr(s, "shape") and hasattr(s, "dtype") for s in specs):
        return None  # nested structures per argument: the user gives a sample
    out = []
    for i, spec in enumerate(specs):
        name = spec.name or (names[i] if i < len(names) and names[i] else None)
        out.append(
            InputSpec(
                name=_input_name(name, i, len(specs)),
                shape=tuple(spec.shape.as_list()) if spec.shape.rank is not None else (None,),
                dtype=spec.dtype.name,
            )
        )
    return out


def _arg_names(fn) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name != "self"]


# --- calling the original model ----------------------------------------------


def _call(model, tensors: list[Any], names: list[str]) -> dict[str, Any]:
    """Run a graph source on TF tensors; outputs flattened and named."""
    if isinstance(model, SavedModel):
        return _name_outputs(model.function, _call_concrete(model.function, tensors, names))
    if _is_keras(model):
        if _call_arity(model) > 1:  # subclassed call(self, a, b): the sample names the arguments
            return _name_outputs(model, model(**dict(zip(names, tensors)), training=False))
        return _name_outputs(model, model(_keras_inputs(model, tensors), training=False))
    if _has_type(model, CONCRETE_FUNCTION):
        return _name_outputs(model, _call_concrete(model, tensors, names))
    return _name_outputs(model, model(*tensors))


def _keras_inputs(model, tensors):
    """Tensors in the structure the model was built with (a functional model
    built on a dict of Inputs wants a dict); model.inputs is its flattening."""
    struct = getattr(model, "_inputs_struct", None)  # functional models only
    if struct is not None and not isinstance(struct, (list, tuple)) and len(tensors) > 1:
        import keras

        return keras.tree.pack_sequence_as(struct, list(tensors))
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _call_arity(model) -> int:
    """Required positional arguments of a subclassed model's call()."""
    if getattr(model, "_inputs_struct", None) is not None:
        return 1  # functional/Sequential: one (possibly nested) argument
    try:
        params = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        1
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
        and p.name not in ("training", "mask")
    )


def _call_concrete(fn, tensors, names):
    args, kwargs = fn.structured_input_signature
    if kwargs:  # serving signatures take keyword arguments only
        keys = sorted(kwargs)
        return fn(*tensors[: len(args)], **dict(zip(keys, tensors[len(args) :])))
    return fn(*tensors)


def _name_outputs(model, out) -> dict[str, Any]:
    """Flat {name: tensor}; the names become the ONNX output names."""
    import tensorflow as tf

    if isinstance(out, dict) and not any(isinstance(v, (dict, list, tuple)) for v in out.values()):
        return {str(k): v for k, v in out.items()}
    leaves = tf.nest.flatten(out)
    names = list(getattr(model, "output_names", None) or []) if _is_keras(model) else []
    if len(names) != len(leaves) or len(set(names)) != len(names):
        names = ["output"] if len(leaves) == 1 else [f"output_{i}" for i in range(len(leaves))]
    return dict(zip(names, leaves))


def run(model, inputs):
    _quiet_native_logs()
    import numpy as np

    if isinstance(model, TFLiteModel):
        return _run_tflite(model, inputs)
    import tensorflow as tf

    names = list(inputs)
    tensors = [tf.convert_to_tensor(inputs[n]) for n in names]
    return {k: np.asarray(v) for k, v in _call(model, tensors, names).items()}


def run_float64(model, inputs):
    """A Sequential or functional Keras model once more in float64: a clone
    whose layers compute in float64, with the weights cast (the user's model
    is untouched); the gate measures the float32 run's own rounding noise
    against it. Other forms (subclassed models, tf.function, SavedModel,
    TFLite) cannot be rebuilt in another dtype: not applicable."""
    if not _is_keras(model):
        return None
    _quiet_native_logs()
    import keras
    import numpy as np

    sequential = isinstance(model, keras.Sequential)
    if not sequential and getattr(model, "_inputs_struct", None) is None:
        return None  # subclassed

    def float64_layer(layer):
        config = layer.get_config()
        config["dtype"] = "float64"
        return layer.__class__.from_config(config)

    def float64_input(tensor):
        dtype = "float64" if np.dtype(tensor.dtype).kind == "f" else tensor.dtype
        return keras.Input(shape=tensor.shape[1:], dtype=dtype, name=tensor.name)

    struct = (
        float64_input(model.inputs[0]) if sequential else keras.tree.map_structure(float64_input, model._inputs_struct)
    )
    clone = keras.models.clone_model(model, input_tensors=struct, clone_function=float64_layer)
    clone.set_weights([w.astype(np.float64) if w.dtype.kind == "f" else w for w in model.get_weights()])
    import tensorflow as tf

    names = list(inputs)
    tensors = [tf.convert_to_tensor(_float64(np.asarray(inputs[n]))) for n in names]
    outputs = {k: np.asarray(v) for k, v in _call(clone, tensors, names).items()}
    reference = _name_outputs(model, list(outputs.values()))  # the original's output names
    return dict(zip(reference, outputs.values())) if len(reference) == len(outputs) else outputs


def _float64(array):
    return array.astype("float64") if array.dtype.kind == "f" else array


def _run_tflite(model: TFLiteModel, inputs):
    interp = _interpreter(model.path)
    details = interp.get_input_details()
    for d in details:
        if tuple(d["shape"]) != inputs[d["name"]].shape:
            interp.resize_tensor_input(d["index"], inputs[d["name"]].shape, strict=True)
    interp.allocate_tensors()
    for d in details:
        interp.set_tensor(d["index"], inputs[d["name"]])
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()}


# --- conversion ------------------------------------------------------------------


def convert(model, example, options):
    _quiet_native_logs()
    opset = options.opset or DEFAULT_OPSET
    if opset > MAX_OPSET:
        from onnxgate.plugins import UsageError

        raise UsageError(f"tf2onnx writes ONNX opsets up to {MAX_OPSET}; --opset {opset} is too new")
    import tf2onnx

    composed: set = set()
    handlers = {op: (fn, []) for op, fn in tf_ops.compositions(composed).items()}
    with tf_ops.capture_tf2onnx_log() as log:
        if isinstance(model, TFLiteModel):
            onx, _ = tf2onnx.convert.from_tflite(str(model.path), opset=opset, custom_op_handlers=handlers)
            if not options.dynamic_batch:
                _fix_batch(onx, example)
            exporter = "tf2onnx from_tflite"
        else:
            fn, specs = _wrap(model, example, options.dynamic_batch)
            onx, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset, custom_op_handlers=handlers)
            exporter = "tf2onnx from_function"
            folded = _fold_captured_constants(onx, fn, [s.name for s in specs])
    tf_ops.fail_on_untranslated(onx, log)
    if options.dynamic_batch:
        _name_batch(onx)
    notes = [
        f"TF op {op} composed from ONNX ops by onnxgate (tf2onnx has no converter for it)" for op in sorted(composed)
    ]
    if not isinstance(model, TFLiteModel) and folded:
        notes.append(
            f"{len(folded)} captured constants that tf2onnx left as graph inputs folded into the model "
            f"(e.g. a Normalization layer's mean and variance): {', '.join(folded[:4])}"
        )
    if isinstance(model, SavedModel):
        notes.append(f"converted SavedModel signature {model.signature_name!r}")
    return Conversion(onx, exporter=exporter, notes=notes)


def _fold_captured_constants(onx, fn, input_names) -> list[str]:
    """tf2onnx freezes variables but turns tensors the function captured by
    value (Keras 3's Normalization keeps its mean and variance so) into extra
    graph inputs; the model would then ask the user for them. Make them
    initializers holding the captured values."""
    extra = [i for i in onx.graph.input if i.name not in input_names]
    if not extra:
        return []
    import tensorflow as tf
    from onnx import numpy_helper

    concrete = fn.get_concrete_function()
    values = {}
    for external, internal in zip(concrete.captured_inputs, concrete.graph.internal_captures):
        if external.dtype != tf.resource:
            values[internal.name] = external.numpy()
    folded = []
    for inp in extra:
        value = values.get(inp.name, values.get(inp.name + ":0"))
        if value is None:
            continue
        onx.graph.initializer.append(numpy_helper.from_array(value, inp.name))
        onx.graph.input.remove(inp)
        folded.append(inp.name)
    return folded


def _name_batch(onx) -> None:
    """tf2onnx names each input's free batch dim apart (unk__12, unk__13);
    one name says they are the same axis, which they are in a TF model."""
    for inp in onx.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _fix_batch(onx, example) -> None:
    """from_tflite ignores shape_override: pin the batch on the graph inputs."""
    for inp in onx.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in example and dims:
            dims[0].dim_value = int(example[inp.name].shape[0])


def _wrap(model, example, dynamic_batch: bool):
    """One tf.function over the model, with a signature built from the inputs."""
    import tensorflow as tf

    names = list(example)
    declared = {s.name: s.shape for s in (signature(model) or [])}
    specs = []
    for name in names:
        value = example[name]
        shape = list(declared.get(name) or value.shape)
        if len(shape) != value.ndim:
            shape = list(value.shape)
        if shape:
            shape[0] = None if dynamic_batch else int(value.shape[0])
        specs.append(tf.TensorSpec(shape, tf.as_dtype(value.dtype), name=name))

    def graph(*tensors):
        return _call(model, list(tensors), names)

    return tf.function(graph, input_signature=specs), specs


# --- diagnosis -------------------------------------------------------------------------


def intermediates(model, inputs, onnx_model):
    """Per-layer values of a functional/Sequential Keras model for
    ``onnxgate diagnose`` (other sources: none)."""
    if not _is_keras(model):
        return []
    _quiet_native_logs()
    from onnxgate.converters.tf_intermediates import keras_intermediates

    order = [s.name for s in (signature(model) or [])]
    if sorted(order) == sorted(inputs):  # in model.inputs order, as the probe model takes them
        inputs = {name: inputs[name] for name in order}
    shapes = _onnx_shapes(onnx_model)
    return [
        i
        for i in keras_intermediates(model, inputs, onnx_model)
        if _same_layout(i.value.shape, shapes.get(i.onnx_tensor))
    ]


def _onnx_shapes(onnx_model) -> dict[str, list]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(onnx_model)
    except Exception:  # shapes are only a filter here
        return {}
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in values
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }


def _same_layout(shape, onnx_shape) -> bool:
    """tf2onnx runs convolutions channels-first: a layer whose ONNX tensor is
    NCHW cannot be compared element by element with Keras' NHWC value."""
    if onnx_shape is None:
        return len(shape) <= 2  # unknown: only layouts that cannot be permuted
    if len(onnx_shape) != len(shape) or any(d is not None and d != v for d, v in zip(onnx_shape, shape)):
        return False
    channels_first = (shape[0], shape[-1]) + tuple(shape[1:-1])
    return len(shape) <= 2 or channels_first != tuple(shape)  # ambiguous when both read the same


# --- helpers ------------------------------------------------------------------------


def _has_type(obj, dotted: str) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == dotted for c in type(obj).__mro__)


def _is_keras(obj) -> bool:
    return _has_type(obj, KERAS_MODEL)


def _np_name(dtype) -> str:
    import numpy as np

    return np.dtype(dtype).name


@hookimpl
def onnxgate_converters():
    tf_dist = installed_distribution("tensorflow", "tensorflow-cpu")
    yield ConverterSpec(
        name="tensorflow",
        framework="TensorFlow/Keras",
        description="Keras 3 models, tf.function, .keras, SavedModel folders, .tflite via tf2onnx",
        convert=convert,
        run=run,
        run_float64=run_float64,
        load=load,
        inputs=signature,
        suffixes=(".keras", ".tflite", "/"),
        sniff=sniff,
        object_types=(KERAS_MODEL, TF_FUNCTION, CONCRETE_FUNCTION),
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=(tf_dist, "tf2onnx"),
        framework_distribution=tf_dist,
        default_opset=DEFAULT_OPSET,
        intermediates=intermediates,
    )
