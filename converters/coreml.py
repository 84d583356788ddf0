"""Core ML -> ONNX with onnxmltools (through ``onnxmltools_compat``).

Core ML models only run on macOS, so the original's outputs cannot be
computed here: the spec has ``run=None`` and the gate compares against
outputs the user computed on a Mac (``--expected FILE.npz``), or reports the
model as unverified. For those npz keys to match, the ONNX model keeps the
Core ML spec's input and output names.

Sources: a ``.mlmodel`` file, a ``Model_pb2.Model`` spec or an ``MLModel``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl

# coremltools warns on import about every untested framework version it
# finds and about its macOS-only runtime: noise for a Linux conversion.
logging.getLogger("coremltools").setLevel(logging.ERROR)

#: Model kinds onnxmltools converts (a pipeline may hold any of them).
SUPPORTED_KINDS = (
    "neuralNetwork",
    "neuralNetworkClassifier",
    "neuralNetworkRegressor",
    "glmRegressor",
    "glmClassifier",
    "treeEnsembleRegressor",
    "treeEnsembleClassifier",
    "pipeline",
    "pipelineClassifier",
    "pipelineRegressor",
    "supportVectorRegressor",
    "supportVectorClassifier",
    "scaler",
    "normalizer",
    "imputer",
    "oneHotEncoder",
    "featureVectorizer",
    "dictVectorizer",
    "arrayFeatureExtractor",
)
#: Opset onnxmltools' Core ML converters target when the user gives none.
DEFAULT_OPSET = 15
#: Core ML ArrayFeatureType.dataType values.
_INT32 = 131104
#: imageType.colorSpace: GRAYSCALE = 10, RGB = 20, BGR = 30.
_GRAYSCALE = 10


def _import_coremltools_alone() -> None:
    """coremltools imports TensorFlow and torch at import time when they are
    installed (~5 s, and their log noise) although converting a spec needs
    neither: hide the ones not yet imported while coremltools loads."""
    if "coremltools" in sys.modules:
        return
    hidden = [name for name in ("tensorflow", "torch") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError; typeshed omits None
    try:
        importlib.import_module("coremltools")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def load(path: Path, trusted: bool):
    _import_coremltools_alone()
    from coremltools.proto import Model_pb2
    from google.protobuf.message import DecodeError

    try:
        spec = Model_pb2.Model.FromString(path.read_bytes())
    except DecodeError as exc:
        raise ValueError(f"not a Core ML model (protobuf: {exc})") from None
    if spec.WhichOneof("Type") is None or not spec.description.input:
        raise ValueError("not a Core ML model (no model type or no inputs in the spec)")
    check_supported(spec)
    return spec


def spec_of(model):
    """The protobuf spec of an MLModel, a spec as is."""
    get_spec = getattr(model, "get_spec", None)
    return get_spec() if callable(get_spec) else model


def check_supported(spec, where: str = "") -> None:
    """UsageError naming the first model kind onnxmltools cannot convert."""
    from onnxgate.plugins import UsageError

    kind = spec.WhichOneof("Type")
    if kind not in SUPPORTED_KINDS:
        hint = "; convert the original framework's model instead" if kind == "mlProgram" else ""
        raise UsageError(
            f"Core ML model kind {kind!r}{where} is not supported (onnxmltools converts "
            f"{', '.join(SUPPORTED_KINDS)}){hint}"
        )
    for i, stage in enumerate(_stages(spec)):
        check_supported(stage, f" (pipeline stage {i})")


def _stages(spec) -> list:
    """The models of a pipeline spec; [] for any other kind."""
    kind = spec.WhichOneof("Type")
    if kind == "pipeline":
        return list(spec.pipeline.models)
    if kind in ("pipelineClassifier", "pipelineRegressor"):
        return list(getattr(spec, kind).pipeline.models)
    return []


def _feature_input(feature) -> InputSpec | None:
    """Mirrors onnxmltools' feature typing: a batch axis goes in front."""
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        array = feature.type.multiArrayType
        shape = tuple(int(d) for d in array.shape)
        dims = shape if len(shape) in (1, 3) else (1,)
        dtype = "int64" if array.dataType == _INT32 else "float32"
        return InputSpec(name=feature.name, shape=(None, *dims), dtype=dtype)
    if kind == "doubleType":
        return InputSpec(name=feature.name, shape=(None, 1), dtype="float32")
    if kind == "int64Type":
        return InputSpec(name=feature.name, shape=(None, 1), dtype="int64")
    if kind == "imageType":
        image = feature.type.imageType
        channels = 1 if image.colorSpace == _GRAYSCALE else 3
        return InputSpec(
            name=feature.name,
            shape=(None, channels, int(image.height), int(image.width)),
            dtype="float32",
            low=0,
            high=256,
        )
    return None  # strings and dictionaries cannot be synthesised


