"""MXNet -> ONNX with ``mxnet.onnx.export_model``, in the "legacy" environment.

Source: the pair ``HybridBlock.export(prefix)`` writes, ``prefix-symbol.json``
(give this file) and ``prefix-NNNN.params`` (found next to it, or
``--option params=FILE``). MXNet 1.9 needs numpy < 1.24 and onnx < 1.15, so
load, convert and the original model's inference run in the environment
declared by ``legacy_env.py``; this module is imported there too, and only
the spec's callables import mxnet.
"""

from __future__ import annotations

import json
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, OptionSpec, Tolerance, hookimpl, read_head

from .legacy_env import drop_initializer_inputs

SYMBOL_SUFFIX = "-symbol.json"
#: mxnet.onnx's converters start at opset 12.
MIN_OPSET = 12
_PARAMS_RE = re.compile(r"-(\d{4})\.params$")


def sniff(path: Path) -> bool:
    """An MXNet symbol graph: a JSON object with "nodes", "arg_nodes" and "heads".

    Reads the head and the tail only ("arg_nodes"/"heads" follow the node
    list), so a large file costs nothing and XGBoost's JSON does not match.
    """
    head = read_head(path, 4096)
    if not head.lstrip().startswith(b"{") or b'"nodes"' not in head:
        return False
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    return b'"arg_nodes"' in head + tail and b'"heads"' in head + tail


class MXNetError(Exception):
    """An MXNet error reduced to its reason (MXNet's own carries a C++ traceback)."""


@contextmanager
def _mx_errors():
    import mxnet as mx

    try:
        yield
    except mx.base.MXNetError as exc:
        raise MXNetError(_first_line(exc)) from None


@dataclass
class MXNetModel:
    """A loaded symbol + parameters; ``block`` runs it."""

    symbol_path: Path
    params_path: Path
    input_names: list[str]
    #: Input shapes inferred from the parameters (0 = unknown), or None.
    input_shapes: dict[str, tuple] = field(default_factory=dict)
    block: Any = None


def params_for(path: Path, options=None) -> Path:
    from onnxgate.plugins import UsageError

    given = (getattr(options, "extra", None) or {}).get("params")
    if given:
        params = Path(given)
        if not params.is_file():
            raise UsageError(f"--option params={given}: no such file")
        return params
    prefix = path.name[: -len(SYMBOL_SUFFIX)] if path.name.endswith(SYMBOL_SUFFIX) else path.stem
    found = sorted(p for p in path.parent.glob(f"{glob_escape(prefix)}-*.params") if _PARAMS_RE.search(p.name))
    if not found:
        raise UsageError(
            f"{path}: no parameters file next to it (expected {prefix}-0000.params, as HybridBlock.export "
            "writes); pass --option params=FILE"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UsageError(f"{path}: several parameter files next to it ({names}); pass --option params=FILE")
    return found[0]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def load(path: Path, trusted: bool, options=None) -> MXNetModel:
    """Parameters are MXNet's own binary format (no pickle): safe to read untrusted."""
    from onnxgate.plugins import UsageError

    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable MXNet symbol JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(graph, dict) or not {"nodes", "arg_nodes", "heads"} <= set(graph):
        raise UsageError(f"{path}: not an MXNet symbol JSON (no nodes/arg_nodes/heads)")
    params_path = params_for(path, options)

    import mxnet as mx

    with _mx_errors():
        symbol = mx.sym.load(str(path))
    try:
        saved = mx.nd.load(str(params_path))
    except mx.base.MXNetError as exc:
        raise UsageError(f"{params_path}: not a readable MXNet parameters file: {_first_line(exc)}") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{params_path}: holds an unnamed NDArray list, not named parameters")
    params = {key.split(":", 1)[-1]: value for key, value in saved.items()}
    inputs = [name for name in symbol.list_inputs() if name not in params]
    if not inputs:
        raise UsageError(f"{path}: every argument of the symbol has a saved value; no model input is left")
    # Parameters the graph needs but the file lacks look like inputs; a
    # weight name among them means the pair does not belong together.
    missing = [n for n in inputs if n.endswith(("_weight", "_bias", "_gamma", "_beta", "_mean", "_var"))]
    if missing:
        raise UsageError(f"{params_path}: lacks parameters the symbol needs: {', '.join(missing[:5])}")
    try:
        arg_shapes, _, _ = symbol.infer_shape_partial(
            **{k: v.shape for k, v in params.items() if k in symbol.list_inputs()}
        )
    except mx.base.MXNetError as exc:
        raise UsageError(f"{params_path}: parameters do not fit the symbol: {_first_line(exc)}") from None
    shapes = dict(zip(symbol.list_arguments(), arg_shapes or []))
    shapes.update(_dense_input_shapes(graph, params, inputs))
    with _mx_errors():
        block = mx.gluon.nn.SymbolBlock.imports(str(path), inputs, str(params_path), ctx=mx.cpu())
    return MXNetModel(path, params_path, inputs, {n: tuple(shapes.get(n) or ()) for n in inputs}, block)


def _dense_input_shapes(graph, params, inputs) -> dict[str, tuple]:
    """MXNet infers no shape backwards; an input fed straight into a
    FullyConnected layer is (batch, in_units) by that layer's weight."""
    nodes = graph["nodes"]
    index = {node["name"]: i for i, node in enumerate(nodes)}
    found = {}
    for node in nodes:
        if node.get("op") != "FullyConnected" or len(node.get("inputs", [])) < 2:
            continue
        data, weight = nodes[node["inputs"][0][0]]["name"], nodes[node["inputs"][1][0]]["name"]
        if data in inputs and weight in params and data in index:
            found[data] = (0, int(params[weight].shape[1]))
    return found


def signature(model: MXNetModel, options=None) -> list[InputSpec] | None:
    """The shapes MXNet infers from the parameters, or None (--sample needed).

    MXNet infers shapes forwards only, so a shape is known when the input
    feeds a FullyConnected layer directly; image sizes are not.
    """
    specs = []
    for name in model.input_names:
        shape = model.input_shapes.get(name) or ()
        if not shape or any(d == 0 for d in shape[1:]):
            return None
        specs.append(InputSpec(name=name, shape=(None,) + tuple(int(d) for d in shape[1:])))
    return specs


def _bind(model: MXNetModel, inputs) -> dict[str, Any]:
    """Case inputs by MXNet input name; an unnamed sample (.npy, keyed
    "input") goes to a model's single input."""
    if set(inputs) == set(model.input_names):
        return {name: inputs[name] for name in model.input_names}
    if len(inputs) == 1 and len(model.input_names) == 1:
        return {model.input_names[0]: next(iter(inputs.values()))}
    from onnxgate.plugins import UsageError

    raise UsageError(f"sample inputs {sorted(inputs)} do not match the model's inputs {model.input_names}")


def _rename_inputs(onx, names: dict[str, str]) -> None:
    for inp in onx.graph.input:
        if inp.name in names:
            inp.name = names[inp.name]
    for node in onx.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]


