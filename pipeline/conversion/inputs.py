"""Validation inputs: loaded from a sample file or synthesised from a signature."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from onnxgate.pipeline.core.artifact import DEFAULT_SEED, Case
from onnxgate.plugins.spec import InputSpec
from onnxgate.plugins.errors import UsageError

#: Batch size used when synthesising inputs with a dynamic batch dimension.
SYNTH_BATCH = 4
#: Size given to other dynamic dimensions when synthesising.
SYNTH_DIM = 8


def load_sample(path: Path) -> Dict[Optional[str], np.ndarray]:
    """``.npz`` keyed by input name; ``.npy``/``.csv`` give one unnamed input."""
    if not path.is_file():
        raise UsageError(f"sample {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            if not arrays:
                raise UsageError(f"sample {path}: the .npz holds no arrays")
            return arrays
        if suffix == ".npy":
            return {None: np.load(path, allow_pickle=False)}
        if suffix == ".csv":
            return {None: _load_csv(path)}
    except UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"sample {path}: unreadable: {exc}") from exc
    raise UsageError(f"sample {path}: unsupported format {suffix!r} (use .npz, .npy or .csv)")


def _load_csv(path: Path) -> np.ndarray:
    """Numeric CSV; a first line that is not numeric is taken as a header."""
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    try:
        [float(v) for v in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1
    data = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2)
    if data.size == 0:
        raise UsageError(f"sample {path}: no rows")
    return data


def bind_sample(sample: Dict[Optional[str], np.ndarray], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Key an unnamed sample by the model's single input; check names."""
    if None in sample:
        if len(names) != 1:
            raise UsageError(
                f"sample has one unnamed array but the model takes {len(names)} inputs "
                f"({', '.join(names)}); use an .npz keyed by input name"
            )
        return {names[0]: sample[None]}
    if names and set(sample) != set(names):
        raise UsageError(
            f"sample inputs {sorted(sample)} do not match the model's inputs {list(names)}"
        )
    return dict(sample)


def synthesize(signature: Sequence[InputSpec], seed: int = DEFAULT_SEED, batch: int = SYNTH_BATCH) -> Dict[str, np.ndarray]:
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
        else:
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
    return arrays


def batch_cases(inputs: Dict[str, np.ndarray], dynamic_batch: bool) -> List[Case]:
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


def _batch_of(inputs: Dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


#: Magnitude of the "large" edge case: far outside typical feature scales,
#: still finite in float16 (max 65504).
EDGE_LARGE = 1.0e4


def edge_cases(base: Dict[str, np.ndarray]) -> List[Case]:
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
