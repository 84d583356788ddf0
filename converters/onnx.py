"""Ready-made ONNX models (model zoo, Azure Custom Vision, other tools).

Nothing is converted: the model goes through the same gate as a converted
one (onnx.checker, strict shape inference, onnxruntime load, comparison).
There is no original to run, so expected outputs must come from a golden
folder (``--golden``) or from ``--expected`` with ``--sample``; without them
the verdict is "unverified".
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, OptionSpec, Tolerance, hookimpl, one_line

from .common import recorded_columns

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
        raise UsageError(
            f"{path}: not a valid ONNX model (truncated or corrupt?): {one_line(exc, with_type=True, limit=300)}"
        ) from exc
    return model


def signature(model, options=None):
    """InputSpecs from the graph's declared inputs, to synthesise data."""
    from onnx import helper

    from onnxgate.plugins import UsageError, graph_inputs

    columns = recorded_columns(model)
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
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in tt.shape.dim
        )
        named = tuple(columns.get(vi.name, ())) if len(shape) == 2 else ()
        specs.append(
            InputSpec(name=vi.name, shape=shape, dtype="str" if dtype.kind == "O" else dtype.name, columns=named)
        )
    return specs


def convert(model, example, options):
    """Identity; with ``--upgrade-opset N`` (or ``--opset N``) the model is
    moved to opset N by onnx.version_converter (old zoo models use opsets
    onnxruntime dropped)."""
    import onnx

    declared = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    target = int((options.extra or {}).get("upgrade_opset") or options.opset or 0)
    if target and target != declared:
        moved = _version_convert(model, declared, target)
        return Conversion(
            moved,
            exporter=f"onnx.version_converter (opset {declared} -> {target})",
            notes=[
                f"ready-made ONNX model moved from opset {declared} to {target} by "
                "onnx.version_converter, validated against the original model's outputs"
            ],
        )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the pipeline stamps provenance: leave the caller's object alone
    return Conversion(copy, exporter=EXPORTER, notes=["ready-made ONNX model: nothing was converted"])


#: Runs in a child: onnx.version_converter has crashed the interpreter (onnx#4178).
_CONVERT_SCRIPT = """
import sys, onnx
from onnx import version_converter
model = onnx.load(sys.argv[1])
try:
    moved = version_converter.convert_version(model, int(sys.argv[3]))
except Exception as exc:
    lines = [l for l in str(exc).strip().splitlines() if l.strip()]
    sys.stderr.write(type(exc).__name__ + ": " + (lines[0] if lines else "") + "\\n")
    sys.exit(3)
onnx.save(moved, sys.argv[2])
"""


def _version_convert(model, declared: int, target: int):
    import subprocess
    import sys
    import tempfile

    import onnx

    from onnxgate.plugins import ConversionError

    with tempfile.TemporaryDirectory(prefix="onnxgate-upgrade-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        proc = subprocess.run(
            [sys.executable, "-c", _CONVERT_SCRIPT, str(src), str(dst), str(target)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not dst.is_file():
            why = (proc.stderr.strip().splitlines() or [f"the converter died (exit code {proc.returncode})"])[-1]
            raise ConversionError(
                f"onnx.version_converter cannot move this model from opset {declared} to {target}: {why[:300]}"
            )
        return onnx.load(str(dst))


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


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
        options=(
            OptionSpec(
                "upgrade_opset",
                int,
                help="move the model to this opset with onnx.version_converter (the CLI's --upgrade-opset)",
            ),
        ),
    )
