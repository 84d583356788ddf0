"""Samples with named columns: a CSV with a header, a Parquet file, a DataFrame.

A ``Table`` keeps its columns by name until the model's signature says how to
feed them (``bind``):

- one input per column (``InputSpec`` per column name, as skl2onnx converts
  pipelines over DataFrames): each column as a ``(rows, 1)`` array of the
  input's type (strings as object arrays);
- one 2-D input that names its columns (``InputSpec.columns``, a model trained
  on a DataFrame): the columns stacked in the model's order;
- one 2-D input without names: numeric columns stacked in the file's order.

Columns the model does not use are left out; a missing column, a duplicate
name or a value that does not fit its column's type is a UsageError. CSV
cells stay text until then, so a column of digits (a zip code) may still
feed a string input.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.plugins.errors import UsageError

TABULAR_EXTRA = "pip install 'onnxgate[tabular]'"


class Table:
    """Columns by name, in the sample's order; ``text`` columns are raw CSV cells."""

    def __init__(self, columns: dict[str, np.ndarray], origin: str, lines: Sequence[int] = (), text: bool = False):
        self.columns = columns
        self.origin = origin  # "sample data.csv", "sample (DataFrame)"
        self.lines = list(lines)  # CSV line number of each row, for messages
        self.text = text

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def bind(self, signature) -> dict[str | None, np.ndarray]:
        """The arrays to feed, keyed by input name (None: the single unnamed input)."""
        specs = list(signature or ())
        names = [s.name for s in specs]
        if specs and all(n in self.columns for n in names) and not (len(specs) == 1 and specs[0].columns):
            return {s.name: self.column(s.name, _per_column_kind(s.dtype)).reshape(-1, 1) for s in specs}
        if len(specs) == 1 and specs[0].columns:
            wanted = [self._lookup(str(c)) for c in specs[0].columns]
            self._require(wanted, shown=[str(c) for c in specs[0].columns])
            return {None: self.stacked(wanted)}
        if len(specs) > 1 and any(n in self.columns for n in names):
            self._require(names)
        if len(specs) > 1:
            raise UsageError(
                f"{self.origin}: its columns {self.names} are not the model's inputs {names}; "
                "give one column per input, named as the inputs"
            )
        if specs or all(self._numeric(c) for c in self.columns):
            return {None: self.stacked(self.names)}
        # no signature known: one input per column, by name (a ready-made ONNX model)
        return {c: self.column(c, None).reshape(-1, 1) for c in self.columns}

    def _lookup(self, name: str) -> str:
        """The sample's column for a model's feature name; LightGBM stores
        ``sepal length`` as ``sepal_length``, so blanks may stand for ``_``."""
        if name in self.columns:
            return name
        alike = [c for c in self.columns if re.sub(r"\s", "_", c) == name]
        return alike[0] if len(alike) == 1 else name

    def _require(self, wanted: Sequence[str], shown: Sequence[str] = ()) -> None:
        missing = [c for c in wanted if c not in self.columns]
        if missing:
            raise UsageError(
                f"{self.origin}: columns {missing} are missing; the model takes {list(shown or wanted)}, "
                f"the sample has {self.names}"
            )

    def stacked(self, names: Sequence[str]) -> np.ndarray:
        return np.hstack([self.column(c, "float").reshape(-1, 1) for c in names]).astype(np.float32)

    def _numeric(self, name: str) -> bool:
        values = self.columns[name]
        if not self.text:
            return values.dtype.kind in "biuf"
        return all(_number(v) is not None or not v.strip() for v in values)

    def column(self, name: str, kind: str | None) -> np.ndarray:
        """One column as ``kind``: "str", "int", "float", "number" (int64 when the
        values are whole numbers, else float32), or None (as the data reads)."""
        values = self.columns[name]
        if self.text:
            return self._from_text(name, values, kind)
        if values.dtype.kind in "OUS" or kind == "str":
            if kind not in (None, "str"):
                raise self._bad(name, values, kind)
            if values.dtype.kind not in "OUS":
                raise UsageError(f"{self.origin}: column {name!r} must hold strings, it holds {values.dtype} numbers")
            return _strings(values)
        if kind == "int" and values.dtype.kind == "f":
            return values.astype(np.float32)  # NaN has no int form: skl2onnx casts either way
        if kind == "int" or (kind in (None, "number") and values.dtype.kind in "iub"):
            return values.astype(np.int64)
        return values.astype(np.float32)

    def _from_text(self, name: str, cells: np.ndarray, kind: str | None) -> np.ndarray:
        if kind == "str":
            return cells.astype(object)
        numbers = [_number(c) for c in cells]
        if any(n is None and c.strip() for n, c in zip(numbers, cells)):
            if kind is None:
                return cells.astype(object)
            raise self._bad(name, cells, kind)
        floats = np.array([np.nan if n is None else n for n in numbers], dtype=np.float64)
        whole = all(n is not None and float(n).is_integer() and "." not in c for n, c in zip(numbers, cells))
        if kind == "int" or (kind in (None, "number") and whole):
            return floats.astype(np.int64) if whole else floats.astype(np.float32)
        return floats.astype(np.float32)

    def _bad(self, name: str, values: np.ndarray, kind: str) -> UsageError:
        row = next(i for i, v in enumerate(values.tolist()) if not _is_number(v))
        where = f"line {self.lines[row]}" if self.lines else f"row {row}"
        return UsageError(f"{self.origin}: column {name!r} takes numbers but {where} holds {str(values[row])[:40]!r}")


