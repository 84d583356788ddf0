"""Helpers shared by the gradient-boosting converters (XGBoost, LightGBM,
CatBoost). Nothing here imports a framework at module level."""

from __future__ import annotations

import numpy as np

from onnxgate.plugins import InputSpec

#: ONNX input name used by every tree converter (and by the sklearn one), so
#: a sample .npz is keyed ``X`` whatever the framework.
INPUT_NAME = "X"


def features_signature(n_features: int | None, columns: tuple[str, ...] = ()) -> list[InputSpec] | None:
    if not n_features:
        return None
    return [InputSpec(name=INPUT_NAME, shape=(None, int(n_features)), dtype="float32", columns=columns)]


def frame_columns(model) -> tuple[str, ...]:
    """Column names of a wrapper fitted on a DataFrame (a sample's header is ordered by them)."""
    names = getattr(model, "feature_names_in_", None)
    return tuple(str(n) for n in names) if names is not None else ()


def as_frame(model, X):
    """X as the DataFrame a wrapper was fitted on (no feature-name warnings), else X."""
    columns = frame_columns(model)
    if not columns:
        return X
    import pandas as pd

    return pd.DataFrame(np.asarray(X), columns=list(columns))


def onnxmltools_opset(requested: int | None) -> tuple[int, list[str]]:
    """The default-domain opset to ask onnxmltools for, and a note when the
    request had to be lowered: onnxmltools refuses anything above its cap
    (15 in 1.16) with a RuntimeError instead of converting."""
    from onnxmltools.convert.common.onnx_ex import get_maximum_opset_supported

    cap = get_maximum_opset_supported()
    if requested is None or requested <= cap:
        return (requested or cap), []
    return cap, [f"opset {requested} requested; onnxmltools supports at most {cap}, converted with opset {cap}"]


