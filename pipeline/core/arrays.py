"""Plain arrays from what onnxruntime and original models return."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def as_array(value: Any, keys: Sequence[Any] | None = None) -> np.ndarray:
    """Plain arrays from what runtimes return (lists, lists of dicts, scalars).

    ZipMap-style ``[{label: prob}, ...]`` becomes (rows, classes) with the
    columns in ``keys`` order (the classifier's class order) when given,
    else in sorted key order (scikit-learn's ``classes_`` are sorted).
    """
    if isinstance(value, np.ndarray):
        return value
    if is_zipmap(value):
        keys = list(keys) if keys is not None and set(keys) == set(value[0]) else sorted(value[0])
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
    return np.asarray(value)


def abs_diff(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| in float64, where NaN on both sides and the same
    infinity on both sides are a match (0); NaN on one side stays NaN and an
    infinity against anything else is inf."""
    a, e = np.asarray(actual).astype(np.float64), np.asarray(expected).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf
        diff = np.abs(a - e)
    diff[(np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))] = 0.0
    return diff


def is_zipmap(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], dict)