def convert(model: MXNetModel, example, options):
    from unittest import mock

    import mxnet as mx
    import numpy as np
    import onnx

    bound = _bind(model, example)
    shapes = [tuple(np.shape(bound[name])) for name in model.input_names]
    types = [np.dtype(bound[name].dtype).type for name in model.input_names]
    kwargs: dict[str, Any] = {}
    if options.dynamic_batch:
        kwargs.update(dynamic=True, dynamic_input_shapes=[(None,) + s[1:] for s in shapes])
    opset = options.opset or onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        from onnxgate.plugins import UsageError

        raise UsageError(f"mxnet.onnx exports opsets {MIN_OPSET} to {onnx.defs.onnx_opset_version()}, not {opset}")
    # export_model takes no opset: it asks onnx.defs for the newest one at call time
    with (
        tempfile.TemporaryDirectory(prefix="onnxgate-mxnet-") as tmp,
        mock.patch("onnx.defs.onnx_opset_version", lambda: opset),
    ):
        out = Path(tmp) / "model.onnx"
        with _mx_errors():
            mx.onnx.export_model(str(model.symbol_path), str(model.params_path), shapes, types, str(out), **kwargs)
        onx = onnx.load(str(out))
    drop_initializer_inputs(onx)
    if list(example) != model.input_names:  # the ONNX input takes the sample's name
        _rename_inputs(onx, dict(zip(model.input_names, example)))
    return Conversion(onx, exporter=f"mxnet.onnx.export_model (mxnet {mx.__version__})")


def run(model: MXNetModel, inputs):
    import mxnet as mx

    bound = _bind(model, inputs)
    args = [mx.nd.array(bound[name], dtype=bound[name].dtype) for name in model.input_names]
    with _mx_errors():
        out = model.block(*args)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.asnumpy() for o in outs]


def _first_line(exc: BaseException) -> str:
    """MXNet errors carry a C++ traceback; the reason is on the MXNetError line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    reasons = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("MXNetError:")]
    text = reasons[-1] if reasons else (lines[-1] if lines else type(exc).__name__)
    return text[:200]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="mxnet",
        framework="MXNet",
        description="MXNet symbol JSON + params (HybridBlock.export) via mxnet.onnx, in the 'legacy' environment",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".json",),
        sniff=sniff,
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("mxnet", "onnx"),
        framework_distribution="mxnet",
        environment="legacy",
        options=(OptionSpec("params", str, help="the .params file (default: PREFIX-NNNN.params beside the symbol)"),),
    )
