"""Validation data given in memory (the Python API), as the same structure a
sample file loads to: ``{input name or None: ndarray}``.

Numpy arrays, lists, torch and TensorFlow tensors, pandas DataFrames and
Series, and dicts of any of these keyed by input (or output) name. The
binding rules of ``inputs.bind_sample`` then apply unchanged. Frameworks are
recognised by their type's module, never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.plugins.errors import UsageError

ACCEPTED = (
    "a file path (.npz, .npy, .csv, .parquet), a numpy array, a list, a torch or TensorFlow tensor, "
    "a pandas DataFrame, or a dict of these keyed by {key} name"
)


def is_path(value: Any) -> bool:
    return isinstance(value, (str, Path))


def read_sample(sample: Any, signature=None) -> dict[str | None, np.ndarray]:
    """A sample file or in-memory data; ``signature``: the model's InputSpecs, when known.

    Named columns (a CSV header, Parquet, a DataFrame) are bound to the
    signature by ``tables.Table.bind``: one input per column, or the columns
    of one 2-D input in the model's order."""
    from onnxgate.pipeline.conversion import tables

    if is_path(sample):
        from onnxgate.pipeline.conversion.inputs import load_sample

        loaded = load_sample(Path(sample))
    elif _is_dataframe(sample):
        loaded = tables.from_dataframe(sample)
    else:
        return from_memory(sample, [s.name for s in signature or ()], what="sample", key="input")
    return loaded.bind(signature) if isinstance(loaded, tables.Table) else loaded


def from_memory(
    value: Any, names: Sequence[str] = (), *, what: str = "sample", key: str = "input"
) -> dict[str | None, np.ndarray]:
    """``{name: array}`` for a dict, ``{None: array}`` for one unnamed array.

    A DataFrame whose columns include every one of ``names`` gives one input
    per column (as skl2onnx models over DataFrames want, shape ``(rows, 1)``);
    any other DataFrame is one 2-D array.
    """
    if isinstance(value, Mapping):
        if not value:
            raise UsageError(f"{what}: the dict holds no arrays")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise UsageError(f"{what}: dict keys must be {key} names (str), got {bad[0]!r}")
        return {k: to_array(v, f"{what}[{k!r}]", key) for k, v in value.items()}
    if _is_dataframe(value):
        return _from_dataframe(value, names, what)
    return {None: to_array(value, what, key)}


def to_array(value: Any, what: str = "sample", key: str = "input") -> np.ndarray:
    """One value as an ndarray, or UsageError naming what was given and what is accepted.

    Arrays and tensors keep their dtype; Python floats (lists) become float32.
    """
    module = type(value).__module__.split(".")[0]
    try:
        if isinstance(value, np.ndarray):
            array = value
        elif module == "torch" and hasattr(value, "detach"):
            tensor = value.detach().cpu()
            if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16
                tensor = tensor.float()
            array = tensor.numpy()
        elif module in ("tensorflow", "keras", "tf_keras") and hasattr(value, "numpy"):
            array = np.asarray(value.numpy())
        elif module == "pandas" and hasattr(value, "to_numpy"):  # Series, or a DataFrame under a dict key
            array = value.to_numpy()
        elif isinstance(value, (list, tuple, int, float, bool)):
            array = np.asarray(value)
            if array.dtype == np.float64:  # Python floats carry no precision of their own: models take float32
                array = array.astype(np.float32)
        elif isinstance(value, np.generic) or hasattr(value, "__array__"):
            array = np.asarray(value)
        else:
            array = None
    except UsageError:
        raise
    except Exception as exc:  # ragged lists, tensors numpy cannot hold...
        raise UsageError(f"{what}: cannot be read as an array ({_type_name(value)}): {_first_line(exc)}") from None
    if array is None or (array.dtype.kind == "O" and not _all_strings(array)):
        raise UsageError(f"{what}: a {_type_name(value)} is not usable as data; give {ACCEPTED.format(key=key)}")
    return array


def expected_from_memory(value: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Expected outputs: a dict keyed by ONNX output name, or one array for a single-output model."""
    arrays = from_memory(value, what="expected", key="output")
    if None in arrays:
        if len(output_names) != 1:
            raise UsageError(
                f"expected: one unnamed array but the ONNX model has {len(output_names)} outputs "
                f"({', '.join(output_names)}); give a dict keyed by output name"
            )
        return {output_names[0]: arrays[None]}
    return {k: v for k, v in arrays.items() if k is not None}


def to_file(value: Any, folder: Path, stem: str) -> Path:
    """Write in-memory data as ``.npz`` for a process that reads files (isolated environments)."""
    arrays = from_memory(value, what=stem)
    if None in arrays:
        path = Path(folder) / f"{stem}.npy"
        np.save(path, arrays[None], allow_pickle=False)
    else:
        path = Path(folder) / f"{stem}.npz"
        np.savez(path, **{str(k): v for k, v in arrays.items()})  # type: ignore[arg-type]  # numpy's stub
    return path


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "columns") and hasattr(value, "to_numpy")


def _from_dataframe(frame: Any, names: Sequence[str], what: str) -> dict[str | None, np.ndarray]:
    columns = [str(c) for c in frame.columns]
    if len(frame.columns) == 0 or len(frame) == 0:
        raise UsageError(f"{what}: the DataFrame is empty")
    if names and len(names) > 1 and set(names) <= set(columns):
        return {n: _column(frame[n], f"{what}[{n!r}]") for n in names}
    non_numeric = [c for c, dtype in zip(columns, frame.dtypes) if getattr(dtype, "kind", "O") not in "biuf"]
    if non_numeric:
        raise UsageError(
            f"{what}: DataFrame columns {non_numeric} are not numeric and the model does not take one input "
            f"per column (its inputs: {', '.join(names) or 'unknown'})"
        )
    return {None: frame.to_numpy()}


def _column(series: Any, what: str) -> np.ndarray:
    array = series.to_numpy()
    if array.dtype.kind == "O" or array.dtype.kind == "U":
        array = array.astype(object)  # onnxruntime takes strings as object arrays
    return array.reshape(-1, 1)


def _all_strings(array: np.ndarray) -> bool:
    return all(isinstance(v, str) for v in array.ravel().tolist())


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
