"""Provenance written into the ONNX model's ``metadata_props``."""

from __future__ import annotations

PREFIX = "onnxgate."


def stamp(model, fields: dict[str, str]) -> None:
    """Set ``onnxgate.<key>`` metadata entries, replacing earlier ones."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key = PREFIX + key
        entry.value = str(value)


def read(model) -> dict[str, str]:
    return {p.key[len(PREFIX) :]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