def _kind(dtype: str) -> str | None:
    kind = np.dtype(dtype).kind if dtype not in ("str", "string", "object") else "O"
    return "str" if kind in "OUS" else "int" if kind in "iub" else "float" if kind == "f" else None


def _per_column_kind(dtype: str) -> str | None:
    """The column as the input's type says: a float input gets whole numbers
    as float32 too (scikit-learn's numeric steps take an int column as float)."""
    return _kind(dtype)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip() or _number(value) is not None
    return isinstance(value, (int, float, np.number)) or value is None


def _strings(values: np.ndarray) -> np.ndarray:
    """Object array of str (onnxruntime's string tensors); a missing value becomes ""."""
    return np.array(
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object
    )


def read_csv(path: Path) -> Table | np.ndarray:
    """A CSV with a header (a first row holding any non-number) as a Table;
    without one, the numbers as a float32 array (rows x columns)."""
    rows, lines = [], []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        for row in reader:
            if row and any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    if not rows:
        raise UsageError(f"sample {path}: no rows")
    width = len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise UsageError(f"sample {path}: line {line} has {len(row)} columns; the first row has {width}")
    if all(_number(cell) is not None for cell in rows[0]):
        return _numbers(path, rows, lines)
    header = [cell.strip() for cell in rows[0]]
    _check_header(f"sample {path}", header)
    if len(rows) == 1:
        raise UsageError(f"sample {path}: a header and no rows")
    cells = np.array(rows[1:], dtype=object).reshape(len(rows) - 1, width)
    columns = {name: cells[:, i] for i, name in enumerate(header)}
    return Table(columns, f"sample {path}", lines[1:], text=True)


def _numbers(path: Path, rows, lines) -> np.ndarray:
    for row, line in zip(rows, lines):
        if any(_number(cell) is None for cell in row):
            raise UsageError(f"sample {path}: line {line} is not numbers: {','.join(row)[:80]!r}")
    return np.asarray([[float(cell) for cell in row] for row in rows], dtype=np.float32)


def _check_header(origin: str, header: Sequence[str]) -> None:
    empty = [i + 1 for i, name in enumerate(header) if not name]
    if empty:
        raise UsageError(f"{origin}: the header has no name for column {empty[0]}")
    seen, duplicates = set(), []
    for name in header:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise UsageError(f"{origin}: the header names {duplicates} more than once")


def read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"sample {path}: reading .parquet needs pandas and pyarrow ({TABULAR_EXTRA})") from None
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:  # not Parquet, truncated, unsupported types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"sample {path}: not a readable Parquet file: {first}") from None
    return from_dataframe(frame, f"sample {path}")


def from_dataframe(frame: Any, origin: str = "sample (DataFrame)") -> Table:
    header = [str(c) for c in frame.columns]
    _check_header(origin, header)
    if len(frame) == 0 or not header:
        raise UsageError(f"{origin}: the DataFrame is empty")
    columns = {}
    for name, original in zip(header, frame.columns):
        values = frame[original].to_numpy()
        if values.dtype.kind not in "biufOUS":  # categoricals, pandas strings, nullable ints
            values = np.asarray(frame[original].astype(object if values.dtype.kind not in "biuf" else "float64"))
        if values.dtype.kind == "O" and all(_is_number(v) and not isinstance(v, str) for v in values.tolist()):
            values = values.astype(np.float64)  # an object column of numbers and None/NaN
        columns[name] = values
    return Table(columns, origin)
