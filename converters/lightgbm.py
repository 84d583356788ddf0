"""LightGBM -> ONNX with onnxmltools.

Sources: fitted ``LGBMClassifier``/``LGBMRegressor`` (any ``LGBMModel``), a
raw ``Booster``, or LightGBM's text model file (``.txt``, read with
``Booster(model_file=...)``: no pickle). Classifiers give two plain arrays
(``label``, ``probabilities``; ZipMap off); regressors one (``variable``).
"""

from __future__ import annotations

import re
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, Tolerance, hookimpl, read_head

from . import trees_common as tc
from .common import name_columns

_MAGIC = b"tree\nversion="
_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.M)
#: Objectives (and aliases) whose Booster.predict returns probabilities.
_CLASSIFICATION = ("binary", "multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr")


def sniff(path: Path) -> bool:
    return read_head(path, len(_MAGIC)) == _MAGIC


def check_model_text(data: bytes) -> str:
    """Why a LightGBM text model is incomplete, or "" when it is whole.

    LightGBM's C++ parser aborts or segfaults the whole process on a
    truncated file instead of raising, so onnxgate checks the structure
    first: the header's ``tree_sizes`` give each tree's byte length, so the
    trees must end exactly at ``end of trees``, and a parameters block that
    was started must be closed.
    """
    if not data.startswith(_MAGIC):
        return "it does not start with LightGBM's 'tree\\nversion=' header"
    sizes = _TREE_SIZES.search(data)
    first = data.find(b"\nTree=0\n")
    if sizes is None or first < 0:
        return "the header or the first tree is missing (truncated file?)"
    try:
        end = first + 1 + sum(int(s) for s in sizes.group(1).split())
    except ValueError:
        return "the tree_sizes header is malformed"
    if not data[end:].startswith(b"end of trees"):
        return "the trees do not add up to the sizes its header declares (truncated or edited file)"
    tail = data[end:]
    if b"\nparameters:" in tail and b"\nend of parameters" not in tail:
        return "its parameters block is cut off (truncated file)"
    return ""


def load(path: Path, trusted: bool):
    from onnxgate.plugins import UsageError

    problem = check_model_text(path.read_bytes())
    if problem:
        raise UsageError(f"{path}: not a complete LightGBM text model: {problem}")
    import lightgbm

    return lightgbm.Booster(model_file=str(path))


def _booster(model):
    return tc.fitted_booster(model, lambda m: m.booster_, "LightGBM")


def _objective(booster) -> str:
    """Objective name from the parameters, else from the model's header line
    (one iteration's text is enough, and cheap)."""
    name = booster.params.get("objective")
    if not name:
        header = re.search(r"^objective=(\S+)", booster.model_to_string(num_iteration=1), re.M)
        name = header.group(1) if header else "regression"
    return str(name)


def is_classifier(model) -> bool:
    if tc.is_booster(model):
        return _objective(model).split()[0] in _CLASSIFICATION
    from sklearn.base import is_classifier as sklearn_is_classifier

    return sklearn_is_classifier(model)


def signature(model, options=None):
    return tc.features_signature(_booster(model).num_feature(), _columns(model))


def _columns(model) -> tuple[str, ...]:
    """Feature names from a DataFrame; a Booster trained on arrays calls its
    features Column_0, Column_1...: no names to match."""
    names = tuple(str(n) for n in _booster(model).feature_name())
    named = names and not all(re.fullmatch(r"Column_\d+", n) for n in names)
    return tc.frame_columns(model) or (names if named else ())


def convert(model, example, options):
    from onnxmltools import convert_lightgbm

    opset, notes = tc.onnxmltools_opset(options.opset)
    onx = convert_lightgbm(
        model,
        initial_types=tc.float_initial_types(_booster(model).num_feature()),
        target_opset=opset,
        zipmap=False,
    )
    tc.dynamic_output_batch(onx)
    tc.declare_tree_outputs(onx)
    name_columns(onx, tc.INPUT_NAME, _columns(model))
    return Conversion(onx, exporter="onnxmltools.convert_lightgbm", notes=notes)


def run(model, inputs):
    X = inputs[tc.INPUT_NAME]
    if not tc.is_booster(model):
        return tc.run_wrapper(model, X, is_classifier(model))
    raw = model.predict(X)
    if not is_classifier(model):
        return [raw]
    proba = tc.binary_or_multi(raw)
    return [tc.labels_from(proba), proba]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="lightgbm",
        framework="LightGBM",
        description="LGBMClassifier/LGBMRegressor/Booster and text model files (.txt) via onnxmltools",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".txt",),
        sniff=sniff,
        object_types=("lightgbm.sklearn.LGBMModel", "lightgbm.basic.Booster"),
        # LightGBM sums leaves in float64, the ONNX tree ensemble in float32
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("lightgbm", "onnxmltools"),
        framework_distribution="lightgbm",
        tree_ensemble=True,
    )
