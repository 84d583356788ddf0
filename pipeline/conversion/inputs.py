"""Validation inputs: loaded from a sample file or synthesised from a signature."""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from onnxgate.pipeline.conversion import tables
from onnxgate.pipeline.conversion.tables import Table
from onnxgate.pipeline.core.artifact import DEFAULT_SEED, Case
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.spec import InputSpec

#: Batch size used when synthesising inputs with a dynamic batch dimension.
SYNTH_BATCH = 4
#: Size given to other dynamic dimensions when synthesising.
SYNTH_DIM = 8


#: Largest sample file (or .npz content) read, in bytes: a sample is a few
#: representative rows, and a huge one would take the process down with it.
DEFAULT_MAX_SAMPLE_BYTES = 256 * 1024 * 1024
#: ``--max-sample-bytes`` travels in this variable, so isolated framework
#: environments (another process) apply the same limit.
MAX_SAMPLE_BYTES_ENV = "ONNXGATE_MAX_SAMPLE_BYTES"


def max_sample_bytes() -> int:
    value = os.environ.get(MAX_SAMPLE_BYTES_ENV, "")
    return int(value) if value.isdigit() else DEFAULT_MAX_SAMPLE_BYTES


def check_sample_size(path: Path, max_bytes: int | None = None) -> None:
    """UsageError when the file, or what an .npz expands to, exceeds the limit."""
    limit = max_bytes if max_bytes is not None else max_sample_bytes()
    size = path.stat().st_size
    if path.suffix.lower() == ".npz" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            size = max(size, sum(info.file_size for info in zf.infolist()))
    if size > limit:
        raise UsageError(f"sample {path}: {size} bytes is over the limit (--max-sample-bytes {limit})")


def load_sample(path: Path, max_bytes: int | None = None) -> dict[str | None, np.ndarray] | Table:
    """``.npz`` keyed by input name; ``.npy`` and a headerless ``.csv`` give one
    unnamed input; a ``.csv`` with a header and ``.parquet`` give a Table of
    named columns (bound to the model's inputs by ``Table.bind``)."""
    if not path.is_file():
        raise UsageError(f"sample {path}: no such file")
    suffix = path.suffix.lower()
    try:
        check_sample_size(path, max_bytes)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            if not arrays:
                raise UsageError(f"sample {path}: the .npz holds no arrays")
            return arrays
        if suffix == ".npy":
            return {None: np.load(path, allow_pickle=False)}
        if suffix == ".csv":
            table = tables.read_csv(path)
            return table if isinstance(table, Table) else {None: table}
        if suffix == ".parquet":
            return tables.read_parquet(path)
    except UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"sample {path}: unreadable: {exc}") from exc
    raise UsageError(f"sample {path}: unsupported format {suffix!r} (use .npz, .npy, .csv or .parquet)")


def bind_sample(sample: dict[str | None, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Key an unnamed sample by the model's single input; check names."""
    if None in sample:
        if len(names) != 1:
            raise UsageError(
                f"sample has one unnamed array but the model takes {len(names)} inputs "
                f"({', '.join(names)}); use an .npz keyed by input name"
            )
        return {names[0]: sample[None]}
    named = cast(dict[str, np.ndarray], sample)  # no None key past the check above
    if names and set(named) != set(names):
        raise UsageError(f"sample inputs {sorted(named)} do not match the model's inputs {list(names)}")
    return dict(named)


def synthesize(
    signature: Sequence[InputSpec], seed: int = DEFAULT_SEED, batch: int = SYNTH_BATCH
) -> dict[str, np.ndarray]:
    """Seeded random inputs: normal floats, uniform integers in [low, high)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in signature:
        shape = tuple(
            dim if isinstance(dim, int) and dim > 0 else (batch if i == 0 else SYNTH_DIM)
            for i, dim in enumerate(spec.shape)
        )
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "iu":
            arrays[spec.name] = rng.integers(int(spec.low), int(spec.high), size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif dtype.kind in "OUS":
            raise UsageError(
                f"input {spec.name!r} takes strings, which cannot be made up; pass --sample "
                "(a CSV with a header, a .parquet file or a DataFrame)"
            )
        else:
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
    return arrays


def batch_cases(inputs: dict[str, np.ndarray], dynamic_batch: bool) -> list[Case]:
    """The full sample, plus a batch of one (or a batch of three when the
    sample has one row) so a dynamic batch dimension is exercised twice."""
    cases = [Case(name=f"batch_{_batch_of(inputs)}", inputs=inputs)]
    if not dynamic_batch:
        return cases
    batch = _batch_of(inputs)
    if batch > 1:
        other = {k: v[:1] for k, v in inputs.items()}
    else:
        other = {k: np.repeat(v, 3, axis=0) for k, v in inputs.items()}
    cases.append(Case(name=f"batch_{_batch_of(other)}", inputs=other))
    return cases


def _batch_of(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


#: Magnitude of the "large" edge case: far outside typical feature scales,
#: still finite in float16 (max 65504).
EDGE_LARGE = 1.0e4


def edge_cases(base: dict[str, np.ndarray]) -> list[Case]:
    """Zeros, large magnitudes, NaN and +-inf, derived from the base case.

    Only float inputs take large/NaN/inf values; NaN and inf go into one
    element per row (a different column each row), so the rest of the row
    stays ordinary data. Integer and bool inputs keep their values except in
    the zeros case. The source decides whether NaN/inf are applicable: stage
    1 marks a case the original rejects as skipped-by-source.
    """
    floats = [k for k, v in base.items() if v.dtype.kind == "f"]
    zeros = {k: np.zeros_like(v) if v.dtype.kind in "biufc" else v for k, v in base.items()}  # strings stay
    cases = [Case("edge_zeros", zeros, meta={"kind": "edge", "edge": "zeros"})]
    if not floats:
        return cases
    large = dict(base)
    for k in floats:
        v = base[k]
        large[k] = (np.where(v >= 0, 1, -1) * (EDGE_LARGE * (1 + np.abs(v) / (np.abs(v).max() or 1)))).astype(v.dtype)
    cases.append(Case("edge_large", large, meta={"kind": "edge", "edge": "large"}))
    for label, values in (("nan", (np.nan,)), ("inf", (np.inf, -np.inf))):
        changed = dict(base)
        for k in floats:
            changed[k] = _poke(base[k], values)
        cases.append(Case(f"edge_{label}", changed, meta={"kind": "edge", "edge": label}))
    return cases


def _poke(array: np.ndarray, values) -> np.ndarray:
    """One special value per row, walking across the columns."""
    out = array.copy()
    if out.ndim == 0:
        return np.asarray(values[0], dtype=out.dtype)
    flat = out.reshape(out.shape[0], -1) if out.shape[0] else out.reshape(0, 1)
    width = flat.shape[1]
    for row in range(flat.shape[0]):
        flat[row, row % width] = values[row % len(values)]
    return flat.reshape(out.shape)