def float_initial_types(n_features: int):
    """onnxmltools' input declaration: float32 [N, n_features], N dynamic."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    return [(INPUT_NAME, FloatTensorType([None, int(n_features)]))]


def dynamic_output_batch(onx) -> None:
    """Declare a symbolic first dimension on outputs that the exporter froze to
    1 or left at rank 1 for a 2-D result (LightGBM's label is declared [1],
    CatBoost's regression output [N] while onnxruntime returns [N, 1])."""
    for out in onx.graph.output:
        if not out.type.HasField("tensor_type"):
            continue
        dims = out.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"


def declare_tree_outputs(onx) -> None:
    """Declare the element types of TreeEnsemble outputs that feed other nodes.

    The ai.onnx.ml-1 tree ensemble schemas have no type inference, so ONNX's
    strict shape inference rejects the Identity/Cast nodes onnxmltools puts
    after them ("Input 0 expected to have type but instead is null").
    """
    from onnx import TensorProto, helper

    graph = onx.graph
    known = {v.name for v in graph.value_info} | {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type == "TreeEnsembleRegressor":
            types = [TensorProto.FLOAT]
        elif node.op_type == "TreeEnsembleClassifier":
            attrs = {a.name for a in node.attribute}
            label = TensorProto.STRING if "classlabels_strings" in attrs else TensorProto.INT64
            types = [label, TensorProto.FLOAT]
        else:
            continue
        for name, elem in zip(node.output, types):
            if name and name not in known:
                shape = ["N"] if elem != TensorProto.FLOAT else ["N", None]
                graph.value_info.append(helper.make_tensor_value_info(name, elem, shape))


def drop_zipmap(onx) -> bool:
    """Replace a ZipMap's seq(map) graph output by the float tensor it wraps,
    so the model itself returns a plain probability array. True if changed."""
    from onnx import TensorProto, helper

    graph = onx.graph
    zipmaps = [n for n in graph.node if n.op_type == "ZipMap"]
    if not zipmaps:
        return False
    for node in zipmaps:
        tensor, mapped = node.input[0], node.output[0]
        graph.node.remove(node)
        # Renaming the producer's output keeps the public output name.
        for other in graph.node:
            other.output[:] = [mapped if o == tensor else o for o in other.output]
            other.input[:] = [mapped if i == tensor else i for i in other.input]
        for i, out in enumerate(graph.output):
            if out.name == mapped:
                graph.output.remove(out)
                graph.output.insert(i, helper.make_tensor_value_info(mapped, TensorProto.FLOAT, ["N", None]))
    return True


def rename_input(onx, new: str = INPUT_NAME) -> None:
    """Give the single graph input the shared name."""
    old = onx.graph.input[0].name
    if old == new:
        return
    onx.graph.input[0].name = new
    for node in onx.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def dedupe_opsets(onx) -> None:
    """skl2onnx + onnxmltools can list a domain twice; keep the highest."""
    best: dict[str, int] = {}
    for imp in onx.opset_import:
        best[imp.domain] = max(best.get(imp.domain, 0), imp.version)
    if len(best) == len(onx.opset_import):
        return
    del onx.opset_import[:]
    for domain, version in best.items():
        imp = onx.opset_import.add()
        imp.domain, imp.version = domain, version


def binary_or_multi(proba: np.ndarray) -> np.ndarray:
    """(n,) positive-class probabilities -> (n, 2); (n, k) unchanged."""
    proba = np.asarray(proba)
    if proba.ndim == 1:
        return np.stack([1.0 - proba, proba], axis=1)
    return proba


def labels_from(proba: np.ndarray) -> np.ndarray:
    """Class indices, as the ONNX tree classifiers label a raw booster's rows."""
    return np.argmax(proba, axis=1).astype(np.int64)


# scikit-learn pipelines holding boosters -----------------------------------
#: Dotted base classes of boosters that skl2onnx converts once onnxmltools'
#: converters are registered with it.
SKLEARN_BOOSTERS = {
    "xgboost.sklearn.XGBModel": "xgboost",
    "lightgbm.sklearn.LGBMModel": "lightgbm",
}
#: skl2onnx needs this ai.onnx.ml opset for onnxmltools' tree converters.
ML_OPSET = 3


def boosters_in(model) -> list:
    """XGBoost/LightGBM estimators anywhere in an sklearn model (pipeline
    steps, unions, column transformers, ensembles), found by dotted type
    path so that neither framework is imported when none is present."""
    from onnxgate.plugins import type_paths

    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    found: list[object] = []
    for obj in [model, *params.values()]:
        paths = type_paths(obj)
        if any(base in paths for base in SKLEARN_BOOSTERS) and all(obj is not f for f in found):
            found.append(obj)
    return found


def register_with_skl2onnx(boosters) -> None:
    """Register onnxmltools' converter and skl2onnx's shape calculator for
    each booster type (skl2onnx's documented extension point)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.base import is_classifier

    for cls in {type(b) for b in boosters}:
        if any(p.startswith("xgboost.") for p in (f"{c.__module__}." for c in cls.__mro__)):
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as converter

            alias = f"XGBoost{cls.__name__}"
        else:
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as converter

            alias = f"LightGbm{cls.__name__}"
        if is_classifier(cls()):
            update_registered_converter(
                cls,
                alias,
                calculate_linear_classifier_output_shapes,
                converter,
                options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
            )
        else:
            options = {"split": None} if alias.startswith("LightGbm") else None
            update_registered_converter(
                cls, alias, calculate_linear_regressor_output_shapes, converter, options=options
            )


class positional_feature_names:
    """onnxmltools reads XGBoost split features as ``f<index>``; a booster
    trained on a DataFrame names them after its columns. The ONNX input is
    positional anyway (column k is feature k), so the names are removed
    while converting and restored after."""

    def __init__(self, models):
        self.boosters = []
        for model in models:
            booster = model if is_booster(model) else getattr(model, "get_booster", lambda: None)()
            if booster is not None and getattr(booster, "feature_names", None):
                self.boosters.append((booster, booster.feature_names, booster.feature_types))

    def __enter__(self):
        for booster, _, _ in self.boosters:
            booster.feature_names = None

    def __exit__(self, *exc):
        for booster, names, types in self.boosters:
            booster.feature_names = names
            booster.feature_types = types


def is_booster(model) -> bool:
    """A framework's native Booster, as opposed to its sklearn-style wrapper."""
    return type(model).__name__ == "Booster"


def fitted_booster(model, get_booster, framework: str):
    """The native Booster behind ``model``; an unfitted wrapper is bad input."""
    from onnxgate.plugins import UsageError

    if is_booster(model):
        return model
    try:
        return get_booster(model)
    except Exception as exc:  # sklearn's NotFittedError and the frameworks' own
        raise UsageError(f"the {framework} model is not fitted ({type(exc).__name__})") from None


def run_wrapper(model, X, classifier: bool) -> list:
    """Outputs of an sklearn-style wrapper, in the ONNX model's order."""
    X = as_frame(model, X)
    if classifier:
        return [model.predict(X), model.predict_proba(X)]
    return [model.predict(X)]
