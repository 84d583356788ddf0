"""The JAX converter: Flax NNX modules and JAX functions, exported with jax2onnx.

Sources are Python objects (``onnxgate convert pkg.mod:model``): an
``nnx.Module``, a ``jax.jit``/``nnx.jit`` function (both detected), or any
other JAX callable such as ``functools.partial(apply, params)`` or a plain
function (``--framework jax``). The input signature comes from ``--sample``
or from ``--option inputs=NAME:DIMS[:DTYPE];...`` (``x:B,4``; a name in DIMS
is a dynamic dimension). The original model is run by JAX itself.

Only this module's imports run when onnxgate lists plugins or detects a
source: JAX, Flax and jax2onnx are imported inside the callables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onnxgate.plugins import (
    Conversion,
    ConverterSpec,
    ConvertOptions,
    InputSpec,
    OptionSpec,
    Tolerance,
    UsageError,
    hookimpl,
)

#: The onnxgate plugin API versions this plugin is written for.
ONNXGATE_API = ">=1.2,<2"

#: The opset jax2onnx targets unless the user asks (--opset); onnxruntime
#: >= 1.20 runs it.
DEFAULT_OPSET = 21


def parse_inputs(text: str) -> list[InputSpec]:
    """``x:B,4;mask:B,4:int32`` -> InputSpecs; a non-integer dim is dynamic."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fields = item.split(":")
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            raise UsageError(f"--option inputs: {item!r} is not NAME:DIMS[:DTYPE] (e.g. x:B,4)")
        dims = tuple(int(d) if d.strip().isdigit() else d.strip() for d in fields[1].split(","))
        specs.append(InputSpec(fields[0], dims, fields[2] if len(fields) == 3 else "float32"))
    if not specs:
        raise UsageError("--option inputs: empty")
    return specs


def inputs(model: Any, options: ConvertOptions) -> list[InputSpec] | None:
    """Declared by ``--option inputs=...``; otherwise a sample must tell."""
    declared = (options.extra or {}).get("inputs") if options is not None else None
    return parse_inputs(str(declared)) if declared else None


def _abstract(example: Mapping[str, Any], options: ConvertOptions) -> list:
    """jax2onnx input specs: the example's shapes, the batch axis symbolic
    ("B") unless the user asked for a static batch, named dims kept symbolic."""
    import jax

    declared = {s.name: s.shape for s in (inputs(None, options) or [])}
    scope = jax.export.SymbolicScope()  # one scope: equal names are one dimension
    specs = []
    for name, value in example.items():
        dims = list(value.shape)
        for axis, dim in enumerate(declared.get(name, ())):
            if isinstance(dim, str) and axis < len(dims):
                dims[axis] = dim
        if options.dynamic_batch and dims and name not in declared:
            dims[0] = "B"
        shape = (
            jax.export.symbolic_shape(",".join(str(d) for d in dims), scope=scope)
            if any(isinstance(d, str) for d in dims)
            else tuple(dims)
        )
        specs.append(jax.ShapeDtypeStruct(shape, value.dtype))
    return specs


def convert(model: Any, example: Mapping[str, Any], options: ConvertOptions) -> Conversion:
    from jax2onnx import to_onnx

    opset = options.opset or DEFAULT_OPSET
    proto = to_onnx(
        model, _abstract(example, options), opset=opset, input_names=list(example), model_name=type(model).__name__
    )
    return Conversion(proto, exporter=f"jax2onnx.to_onnx (opset {opset})")


def run(model: Any, inputs: Mapping[str, Any]) -> list[Any]:
    """JAX runs the original; outputs flattened in pytree order, as jax2onnx does."""
    import jax
    import numpy as np

    produced = model(*(jax.numpy.asarray(v) for v in inputs.values()))
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(produced)]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="jax",
        framework="JAX",
        convert=convert,
        run=run,
        inputs=inputs,
        object_types=(
            "flax.nnx.module.Module",
            "flax.nnx.transforms.compilation.JitWrapped",
            "jaxlib._jax.PjitFunction",
        ),
        requires=("jax", "jax2onnx"),
        framework_distribution="jax",
        default_opset=DEFAULT_OPSET,
        # float32 in both; XLA and onnxruntime fuse differently
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        description="JAX functions and Flax NNX modules, via jax2onnx",
        options=(
            OptionSpec(
                "inputs",
                str,
                help="the input signature when no sample gives it: NAME:DIM,DIM;... with a symbolic "
                "batch as a letter (x:B,4)",
            ),
        ),
    )
