"""Golden data in the ONNX test-data layout.

A golden folder holds ``test_data_set_N/`` folders, each with
``input_K.pb`` and ``output_K.pb`` files: serialised ``onnx.TensorProto``s
for the model's K-th input (initializers excluded) and K-th output, in graph
order. It is the layout of the ONNX model zoo and of the backend test data
shipped in the ``onnx`` wheel. Each set becomes one validation case whose
expected outputs are the golden outputs.

Only onnx and numpy are needed here; nothing is run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core.artifact import Case
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.helpers import graph_inputs, one_line

_SET_RE = re.compile(r"^test_data_set_(\d+)$")
_FILE_RE = re.compile(r"^(input|output)_(\d+)\.pb$")
LAYOUT = "test_data_set_N/input_K.pb and output_K.pb"


def set_folders(folder: Path) -> list[Path]:
    """The ``test_data_set_N`` folders under ``folder``, by N.

    ``folder`` may also be one ``test_data_set_N`` folder itself.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"golden folder {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if _SET_RE.match(folder.name) and any(_FILE_RE.match(p.name) for p in folder.iterdir()):
        return [folder]
    sets = [p for p in folder.iterdir() if p.is_dir() and _SET_RE.match(p.name)]
    if not sets:
        raise UsageError(f"golden folder {folder}: no test_data_set_N folders in it (expected {LAYOUT})")

    def number(p: Path) -> int:
        found = _SET_RE.match(p.name)
        assert found is not None  # sets holds only names _SET_RE matched
        return int(found.group(1))

    return sorted(sets, key=number)


def read(folder: Path, model) -> list[Case]:
    """One ``Case`` per test data set, keyed by the model's input/output names."""
    inputs, outputs = graph_inputs(model), list(model.graph.output)
    return [_read_set(path, inputs, outputs) for path in set_folders(Path(folder))]


def _read_set(path: Path, inputs, outputs) -> Case:
    found: dict[str, dict[int, Path]] = {"input": {}, "output": {}}
    for child in sorted(path.iterdir()):
        if child.suffix.lower() != ".pb":
            continue  # READMEs and the like are not golden data
        match = _FILE_RE.match(child.name)
        if not match:
            raise UsageError(f"golden file {child}: unexpected name (expected input_K.pb or output_K.pb)")
        found[match.group(1)][int(match.group(2))] = child
    arrays = {}
    for kind, values in (("input", inputs), ("output", outputs)):
        _check_indices(path, kind, found[kind], values)
        arrays[kind] = {
            vi.name: _read_tensor(found[kind][k], kind, k, vi, [v.name for v in values]) for k, vi in enumerate(values)
        }
    return Case(name=path.name, inputs=arrays["input"], expected=arrays["output"], meta={"golden": str(path)})


def _check_indices(path: Path, kind: str, files: Mapping[int, Path], values) -> None:
    names = ", ".join(v.name for v in values) or "none"
    missing = [k for k in range(len(values)) if k not in files]
    extra = sorted(k for k in files if k >= len(values))
    if missing:
        raise UsageError(
            f"golden set {path}: {kind}_{missing[0]}.pb is missing (the model has {len(values)} {kind}s: {names})"
        )
    if extra:
        raise UsageError(
            f"golden set {path}: {kind}_{extra[0]}.pb does not fit: the model has {len(values)} {kind}s ({names})"
        )


def _read_tensor(path: Path, kind: str, index: int, value_info, names: Sequence[str]) -> np.ndarray:
    import onnx
    from onnx import helper, numpy_helper

    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise UsageError(f"golden file {path}: not a TensorProto ({type(exc).__name__})") from exc
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise UsageError(f"golden file {path}: tensors with external data are not supported")
    if not tensor.data_type:
        raise UsageError(f"golden file {path}: not a TensorProto (no data type)")
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise UsageError(f"golden file {path}: unreadable tensor: {one_line(exc)}") from exc
    # Positional files are the layout's contract; a tensor named after another
    # input/output means the files were swapped.
    if tensor.name and tensor.name != value_info.name and tensor.name in names:
        raise UsageError(
            f"golden file {path}: holds tensor {tensor.name!r} but {kind} {index} of the model is {value_info.name!r}"
        )
    declared = value_info.type
    if not declared.HasField("tensor_type"):
        what = declared.WhichOneof("value") or "untyped"
        raise UsageError(f"golden file {path}: {kind} {value_info.name!r} is a {what}; only tensors are supported")
    elem = declared.tensor_type.elem_type
    if elem:
        want = helper.tensor_dtype_to_np_dtype(elem)
        if want.kind != "O" and array.dtype != want:
            raise UsageError(f"golden file {path}: dtype {array.dtype} but {kind} {value_info.name!r} is {want}")
    if declared.tensor_type.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in declared.tensor_type.shape.dim]
        fits = len(dims) == array.ndim and all(d is None or d == s for d, s in zip(dims, array.shape))
        if not fits:
            shown = [d if d is not None else "?" for d in dims]
            raise UsageError(
                f"golden file {path}: shape {list(array.shape)} does not fit {kind} {value_info.name!r} declared {shown}"
            )
    return array


def write(folder: Path, model, sets: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[Path]:
    """Write ``(inputs, outputs)`` pairs (keyed by name) as test data sets."""
    from onnx import numpy_helper

    folder = Path(folder)
    written = []
    for n, (ins, outs) in enumerate(sets):
        target = folder / f"test_data_set_{n}"
        target.mkdir(parents=True, exist_ok=True)
        for kind, values, arrays in (("input", graph_inputs(model), ins), ("output", model.graph.output, outs)):
            for k, vi in enumerate(values):
                tensor = numpy_helper.from_array(np.asarray(arrays[vi.name]), name=vi.name)
                atomic.write_bytes(target / f"{kind}_{k}.pb", tensor.SerializeToString())
        written.append(target)
    return written
