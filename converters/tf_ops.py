"""TensorFlow ops tf2onnx cannot translate: finding them, and composing a few.

tf2onnx only LOGS ops it cannot map and leaves them in the graph, where
onnxruntime refuses them later. ``fail_on_untranslated`` turns that into a
conversion failure naming the ops; ``compositions`` supplies ONNX
compositions for ops tf2onnx 1.17 lacks (Log1p, Expm1, Erfc), which the gate
then validates like everything else.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from typing import Any

TF_DOMAIN = "ai.onnx.converters.tensorflow"


@contextmanager
def capture_tf2onnx_log():
    """Collect tf2onnx's error records (they name unsupported ops) and keep
    them off the user's terminal: the outcome is reported as one line."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("tf2onnx")
    handler = _Keep(level=logging.ERROR)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with quiet_tf():
            yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextmanager
def quiet_tf():
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tf_logger.setLevel(level)


def _unsupported_from_log(records) -> dict[str, str]:
    """{TF op: why} from tf2onnx's 'is not supported' and 'Failed to convert
    node' records (the latter: a converter exists but raised)."""
    found: dict[str, str] = {}
    for rec in records:
        msg = str(rec.msg)
        args: tuple[Any, ...] = rec.args or ()  # tf2onnx logs with positional %-args
        if msg.startswith("Tensorflow op [") and len(args) == 2:
            found.setdefault(str(args[1]), "")
        elif msg.startswith("Failed to convert node") and args:
            op = re.match(r"OP=(\w+)", str(args[-1]))
            exc = rec.exc_info[1] if rec.exc_info else None
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:100]}" if exc else "error"
            found[op.group(1) if op else f"node {args[0]}"] = f"tf2onnx's converter failed, {why}"
    return found


def _graph_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from _graph_nodes(attr.g)
            for sub in attr.graphs:
                yield from _graph_nodes(sub)


def _foreign_ops(onx) -> dict[str, int]:
    """Ops left in the graph that ONNX does not define (TF ops tf2onnx kept)."""
    import onnx

    counts: dict[str, int] = {}
    for node in _graph_nodes(onx.graph):
        standard = node.domain in ("", "ai.onnx", "ai.onnx.ml")
        if node.domain == TF_DOMAIN or (standard and not onnx.defs.has(node.op_type, node.domain)):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def fail_on_untranslated(onx, records) -> None:
    foreign = _foreign_ops(onx)
    from_log = _unsupported_from_log(records)
    if not foreign and not from_log:
        return
    from onnxgate.plugins import ConversionError

    parts = []
    for op in sorted(set(foreign) | set(from_log)):
        count = foreign.get(op)
        detail = [f"{count} node{'s' if count > 1 else ''}"] if count else []
        detail += [from_log[op]] if from_log.get(op) else []
        parts.append(f"{op} ({'; '.join(detail)})" if detail else op)
    raise ConversionError(
        "tf2onnx cannot convert these TensorFlow ops: "
        + ", ".join(parts)
        + f" (onnxgate composes only {', '.join(sorted(compositions()))}); the model would not load in onnxruntime"
    )


# --- ONNX compositions for TF ops tf2onnx 1.17 lacks ----------------------------------


def compositions(used: set | None = None):
    """{TF op: tf2onnx old-style handler}; each rewrites the node in place and
    records its op in ``used`` so the report can say what was composed."""

    def recording(op, compose):
        def handler(ctx, node, name, args):
            compose(ctx, node)
            if used is not None:
                used.add(op)

        return handler

    composers = (("Log1p", _compose_log1p), ("Expm1", _compose_expm1), ("Erfc", _compose_erfc))
    return {op: recording(op, fn) for op, fn in composers}


def _builder(ctx, node):
    """(x, const, op): the node's input and small factories for new nodes."""
    import numpy as np
    from tf2onnx import utils

    x = node.input[0]
    np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    scope = f"{node.name}/onnxgate"

    def const(value):
        return ctx.make_const(utils.make_name(f"{scope}/c"), np.array(value, dtype=np_dtype)).output[0]

    def op(kind, *inputs):
        return ctx.make_node(kind, list(inputs), name=utils.make_name(f"{scope}/{kind}")).output[0]

    return x, const, op


def _where_small(ctx, node, x, const, op, near, far) -> None:
    """node := Where(|x| < 0.5, near, far), keeping the node's output name."""
    small = op("Less", op("Abs", x), const(0.5))
    ctx.replace_inputs(node, [small, near, far])
    node.type = "Where"


def _compose_log1p(ctx, node):
    # log1p(x) = 2*atanh(x / (2 + x)) exactly; it keeps full precision near 0,
    # where log(1 + x) cancels. Far from 0, log(1 + x) is accurate.
    x, const, op = _builder(ctx, node)
    near = op("Mul", const(2.0), op("Atanh", op("Div", x, op("Add", const(2.0), x))))
    far = op("Log", op("Add", const(1.0), x))
    _where_small(ctx, node, x, const, op, near, far)


def _compose_expm1(ctx, node):
    # expm1(x) = 2t / (1 - t) with t = tanh(x/2), exact and precise near 0;
    # far from 0, exp(x) - 1 has no cancellation (and gives inf, -1 at +-inf).
    x, const, op = _builder(ctx, node)
    t = op("Tanh", op("Mul", x, const(0.5)))
    near = op("Div", op("Mul", const(2.0), t), op("Sub", const(1.0), t))
    far = op("Sub", op("Exp", x), const(1.0))
    _where_small(ctx, node, x, const, op, near, far)


#: Numerical Recipes' erfc(z) = t*exp(-z^2 + P(t)), t = 1/(1 + z/2), z >= 0:
#: fractional error below 1.2e-7 everywhere, so the tail keeps its precision.
_ERFC_P = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _compose_erfc(ctx, node):
    # Exact GELU in Keras 3 uses Erfc. Near 0, 1 - erf(x) is accurate; further
    # out it cancels to 0, so the rational approximation takes over there.
    x, const, op = _builder(ctx, node)
    z = op("Abs", x)
    t = op("Div", const(1.0), op("Add", const(1.0), op("Mul", const(0.5), z)))
    poly = const(_ERFC_P[-1])
    for c in reversed(_ERFC_P[:-1]):
        poly = op("Add", const(c), op("Mul", t, poly))
    tail = op("Mul", t, op("Exp", op("Sub", poly, op("Mul", z, z))))
    far = op("Where", op("Less", x, const(0.0)), op("Sub", const(2.0), tail), tail)
    near = op("Sub", const(1.0), op("Erf", x))
    _where_small(ctx, node, x, const, op, near, far)
