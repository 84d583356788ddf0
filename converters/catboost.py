"""CatBoost -> ONNX with CatBoost's own exporter (``save_model(format="onnx")``).

Sources: fitted ``CatBoostClassifier``/``CatBoostRegressor`` (any
``CatBoost``) and native ``.cbm`` files (CatBoost's binary format, no pickle).

CatBoost writes classifier probabilities through a ZipMap, i.e. as a sequence
of maps. onnxgate removes that ZipMap from the graph so the ONNX model itself
returns a plain (N, classes) float array, like every other classifier here:
whatever serves the model downstream then gets arrays too, not only the gate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, Tolerance, hookimpl, read_head

from . import trees_common as tc

_MAGIC = b"CBM1"
#: Losses whose model predicts classes and probabilities.
_CLASSIFICATION = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")


def sniff(path: Path) -> bool:
    return read_head(path, len(_MAGIC)) == _MAGIC


def load(path: Path, trusted: bool):
    from onnxgate.plugins import UsageError

    if not sniff(path):
        raise UsageError(f"{path}: not a CatBoost binary model (.cbm files start with {_MAGIC.decode()})")
    import catboost

    probe = catboost.CatBoost()
    probe.load_model(str(path), format="cbm")
    # Reload as the matching wrapper so predict/predict_proba mean what they do
    # on an in-memory model.
    cls = catboost.CatBoostClassifier if _loss(probe) in _CLASSIFICATION else catboost.CatBoostRegressor
    model = cls()
    model.load_model(str(path), format="cbm")
    return model


def _loss(model) -> str:
    loss = model.get_all_params().get("loss_function", "") if model.is_fitted() else ""
    return str(loss).split(":")[0]


def is_classifier(model) -> bool:
    return type(model).__name__ == "CatBoostClassifier" or _loss(model) in _CLASSIFICATION


def _check_fitted(model) -> None:
    if not model.is_fitted():
        from onnxgate.plugins import UsageError

        raise UsageError("the CatBoost model is not fitted")


def signature(model, options=None):
    _check_fitted(model)
    return tc.features_signature(len(model.feature_names_))


def convert(model, example, options):
    import onnx

    from onnxgate.plugins import ConversionError

    _check_fitted(model)
    cat = model.get_cat_feature_indices()
    if cat:
        raise ConversionError(
            f"CatBoost's ONNX export does not support categorical features (this model has {len(cat)})"
        )
    notes = []
    if options.opset:
        notes.append(f"opset {options.opset} requested; CatBoost's exporter picks the opset itself")
    with tempfile.TemporaryDirectory(prefix="onnxgate-catboost-") as tmp:
        out = Path(tmp) / "model.onnx"
        model.save_model(str(out), format="onnx", export_parameters={"onnx_graph_name": "catboost"})
        onx = onnx.load(str(out))
    tc.rename_input(onx)
    if tc.drop_zipmap(onx):
        notes.append("removed the exporter's ZipMap: probabilities are a plain (N, classes) tensor")
    _declare_regression_shape(onx)
    return Conversion(onx, exporter="catboost.save_model(format='onnx')", notes=notes)


def _declare_regression_shape(onx) -> None:
    """CatBoost declares its regression output as [N] but the tree ensemble
    returns [N, 1]: declare what onnxruntime really returns."""
    for out in onx.graph.output:
        if not out.type.HasField("tensor_type"):
            continue
        producer = next((n for n in onx.graph.node if out.name in n.output), None)
        dims = out.type.tensor_type.shape.dim
        if producer is not None and producer.op_type == "TreeEnsembleRegressor" and len(dims) == 1:
            dims.add().dim_value = 1


def run(model, inputs):
    X = inputs[tc.INPUT_NAME]
    if not is_classifier(model):
        return [model.predict(X)]
    # The base CatBoost class (catboost.train) has no predict_proba.
    proba = model.predict(X, prediction_type="Probability")
    return [model.predict(X, prediction_type="Class").reshape(-1), proba]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="catboost",
        framework="CatBoost",
        description="CatBoostClassifier/CatBoostRegressor and .cbm files via CatBoost's ONNX export",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".cbm",),
        sniff=sniff,
        object_types=("catboost.core.CatBoost",),
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("catboost",),
        framework_distribution="catboost",
        tree_ensemble=True,
    )
