"""PyTorch -> ONNX with torch.onnx.

The dynamo exporter runs first; when it fails, the TorchScript exporter is
tried and the report says which one produced the model. The batch dimension
is dynamic unless the user asks otherwise.
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConversionError, ConverterSpec, InputSpec, Tolerance, hookimpl, one_line

from . import torch_calls as calls
from . import torch_hf, torch_pt2
from .common import flatten, zip_names


def _is_torchscript(names) -> bool:
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def load(path: Path, trusted: bool):
    import torch

    names = zip_names(path)
    if not names:
        raise ValueError("not a PyTorch archive (torch.save/torch.export.save write zip files)")
    if path.suffix.lower() == ".pt2":
        return torch_pt2.load(path, trusted)
    if _is_torchscript(names):
        return torch.jit.load(str(path), map_location="cpu")
    if not trusted:
        from onnxgate.plugins import UntrustedSourceError

        raise UntrustedSourceError(
            f"{path}: not a TorchScript archive; loading a pickled module can run arbitrary code; "
            "pass --trust-source only if you trust where this file came from"
        )
    model = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"the file holds a {type(model).__name__}, not an nn.Module (a state_dict needs the model's code)"
        )
    return model


def _is_exported_program(model) -> bool:
    return calls.is_exported_program(model)


def input_names(model):
    return calls.parameters(model)[0]


def signature(model, options=None):
    names = input_names(model)
    if _is_exported_program(model):
        specs = []
        placeholders = {n.name: n for n in model.graph.nodes if n.op == "placeholder"}
        for name in names:
            val = placeholders[name].meta.get("val")
            shape = tuple(int(d) if str(d).isdigit() else None for d in val.shape)
            dtype = str(val.dtype).replace("torch.", "")
            specs.append(InputSpec(name, shape, dtype, *torch_hf.value_range(name, dtype)))
        return specs
    first = _first_leaf(model)
    weight = getattr(first, "weight", None)
    kind = getattr(first, "original_name", type(first).__name__)
    if len(names) == 1 and kind == "Linear" and weight is not None:
        return [InputSpec(name=names[0], shape=(None, int(weight.shape[1])), dtype="float32")]
    return None  # spatial sizes cannot be guessed honestly: ask for --sample


def _first_leaf(model):
    for module in model.modules():
        if not list(module.children()):
            return module
    return model


def convert(model, example, options):
    import logging
    import warnings

    import torch

    # The exporters log and warn about optional extras (torchvision ops,
    # deprecations); the report carries what matters.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _convert(model, example, options, torch)


def _convert(model, example, options, torch):
    if isinstance(model, torch.nn.Module):
        model.eval()
    args, kwargs = _forward_call(model, example)
    notes = torch_hf.cache_notes(model)
    with torch.no_grad():
        output_names = _output_names(_call(model, args, kwargs))
    if not isinstance(model, torch.jit.ScriptModule):
        try:
            onx = _export_dynamo(model, args, kwargs, output_names, options)
            return Conversion(onx, exporter="torch.onnx dynamo", notes=notes)
        except Exception as exc:  # the exporter raises many types; the fallback decides
            if _is_exported_program(model):  # the TorchScript exporter cannot take a program
                raise ConversionError(f"torch.onnx dynamo exporter: {_export_failure(exc)}") from exc
            notes.append(f"dynamo exporter failed ({_export_failure(exc)}); fell back to the TorchScript exporter")
    onx = _export_torchscript(model, args, kwargs, output_names, options)
    return Conversion(onx, exporter="torch.onnx torchscript", notes=notes)


def _forward_call(model, inputs):
    """(args, kwargs) for the sample; a transformers model also gets
    ``use_cache=False`` (the cache is not exported)."""
    args, kwargs = calls.forward_call(model, inputs)
    return args, {**kwargs, **torch_hf.fixed_kwargs(model)}


def _export_failure(exc) -> str:
    """The cause of a torch.onnx failure in one line: the exception its
    report summarises (``## Exception summary``), else its first line."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the exporter colours its messages
    lines = [ln.strip() for ln in text.splitlines()]
    if "## Exception summary" in lines:
        cause = next((ln for ln in lines[lines.index("## Exception summary") + 1 :] if ln), "")
        if cause:
            return one_line(cause.replace("<class '", "").replace("'>", ""), limit=300)
    return one_line(type(exc).__name__ + ": " + (lines[0] if lines else ""), limit=300)


def _call(model, args, kwargs):
    module = model.module() if _is_exported_program(model) else model
    return module(*args, **kwargs)


def _output_names(out) -> list[str] | None:
    """Field names for mapping outputs (ModelOutput: ``logits``...), else
    None (the exporter names them)."""
    named = calls.named_outputs(out)
    return list(named) if named else None


def _export_dynamo(model, args, kwargs, output_names, options):
    dynamic_shapes = None
    if options.dynamic_batch and not _is_exported_program(model):
        dynamic_shapes = torch_hf.dynamic_shapes(model, args, kwargs)
    import torch

    program = torch.onnx.export(
        model,
        args,
        kwargs=kwargs or None,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        output_names=output_names,
        opset_version=options.opset,
        verbose=False,
        optimize=True,
    )
    return program.model_proto


def _export_torchscript(model, args, kwargs, output_names, options):
    import io

    import onnx
    import torch

    names = input_names(model)[: len(args)] + [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    if output_names is None:
        with torch.no_grad():
            output_names = [f"output_{i}" for i in range(len(_leaves(model(*args, **kwargs))))]
    axes = torch_hf.dynamic_axes(model, names, args, kwargs)
    dynamic_axes = {**axes, **{n: {0: "batch"} for n in output_names}} if options.dynamic_batch else None
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        args,
        buffer,
        kwargs=kwargs or None,
        dynamo=False,
        input_names=names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=options.opset or 17,
    )
    return onnx.load_from_string(buffer.getvalue())


def _leaves(out) -> list:
    named = calls.named_outputs(out)
    return list(named.values()) if named is not None else [t for t in flatten(out) if t is not None]


def run(model, inputs):
    """The original's outputs: keyed by field name for mapping outputs
    (ModelOutput), else in pytree order."""
    import torch

    args, kwargs = _forward_call(model, inputs)
    with torch.no_grad():
        return _numpy_outputs(_call(model, args, kwargs))


def run_float64(model, inputs):
    """The original once more in float64 (a deep copy: the user's module stays
    float32; float inputs cast), called as ``run`` calls it: the gate measures
    the float32 run's own rounding noise against it."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():  # copying an exported program's module warns about torch's own pytree API
        warnings.simplefilter("ignore", FutureWarning)
        module = copy.deepcopy(model.module() if _is_exported_program(model) else model).double()
    args, kwargs = _forward_call(model, inputs)

    def double(value):
        return value.double() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    with torch.no_grad():
        return _numpy_outputs(module(*map(double, args), **{k: double(v) for k, v in kwargs.items()}))


def _numpy_outputs(out):
    named = calls.named_outputs(out)
    if named is not None:
        return {k: v.detach().cpu().numpy() for k, v in named.items()}
    return [t.detach().cpu().numpy() for t in flatten(out) if t is not None]


def intermediates(model, inputs, onnx_model):
    """Each submodule's output (forward hooks), mapped to the ONNX tensor the
    last node of that module's scope writes. Scopes come from the dynamo
    exporter's ``pkg.torch.onnx.name_scopes`` metadata, else from TorchScript
    node names (``/encoder/fc2/Gemm``)."""
    import torch

    from onnxgate.plugins import Intermediate

    module = model.module() if _is_exported_program(model) else model
    if isinstance(module, torch.jit.ScriptModule):
        return []  # no Python forward hooks on TorchScript
    last = _scope_outputs(onnx_model)
    seen, found = {}, []

    def hook(name):
        def record(mod, args, out):
            seen[name] = seen.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and name in last:
                found.append(Intermediate(name, type(mod).__name__, last[name], out.detach().cpu().numpy().copy()))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if n]
    try:
        args, kwargs = _forward_call(model, inputs)
        with torch.no_grad():
            module(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return [i for i in found if seen[i.name] == 1]  # a reused module has no single ONNX tensor


def _scope_outputs(onnx_model):
    """Module path -> first output of the last node inside that module."""
    import ast

    last = {}
    for node in onnx_model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        if "pkg.torch.onnx.name_scopes" in props:  # full paths: ['', 'body', 'body.0', 'linear']
            paths = ast.literal_eval(props["pkg.torch.onnx.name_scopes"])[1:-1]
        elif node.name.startswith("/"):
            parts = [p.rsplit(".", 1)[-1] for p in node.name.split("/")[1:-1]]
            paths = [".".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        else:
            continue
        for path in paths:
            last[path] = node.output[0]
    return last


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="torch",
        framework="PyTorch",
        description="nn.Module, ExportedProgram (.pt2), TorchScript via torch.onnx",
        convert=convert,
        run=run,
        run_float64=run_float64,
        load=load,
        inputs=signature,
        suffixes=(".pt2", ".pt", ".pth"),
        object_types=(
            "torch.nn.modules.module.Module",
            "torch.jit._script.ScriptModule",
            "torch.export.exported_program.ExportedProgram",
        ),
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("torch", "onnxscript"),
        framework_distribution="torch",
        intermediates=intermediates,
    )
