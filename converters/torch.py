"""PyTorch -> ONNX with torch.onnx.

The dynamo exporter runs first; when it fails, the TorchScript exporter is
tried and the report says which one produced the model. The batch dimension
is dynamic unless the user asks otherwise.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl, one_line

from .common import flatten, zip_names


def _is_torchscript(names) -> bool:
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def load(path: Path, trusted: bool):
    import torch

    names = zip_names(path)
    if not names:
        raise ValueError("not a PyTorch archive (torch.save/torch.export.save write zip files)")
    if path.suffix.lower() == ".pt2":
        import logging

        # torch.export.load logs a full traceback before raising on bad files
        logging.getLogger("torch.export").setLevel(logging.ERROR)
        return torch.export.load(str(path))
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
    return type(model).__name__ == "ExportedProgram"


def input_names(model):
    if _is_exported_program(model):
        return [s.arg.name for s in model.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    forward = getattr(model, "forward", None)
    schema = getattr(forward, "schema", None)
    if schema is not None:  # TorchScript
        return [a.name for a in schema.arguments[1:]]
    params = inspect.signature(forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def signature(model, options=None):
    names = input_names(model)
    if _is_exported_program(model):
        specs = []
        placeholders = {n.name: n for n in model.graph.nodes if n.op == "placeholder"}
        for name in names:
            val = placeholders[name].meta.get("val")
            shape = tuple(int(d) if str(d).isdigit() else None for d in val.shape)
            specs.append(InputSpec(name=name, shape=shape, dtype=str(val.dtype).replace("torch.", "")))
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


def _tensors(model, inputs):
    """Arrays in forward()'s argument order: by name, else by position (an
    unnamed sample, or one keyed by the user's ONNX names)."""
    import torch

    names = input_names(model)
    if all(name in inputs for name in names):
        return tuple(torch.from_numpy(inputs[name]) for name in names)
    if len(inputs) == len(names) == 1:
        return (torch.from_numpy(next(iter(inputs.values()))),)
    from onnxgate.plugins import UsageError

    raise UsageError(
        f"sample inputs {sorted(inputs)} do not match the model's forward() arguments {names}; "
        "map them with --input-map SAMPLE_NAME=MODEL_INPUT (repeatable)"
    )


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
    args = _tensors(model, example)
    notes = []
    if not isinstance(model, torch.jit.ScriptModule):
        try:
            return Conversion(_export_dynamo(model, args, options), exporter="torch.onnx dynamo", notes=notes)
        except Exception as exc:  # the exporter raises many types; the fallback decides
            notes.append(
                f"dynamo exporter failed ({one_line(exc, with_type=True, limit=200)}); "
                "fell back to the TorchScript exporter"
            )
            if _is_exported_program(model):
                raise
    onx = _export_torchscript(model, args, options)
    return Conversion(onx, exporter="torch.onnx torchscript", notes=notes)


def _export_dynamo(model, args, options):
    import torch

    dynamic_shapes = None
    if options.dynamic_batch and not _is_exported_program(model):
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} for _ in args)
    program = torch.onnx.export(
        model,
        args,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        opset_version=options.opset,
        verbose=False,
        optimize=True,
    )
    return program.model_proto


def _export_torchscript(model, args, options):
    import io

    import onnx
    import torch

    names = input_names(model)
    with torch.no_grad():
        n_outputs = len(flatten(model(*args)))
    output_names = [f"output_{i}" for i in range(n_outputs)]
    dynamic_axes = {n: {0: "batch"} for n in names + output_names} if options.dynamic_batch else None
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        args,
        buffer,
        dynamo=False,
        input_names=names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=options.opset or 17,
    )
    return onnx.load_from_string(buffer.getvalue())


def run(model, inputs):
    import torch

    module = model.module() if _is_exported_program(model) else model
    with torch.no_grad():
        out = module(*_tensors(model, inputs))
    return [t.detach().cpu().numpy() for t in flatten(out)]


def run_float64(model, inputs):
    """The original once more in float64 (a deep copy: the user's module stays
    float32; float inputs cast): the gate measures the float32 run's own
    rounding noise against it."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():  # copying an exported program's module warns about torch's own pytree API
        warnings.simplefilter("ignore", FutureWarning)
        module = copy.deepcopy(model.module() if _is_exported_program(model) else model).double()
    args = tuple(t.double() if t.is_floating_point() else t for t in _tensors(model, inputs))
    with torch.no_grad():
        out = module(*args)
    return [t.detach().cpu().numpy() for t in flatten(out)]


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
        with torch.no_grad():
            module(*_tensors(model, inputs))
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
