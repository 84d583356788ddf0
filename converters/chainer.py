"""Chainer -> ONNX with ``onnx_chainer.export``, in the "legacy" environment.

Source: the parameters ``chainer.serializers.save_npz`` wrote (``.npz``),
plus the model's class or factory, which only the legacy environment can
import: ``--option model=package.module:Factory`` (or
``path/to/file.py:Factory``). The factory is called without arguments and
must return the ``chainer.Link``; the parameters are loaded into it with
``allow_pickle=False`` (chainer's own ``load_npz`` would unpickle). The main
process never imports the reference. Input shapes cannot be known from a
Chainer model: pass ``--sample`` (an .npz keyed by input name, in the order
of ``forward``'s arguments, or an .npy for a single input).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import tempfile
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, OptionSpec, Tolerance, hookimpl, one_line

from .common import zip_names
from .legacy_env import drop_initializer_inputs

MODEL_OPTION = "model"


def sniff(path: Path) -> bool:
    """A save_npz archive: .npy members named by link path ("l1/W.npy")."""
    names = zip_names(path)
    return bool(names) and all(n.endswith(".npy") for n in names) and any("/" in n for n in names)


def _usage(message: str):
    from onnxgate.plugins import UsageError

    return UsageError(message)


def import_factory(reference: str):
    """``pkg.mod:attr`` or ``path/to/file.py:attr`` -> the object named."""
    target, sep, attr = reference.rpartition(":")
    if not sep or not target or not attr:
        raise _usage(f"--option {MODEL_OPTION}={reference}: expected package.module:Factory or file.py:Factory")
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.is_file():
                raise _usage(f"--option {MODEL_OPTION}={reference}: no such file {target}")
            spec = importlib.util.spec_from_file_location(file.stem, file)
            assert spec is not None and spec.loader is not None  # a .py path gets a source loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise _usage(f"--option {MODEL_OPTION}={reference}: cannot import {target!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _usage(f"--option {MODEL_OPTION}={reference}: {target!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load(path: Path, trusted: bool, options=None):
    import chainer
    import numpy as np
    from chainer.serializers.npz import NpzDeserializer

    reference = (getattr(options, "extra", None) or {}).get(MODEL_OPTION)
    if not reference:
        raise _usage(
            f"{path}: a Chainer .npz holds parameters only; name the model with "
            f"--option {MODEL_OPTION}=package.module:Factory (or file.py:Factory)"
        )
    factory = import_factory(reference)
    model = factory() if inspect.isclass(factory) or inspect.isfunction(factory) else factory
    if not isinstance(model, chainer.Link):
        raise _usage(f"--option {MODEL_OPTION}={reference}: gives a {type(model).__name__}, not a chainer.Link")
    try:
        with np.load(path, allow_pickle=False) as archive:
            NpzDeserializer(archive, strict=True).load(model)
    except KeyError as exc:
        raise _usage(f"{path}: does not match {reference}: no parameter {exc.args[0]!s}") from None
    except (ValueError, OSError) as exc:  # shapes differ, object arrays (pickles), not an npz
        raise _usage(f"{path}: cannot load into {reference}: {one_line(exc, limit=200)}") from None
    _check_initialised(model, path, reference)
    return model


def _check_initialised(model, path, reference) -> None:
    empty = [name for name, param in model.namedparams() if param.array is None]
    if empty:
        raise _usage(f"{path}: leaves parameters of {reference} uninitialised: {', '.join(empty[:5])}")


def _args(model, inputs):
    return [inputs[name] for name in inputs]


def _export(model, args, names, options, batch_name=None):
    import chainer
    import onnx_chainer

    kwargs = {}
    if options.opset:
        kwargs["opset_version"] = options.opset
    if batch_name:
        kwargs["input_shapes"] = [(batch_name,) + tuple(a.shape[1:]) for a in args]
    with (
        chainer.using_config("train", False),
        chainer.no_backprop_mode(),
        tempfile.TemporaryDirectory(prefix="onnxgate-chainer-") as tmp,
    ):
        return onnx_chainer.export(
            model, list(args), filename=str(Path(tmp) / "model.onnx"), input_names=names, **kwargs
        )


def convert(model, example, options):
    import numpy as np
    import onnx_chainer

    names = list(example)
    args = _args(model, example)
    notes = []
    if options.dynamic_batch:
        onx = _export(model, args, names, options, "batch")
        # onnx-chainer writes the traced batch size into Reshape shapes (a
        # Linear on 4-D input): trace again one row larger to find them.
        larger = [np.concatenate([a, a[:1]]) for a in args]
        notes += free_batch(onx, _export(model, larger, names, options, "batch"), len(args[0]))
    else:
        onx = _export(model, args, names, options)
    drop_initializer_inputs(onx)
    return Conversion(onx, exporter=f"onnx_chainer.export (onnx-chainer {onnx_chainer.__version__})", notes=notes)


def free_batch(onx, larger, batch: int) -> list:
    """Make Constant shapes that follow the batch size say "copy dim 0" (0).

    ``larger`` is the same model traced with ``batch + 1`` rows; a Constant
    element equal to ``batch`` there and ``batch + 1`` here is the batch. Only
    the first element of a Reshape's shape can be freed this way; any other
    batch-dependent constant stays, with a note (validation then fails on the
    other batch sizes, as it should).
    """
    from onnx import numpy_helper

    def constants(m):
        return {n.output[0]: n for n in m.graph.node if n.op_type == "Constant" and n.attribute}

    reshape_shapes = {n.input[1] for n in onx.graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    theirs = constants(larger)
    notes = []
    for name, node in constants(onx).items():
        if name not in theirs:
            continue
        mine = numpy_helper.to_array(node.attribute[0].t)
        other = numpy_helper.to_array(theirs[name].attribute[0].t)
        if mine.shape != other.shape or mine.dtype.kind not in "iu":
            continue
        moved = (mine == batch) & (other == batch + 1)
        if not moved.any():
            continue
        if name in reshape_shapes and mine.ndim == 1 and moved[0] and not moved[1:].any():
            fixed = mine.copy()
            fixed[0] = 0  # Reshape: 0 copies the input's dim 0, the batch
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(fixed, node.attribute[0].t.name))
        else:
            notes.append(f"constant {name} holds the traced batch size {batch}; the batch is not dynamic there")
    return notes


def run(model, inputs):
    import chainer

    with chainer.using_config("train", False), chainer.no_backprop_mode():
        out = model(*_args(model, inputs))
    outs = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]
    return [o.array if isinstance(o, chainer.Variable) else o for o in outs]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="chainer",
        framework="Chainer",
        description="Chainer links (.npz parameters + --option model=module:Factory) via onnx-chainer, "
        "in the 'legacy' environment",
        convert=convert,
        run=run,
        load=load,
        suffixes=(".npz",),
        sniff=sniff,
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("chainer", "onnx-chainer", "onnx"),
        framework_distribution="chainer",
        environment="legacy",
        options=(
            OptionSpec(
                MODEL_OPTION, str, help="the model's factory: package.module:Factory or file.py:Factory (required)"
            ),
        ),
    )
