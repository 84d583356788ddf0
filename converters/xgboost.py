"""XGBoost -> ONNX with onnxmltools.

Sources: fitted ``XGBClassifier``/``XGBRegressor`` (any ``XGBModel``), a raw
``Booster``, or a native model file (``.json``/``.ubj``, loaded with
``Booster.load_model``: no pickle). Classifiers give two plain arrays
(``label``, ``probabilities``); regressors one (``variable``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, Tolerance, hookimpl, installed_distribution, read_head

from . import trees_common as tc
from .common import name_columns

# An XGBoost JSON model is an object whose first key is "learner" (or
# "version" in some writers); UBJSON spells the key as a length-prefixed
# string right after the opening brace.
_JSON_HEAD = re.compile(rb'^\s*\{\s*"(learner|version)"\s*:')


def sniff(path: Path) -> bool:
    head = read_head(path, 256)
    if path.suffix.lower() == ".ubj":
        return head[:1] == b"{" and b"learner" in head[:24]
    return bool(_JSON_HEAD.match(head)) and b'"learner"' in read_head(path, 1 << 16)


def load(path: Path, trusted: bool):
    from onnxgate.plugins import UsageError

    if not sniff(path):
        raise UsageError(
            f"{path}: not an XGBoost model file (expected XGBoost's JSON or UBJSON with a 'learner' object)"
        )
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(path))
    return booster


def _booster(model):
    return tc.fitted_booster(model, lambda m: m.get_booster(), "XGBoost")


def objective(model) -> str:
    config = json.loads(_booster(model).save_config())
    return config["learner"]["objective"]["name"]


def is_classifier(model) -> bool:
    if tc.is_booster(model):
        return objective(model).startswith(("binary:", "multi:"))
    from sklearn.base import is_classifier as sklearn_is_classifier

    return sklearn_is_classifier(model)


def signature(model, options=None):
    return tc.features_signature(_booster(model).num_features(), _columns(model))


def _columns(model) -> tuple[str, ...]:
    """A Booster saved from a DataFrame keeps the column names (None from arrays)."""
    return tc.frame_columns(model) or tuple(str(n) for n in _booster(model).feature_names or ())


def convert(model, example, options):
    from onnxmltools import convert_xgboost

    booster = _booster(model)
    opset, notes = tc.onnxmltools_opset(options.opset)
    with tc.positional_feature_names([booster]):
        onx = convert_xgboost(
            model,
            initial_types=tc.float_initial_types(booster.num_features()),
            target_opset=opset,
        )
    tc.dynamic_output_batch(onx)
    tc.declare_tree_outputs(onx)
    name_columns(onx, tc.INPUT_NAME, _columns(model))
    if objective(model) == "multi:softmax" and _softmax_probabilities(onx):
        notes.append(
            "multi:softmax: onnxmltools outputs raw margins as probabilities; "
            "set the tree ensemble's post_transform to SOFTMAX (what predict_proba returns)"
        )
    return Conversion(onx, exporter="onnxmltools.convert_xgboost", notes=notes)


def _softmax_probabilities(onx) -> bool:
    changed = False
    for node in onx.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        for attr in node.attribute:
            if attr.name == "post_transform" and attr.s == b"NONE":
                attr.s, changed = b"SOFTMAX", True
    return changed


def run(model, inputs):
    X = inputs[tc.INPUT_NAME]
    if not tc.is_booster(model):
        return tc.run_wrapper(model, X, is_classifier(model))
    import xgboost

    data = xgboost.DMatrix(X, feature_names=model.feature_names)  # a DataFrame-trained booster checks them
    if not is_classifier(model):
        return [model.predict(data)]
    if objective(model) == "multi:softmax":  # predict() gives labels: rebuild probabilities
        margin = model.predict(data, output_margin=True)
        proba = _softmax(margin)
    else:
        proba = tc.binary_or_multi(model.predict(data))
    return [tc.labels_from(proba), proba]


def _softmax(z):
    import numpy as np

    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@hookimpl
def onnxgate_converters():
    # both distributions provide the xgboost module; -cpu skips the CUDA NCCL wheel
    dist = installed_distribution("xgboost-cpu", "xgboost")
    yield ConverterSpec(
        name="xgboost",
        framework="XGBoost",
        description="XGBClassifier/XGBRegressor/Booster and .json/.ubj model files via onnxmltools",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".json", ".ubj"),
        sniff=sniff,
        object_types=("xgboost.sklearn.XGBModel", "xgboost.core.Booster"),
        # XGBoost itself computes in float32: differences stay at float32 rounding
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=(dist, "onnxmltools"),
        framework_distribution=dist,
        tree_ensemble=True,
    )
