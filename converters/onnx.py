"""Ready-made ONNX models (model zoo, Azure Custom Vision, other tools).

Nothing is converted: the model goes through the same gate as a converted
one (onnx.checker, strict shape inference, onnxruntime load, comparison).
There is no original to run, so expected outputs must come from a golden
folder (``--golden``) or from ``--expected`` with ``--sample``; without them
the verdict is "unverified".
"""
from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl, one_line

EXPORTER = "none (ready-made ONNX)"


def load(path: Path, trusted: bool):
    import onnx

    from onnxgate.plugins import UsageError

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, bad external data...
        raise UsageError(f"{path}: not a readable ONNX model ({one_line(exc, with_type=True, limit=300)})") from exc
    if not model.ir_version or not model.graph.output:
        raise UsageError(f"{path}: not an ONNX model (no IR version or no graph outputs)")
    # A file cut short can still parse (protobuf stops at a field boundary);
    # the checker tells such a file from a whole model. The file is the user's
    # input here, so an invalid one is bad input, not a failed conversion.
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise UsageError(f"{path}: not a valid ONNX model (truncated or corrupt?): {one_line(exc, with_type=True, limit=300)}") from exc
    return model


def signature(model, options=None):
    """InputSpecs from the graph's declared inputs, to synthesise data."""
    from onnx import helper

    from onnxgate.plugins import UsageError
    from onnxgate.plugins import graph_inputs

    specs = []
    for vi in graph_inputs(model):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            raise UsageError(
                f"input {vi.name!r} is a {kind or 'untyped value'}: onnxgate cannot synthesise it; "
                "give its data with --golden"
            )
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
        if dtype is None:
            raise UsageError(f"input {vi.name!r} declares no element type; give its data with --golden or --sample")
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in tt.shape.dim
        )
        specs.append(InputSpec(name=vi.name, shape=shape, dtype="str" if dtype.kind == "O" else dtype.name))
    return specs


def convert(model, example, options):
    """Identity; with ``--opset N`` the model is moved to opset N by
    onnx.version_converter (old zoo models use opsets onnxruntime dropped)."""
    import onnx

    declared = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    if options.opset and options.opset != declared:
        from onnx import version_converter

        from onnxgate.plugins import ConversionError

        try:
            moved = version_converter.convert_version(model, options.opset)
        except Exception as exc:
            raise ConversionError(
                f"onnx.version_converter cannot move this model from opset {declared} to {options.opset}: "
                f"{one_line(exc, with_type=True, limit=300)}"
            ) from exc
        return Conversion(moved, exporter=f"onnx.version_converter (opset {declared} -> {options.opset})",
                          notes=[f"ready-made ONNX model moved from opset {declared} to {options.opset}"])
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the pipeline stamps provenance: leave the caller's object alone
    return Conversion(copy, exporter=EXPORTER, notes=["ready-made ONNX model: nothing was converted"])



@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="onnx",
        framework="ONNX",
        description="ready-made ONNX models: no conversion, the same checks and gate "
                    "(expected outputs from --golden DIR or --expected)",
        convert=convert,
        run=None,  # there is no original: expected outputs are the user's
        load=load,
        inputs=signature,
        suffixes=(".onnx",),
        object_types=("onnx.onnx_ml_pb2.ModelProto",),
        # The ONNX backend test runner's defaults; golden data is often
        # produced by another runtime or on other hardware.
        tolerance=Tolerance(rtol=1e-3, atol=1e-7),
        requires=("onnx", "onnxruntime"),
        framework_distribution="onnx",
    )
