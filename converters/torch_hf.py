"""What the torch converter does differently for Hugging Face transformers
models: token inputs get a dynamic sequence axis besides the batch, and the
key/value cache is not exported (``use_cache=False``).

Recognised by class path, without importing transformers.
"""

from __future__ import annotations

import inspect

from onnxgate.plugins import type_paths

PRETRAINED = "transformers.modeling_utils.PreTrainedModel"
CACHE_NOTE = (
    "exported without the key/value cache (use_cache=False): the ONNX model recomputes "
    "the whole sequence on every call; export with a cache is Optimum's job (see docs/huggingface.md)"
)


def is_transformers_model(model) -> bool:
    return PRETRAINED in type_paths(model)


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def fixed_kwargs(model) -> dict:
    """Keyword arguments every call gets: no cache in or out."""
    if is_transformers_model(model) and _accepts(model, "use_cache"):
        return {"use_cache": False}
    return {}


def cache_notes(model) -> list[str]:
    """The cache note, for models that use one (decoders, generators)."""
    if not fixed_kwargs(model):
        return []
    config = model.config
    can_generate = getattr(model, "can_generate", lambda: False)
    uses_cache = getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False)
    return [CACHE_NOTE] if uses_cache or can_generate() else []


def value_range(name: str, dtype: str) -> tuple[int, int]:
    """[low, high) of synthesised integer inputs: masks are ones, token type
    ids 0/1, anything else small ids (inside any vocabulary)."""
    if "int" not in dtype:
        return 0, 10
    if name.endswith("attention_mask"):
        return 1, 2
    if name == "token_type_ids":
        return 0, 2
    return 0, 10


def max_positions(model) -> int | None:
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 2:
            return value
    return None


def _axes(model, value) -> dict[int, str] | None:
    """Dynamic axes of one input: batch; and sequence for a transformers
    model's integer inputs (token ids, masks), which have shape (batch, seq)."""
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return None
    if is_transformers_model(model) and value.ndim == 2 and not value.is_floating_point():
        return {0: "batch", 1: "sequence"}
    return {0: "batch"}


def _named(model, args, kwargs) -> dict:
    from .torch_calls import parameters

    names = parameters(model)[0]
    return {**dict(zip(names, args)), **kwargs}


def dynamic_shapes(model, args, kwargs) -> dict:
    """torch.export dynamic_shapes keyed by forward() parameter name."""
    import torch

    seq_max = max_positions(model)
    dims = {
        "batch": torch.export.Dim("batch"),
        "sequence": torch.export.Dim("sequence", max=seq_max) if seq_max else torch.export.Dim("sequence"),
    }
    out = {}
    for name, value in _named(model, args, kwargs).items():
        axes = _axes(model, value)
        out[name] = {i: dims[a] for i, a in axes.items()} if axes else None
    return out


def dynamic_axes(model, names, args, kwargs) -> dict:
    """The TorchScript exporter's dynamic_axes for the inputs ``names``."""
    values = _named(model, args, kwargs)
    return {n: axes for n in names if (axes := _axes(model, values.get(n)))}
