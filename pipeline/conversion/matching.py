"""Which sample array feeds which model input.

A sample may be keyed by the source model's input names (``forward(x)``),
by the ONNX model's names (a user's own export: ``input``, ``X``,
``input_1``), or not at all (``.npy``/``.csv``). Arrays match by ONNX name,
by source name, or by position when both sides have a single input;
``--input-map SAMPLE_NAME=MODEL_INPUT`` settles the rest. The source's and
the ONNX model's inputs are in the same order (every exporter keeps it), so
a name on one side finds its partner on the other by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from onnxgate.plugins.errors import ConversionError, UsageError

MAP_HINT = "map them with --input-map SAMPLE_NAME=MODEL_INPUT (repeatable)"


def parse_input_map(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--input-map {pair!r}: expected SAMPLE_NAME=MODEL_INPUT")
        out[key.strip()] = value.strip()
    return out


def apply_input_map(sample: dict[str | None, np.ndarray], input_map: Mapping[str, str]) -> dict[str | None, np.ndarray]:
    if not input_map:
        return sample
    unknown = sorted(k for k in input_map if k not in sample and not (None in sample and len(sample) == 1))
    if unknown:
        shown = sorted(str(k) for k in sample if k is not None) or ["(one unnamed array)"]
        raise UsageError(f"--input-map names {unknown}, which the sample does not hold (it holds {shown})")
    out: dict[str | None, np.ndarray] = {}
    for key, value in sample.items():
        if key is None and len(sample) == 1 and len(input_map) == 1:
            out[next(iter(input_map.values()))] = value
        else:
            out[key if key is None else input_map.get(key, key)] = value
    return out


def bind_to_source(
    sample: dict[str | None, np.ndarray],
    source_names: Sequence[str],
    onnx_names: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Key the sample by the source's input names (what the original runs on).

    With no source names known (a model whose inputs cannot be read), the
    sample keeps its own keys; an unnamed array is called ``input`` and
    goes to the model's only input later, by position.
    """
    source_names, onnx_names = list(source_names), list(onnx_names)
    if None in sample:
        count = len(source_names) or len(onnx_names)
        if count > 1:
            raise UsageError(
                f"the sample is one unnamed array but the model takes {count} inputs "
                f"({', '.join(source_names or onnx_names)}); use an .npz keyed by input name"
            )
        return {(source_names or onnx_names or ["input"])[0]: sample[None]}
    named = cast(dict[str, np.ndarray], sample)  # no None key past the check above
    keys = set(named)
    if not source_names or keys == set(source_names):
        return dict(named)
    if onnx_names and keys == set(onnx_names) and len(onnx_names) == len(source_names):
        by_position = dict(zip(onnx_names, source_names))
        return {by_position[k]: v for k, v in named.items()}
    required = [n for n in source_names if n not in optional]
    if optional and set(required) <= keys <= set(source_names):  # optional inputs left out
        return dict(named)
    if optional and onnx_names and keys == set(onnx_names) and len(required) <= len(onnx_names) < len(source_names):
        by_position = dict(zip(onnx_names, source_names))  # the optional inputs the export left out trail
        return {by_position[k]: v for k, v in named.items()}
    if len(named) == 1 and len(source_names) == 1:
        return {source_names[0]: next(iter(named.values()))}
    raise mismatch(sorted(keys), source_names, onnx_names)


def mismatch(sample_names, source_names, onnx_names) -> UsageError:
    parts = [f"sample inputs {list(sample_names)} match neither"]
    parts.append(f"the source model's inputs {list(source_names)}" if source_names else "the source model's inputs")
    if onnx_names:
        parts.append(f"nor the ONNX model's inputs {list(onnx_names)}")
    return UsageError(" ".join(parts) + f"; {MAP_HINT}")


def to_onnx_names(
    keys: Sequence[str], onnx_names: Sequence[str], source_names: Sequence[str], converted: bool
) -> dict[str, str]:
    """sample/source key -> ONNX input name, for every key.

    ``converted``: the ONNX model came from the converter (not the user), so
    ONNX inputs the source lacks are the converter's doing (exit 3).
    """
    keys, onnx_names, source_names = list(keys), list(onnx_names), list(source_names)
    if set(keys) == set(onnx_names):
        return {k: k for k in keys}
    if len(keys) == len(onnx_names) == 1:
        return {keys[0]: onnx_names[0]}
    if set(keys) == set(source_names) and len(source_names) == len(onnx_names):
        return dict(zip(source_names, onnx_names))  # exporters keep the source's input order
    extra = [n for n in onnx_names if n not in keys]
    if converted and set(keys) < set(onnx_names):
        raise ConversionError(
            f"the converted model has inputs the source model lacks: {', '.join(extra)} "
            "(the converter turned captured state into graph inputs)"
        )
    raise mismatch(keys, source_names, onnx_names)


def rename(inputs: Mapping[str, np.ndarray], mapping: Mapping[str, str]) -> dict[str, np.ndarray]:
    return {mapping.get(k, k): v for k, v in inputs.items()}


def reverse(mapping: Mapping[str, str]) -> dict[str, str]:
    return {v: k for k, v in mapping.items()}


def names_of(signature) -> list[str]:
    return [s.name for s in signature] if signature else []


def optional_of(signature) -> list[str]:
    """Inputs a sample may leave out (``InputSpec.optional``)."""
    return [s.name for s in signature if getattr(s, "optional", False)] if signature else []
