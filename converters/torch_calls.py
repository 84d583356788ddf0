"""How a PyTorch model is called and what its outputs are called.

``forward()`` is called with what the sample provides: positionally when the
sample covers the leading parameters, else by keyword, leaving optional
parameters (Hugging Face models have many: ``token_type_ids``, ``labels``,
``past_key_values``...) at their defaults. An exported program is called the
way it was exported (``args=`` or ``kwargs=``). Outputs that are mappings
(``transformers`` ``ModelOutput``, dicts) are named by their keys; fields left
None are not outputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from onnxgate.plugins import UsageError

_HINT = "map them with --input-map SAMPLE_NAME=MODEL_INPUT (repeatable)"


def is_exported_program(model) -> bool:
    return type(model).__name__ == "ExportedProgram"


def parameters(model) -> tuple[list[str], list[str]]:
    """forward()'s positional-or-keyword parameter names, and the required ones."""
    if is_exported_program(model):
        names = [s.arg.name for s in model.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        return names, names
    forward = getattr(model, "forward", None)
    schema = getattr(forward, "schema", None)
    if schema is not None:  # TorchScript
        args = schema.arguments[1:]
        return [a.name for a in args], [a.name for a in args if a.default_value is None and not _optional(a)]
    if forward is None:
        return [], []
    params = [
        p
        for p in inspect.signature(forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    positional = [p.name for p in params if p.kind != p.KEYWORD_ONLY]
    return positional + [p.name for p in params if p.kind == p.KEYWORD_ONLY], [
        p.name for p in params if p.default is p.empty
    ]


def _optional(arg) -> bool:
    return "Optional" in str(arg.type) or str(arg.type).endswith("?")


def exported_by_keyword(program) -> bool:
    """True when the program was exported with ``kwargs=``: its call spec's
    keyword part names the inputs."""
    spec = program.call_spec.in_spec
    if spec is None or spec.num_children != 2:
        return False
    kwargs = spec.child(1) if hasattr(spec, "child") else spec.children_specs[1]
    return bool(kwargs.context)


def forward_call(model, inputs: Mapping) -> tuple[tuple, dict]:
    """(args, kwargs) of tensors for ``inputs`` (numpy arrays keyed by name)."""
    import torch

    names, required = parameters(model)
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    if is_exported_program(model):
        if set(tensors) == set(names):
            if exported_by_keyword(model):
                return (), {n: tensors[n] for n in names}
            return tuple(tensors[n] for n in names), {}
    elif names and set(tensors) <= set(names) and set(required) <= set(tensors):
        given = [n for n in names if n in tensors]
        if given == names[: len(given)]:
            return tuple(tensors[n] for n in given), {}
        return (), {n: tensors[n] for n in given}
    if len(tensors) == 1 and len(required) <= 1 and names and not set(tensors) & set(names[1:]):
        # unnamed, or keyed by the user's ONNX name: the first argument
        return (next(iter(tensors.values())),), {}
    raise UsageError(
        f"sample inputs {sorted(tensors)} do not match the model's forward() arguments {names}"
        + (f" (required: {required})" if required != names else "")
        + f"; {_HINT}"
    )


def named_outputs(out) -> dict | None:
    """{name: tensor} for a mapping output (a ModelOutput keeps only its
    non-None fields as keys); nested sequences are numbered
    (``hidden_states_0``). None when the output is not a mapping."""
    if not isinstance(out, Mapping):
        return None
    named: dict = {}
    for key, value in out.items():
        _add(named, str(key), value)
    return named


def _add(named: dict, name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _add(named, f"{name}_{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _add(named, f"{name}_{i}", item)
    else:
        named[name] = value
