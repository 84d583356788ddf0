"""Small helpers shared by converter plugins. Nothing here imports a framework."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def zip_names(path: Path) -> list[str]:
    """Member names of a zip archive, or [] when the file is not one."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def first_zip_member(path: Path) -> str:
    names = zip_names(path)
    return names[0] if names else ""


def ensure_float_features(example: Mapping[str, np.ndarray]) -> np.ndarray:
    """The single tabular input of a tree/linear model, as float32."""
    (X,) = example.values()
    return np.asarray(X, dtype=np.float32)


#: ONNX metadata key: ``{"<input>": [column names]}`` for 2-D inputs fed by named
#: columns (the served model takes records keyed by them).
COLUMNS_METADATA = "onnxgate_columns"


def name_columns(onnx_model, input_name: str, columns) -> None:
    """Record a 2-D input's column names (a model trained on a DataFrame) in the ONNX model."""
    import json

    if not columns:
        return
    for prop in onnx_model.metadata_props:
        if prop.key == COLUMNS_METADATA:
            prop.value = json.dumps({**json.loads(prop.value or "{}"), input_name: list(columns)})
            return
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = COLUMNS_METADATA, json.dumps({input_name: list(columns)})


def recorded_columns(onnx_model) -> dict[str, list[str]]:
    """``{input: column names}`` that ``name_columns`` recorded; {} when none or unreadable."""
    import json

    for prop in onnx_model.metadata_props:
        if prop.key == COLUMNS_METADATA:
            try:
                found = json.loads(prop.value)
            except ValueError:
                return {}
            if isinstance(found, dict):
                return {str(k): [str(c) for c in v] for k, v in found.items() if isinstance(v, list)}
    return {}


def flatten(value) -> list:
    """Nested tuples/lists/dicts of arrays -> flat list, in pytree order."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in flatten(v)]
    return [value]
