"""Plain arrays from what onnxruntime and original models return."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np


def as_array(value: Any, keys: Optional[Sequence[Any]] = None) -> np.ndarray:
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


def is_zipmap(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], dict)
