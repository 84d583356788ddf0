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


def flatten(value) -> list:
    """Nested tuples/lists/dicts of arrays -> flat list, in pytree order."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in flatten(v)]
    return [value]