def signature(model, options=None):
    inputs = [_feature_input(f) for f in spec_of(model).description.input]
    return None if any(i is None for i in inputs) else inputs


def _fill_tree_base_values(spec) -> None:
    """Core ML reads an empty basePredictionValue as zeros; onnxmltools passes the
    empty list on and onnx refuses an empty attribute. Fill in the zeros."""
    kind = spec.WhichOneof("Type")
    if kind in ("treeEnsembleClassifier", "treeEnsembleRegressor"):
        ensemble = getattr(spec, kind).treeEnsemble
        if not ensemble.basePredictionValue:
            ensemble.basePredictionValue.extend([0.0] * max(1, ensemble.numPredictionDimensions))
    for stage in _stages(spec):
        _fill_tree_base_values(stage)


def _name_batch_axes(onx) -> None:
    """onnxmltools names the dynamic batch axis "None"; call it "batch"."""
    for value in list(onx.graph.input) + list(onx.graph.output) + list(onx.graph.value_info):
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param == "None":
                    dim.dim_param = "batch"


def _flatten_label(onx) -> None:
    """A classifier's label comes out of ArrayFeatureExtractor as [1, N] while
    the graph declares [N, 1]; reshape it to [N] and declare that."""
    from onnx import TensorProto, helper

    outputs = {o.name: o for o in onx.graph.output}
    for node in list(onx.graph.node):
        if node.op_type != "ArrayFeatureExtractor" or node.output[0] not in outputs:
            continue
        label = node.output[0]
        raw, shape = f"{label}__raw", f"{label}__shape"
        node.output[0] = raw
        onx.graph.initializer.append(helper.make_tensor(shape, TensorProto.INT64, [1], [-1]))
        onx.graph.node.append(helper.make_node("Reshape", [raw, shape], [label], name=f"{label}_flatten"))
        dims = outputs[label].type.tensor_type.shape.dim
        del dims[1:]
        if dims:
            dims[0].dim_param = "batch"


def convert(model, example, options):
    from onnxgate.plugins import ConversionError

    from .onnxmltools_compat import coreml_convert, ensure_default_opset

    _import_coremltools_alone()
    spec = type(spec_of(model))()
    spec.CopyFrom(spec_of(model))  # never alter the caller's spec
    check_supported(spec)
    _fill_tree_base_values(spec)
    opset = options.opset or DEFAULT_OPSET
    onx = coreml_convert()(spec, "coreml", None, "", opset)
    ensure_default_opset(onx, opset)
    _name_batch_axes(onx)
    _flatten_label(onx)
    wanted = [o.name for o in spec.description.output]
    got = [o.name for o in onx.graph.output]
    if sorted(wanted) != sorted(got):  # expected npz files are keyed by these names
        raise ConversionError(f"the ONNX outputs {got} do not carry the Core ML output names {wanted}")
    notes = ["Core ML models run only on macOS: the original's outputs come from --expected, if given"]
    return Conversion(onx, exporter="onnxmltools.convert_coreml (onnxgate compat layer)", notes=notes)


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="coreml",
        framework="Core ML",
        description="Core ML .mlmodel specs (neural network, GLM, tree ensemble, pipeline) via onnxmltools",
        convert=convert,
        run=None,  # Core ML predicts only on macOS: compare with --expected
        load=load,
        inputs=signature,
        suffixes=(".mlmodel",),
        # coremltools' generated protobuf module calls itself "Model_pb2"
        object_types=("Model_pb2.Model", "coremltools.models.model.MLModel"),
        # onnxmltools computes in float32; Core ML on a Mac may use float16 on
        # the GPU/ANE, so a user comparing such outputs passes --rtol/--atol
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("coremltools", "onnxmltools"),
        framework_distribution="coremltools",
        default_opset=DEFAULT_OPSET,
    )
