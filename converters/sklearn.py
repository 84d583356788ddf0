"""scikit-learn -> ONNX with skl2onnx.

Classifiers come out as two plain arrays (label, probabilities): ZipMap is
switched off for every classifier in the model, pipelines included.
"""
from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, OptionSpec, Tolerance, hookimpl

from .common import first_zip_member, ensure_float_features


#: Types skops does not trust by default that are plain scikit-learn state
#: (no code runs when they are rebuilt); anything else needs --trust-source.
SKOPS_EXTRA_SAFE_TYPES = frozenset({"sklearn.tree._tree.Tree"})


def load(path: Path, trusted: bool):
    suffix = path.suffix.lower()
    if suffix == ".skops":
        import skops.io as sio

        if not first_zip_member(path):
            raise ValueError("not a .skops archive")
        untrusted = sio.get_untrusted_types(file=path)
        unknown = [t for t in untrusted if t not in SKOPS_EXTRA_SAFE_TYPES]
        if unknown and not trusted:
            raise _untrusted(path, unknown)
        return sio.load(path, trusted=untrusted)
    import joblib  # .joblib / .pkl: the caller checked trust already

    return joblib.load(path)


def _untrusted(path, types):
    from onnxgate.plugins import UntrustedSourceError

    shown = ", ".join(types[:5]) + (" ..." if len(types) > 5 else "")
    return UntrustedSourceError(
        f"{path}: the .skops file holds types that are not known to be safe ({shown}); "
        "pass --trust-source if you trust it"
    )


def signature(model, options=None):
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        return None
    return [InputSpec(name="X", shape=(None, int(n_features)), dtype="float32")]


def _is_classifier(model) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(model)


def convert(model, example, options):
    from skl2onnx import to_onnx

    X = ensure_float_features(example)
    kwargs = {}
    if options.opset:
        kwargs["target_opset"] = options.opset
    boosters = _register_boosters(model, options, kwargs)
    onx = to_onnx(
        model,
        X[:1],
        options={"zipmap": bool(options.extra.get("zipmap"))} if _has_classifier(model) else None,
        **kwargs,
    )
    if onx.graph.input and onx.graph.input[0].name != "X":
        _rename_input(onx, onx.graph.input[0].name, "X")
    if boosters:
        from .trees_common import dedupe_opsets

        dedupe_opsets(onx)  # skl2onnx lists the default domain once per converter
    return Conversion(onx, exporter="skl2onnx" + (" + onnxmltools" if boosters else ""))


def _register_boosters(model, options, kwargs) -> list:
    """XGBoost/LightGBM steps (e.g. a scaler then an XGBClassifier): register
    onnxmltools' converters with skl2onnx and allow the ai.onnx.ml opset they
    emit. Matched by dotted type path, so those frameworks are imported only
    when such a step is present."""
    from .trees_common import ML_OPSET, boosters_in, register_with_skl2onnx

    boosters = boosters_in(model)
    if boosters:
        from skl2onnx import get_latest_tested_opset_version

        register_with_skl2onnx(boosters)
        kwargs["target_opset"] = {"": options.opset or get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET}
    return boosters


def _has_classifier(model) -> bool:
    steps = getattr(model, "steps", None)
    if steps:
        return _has_classifier(steps[-1][1])
    return _is_classifier(model)


def _rename_input(onx, old: str, new: str) -> None:
    for inp in onx.graph.input:
        if inp.name == old:
            inp.name = new
    for node in onx.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def run(model, inputs):
    X = inputs["X"]
    if _has_classifier(model):
        outputs = [model.predict(X)]
        if hasattr(model, "predict_proba"):
            outputs.append(model.predict_proba(X))
        return outputs
    if hasattr(model, "predict"):
        return [model.predict(X)]
    return [model.transform(X)]


def intermediates(model, inputs, onnx_model):
    """A Pipeline's output after each step, mapped to the ONNX tensor skl2onnx
    wrote for that step (its topology names each operator's outputs)."""
    from onnxgate.plugins import Intermediate

    steps = [(n, s) for n, s in getattr(model, "steps", None) or [] if s not in (None, "passthrough")]
    if not steps:
        return []
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X = ensure_float_features(inputs)
    opset = max((i.version for i in onnx_model.opset_import if i.domain in ("", "ai.onnx")), default=None)
    _, topology = convert_sklearn(
        model, initial_types=[("X", FloatTensorType([None, X.shape[1]]))], target_opset=opset,
        options={"zipmap": False} if _has_classifier(model) else None, intermediate=True,
    )
    by_step = {id(op.raw_operator): op.outputs[0].onnx_name for op in topology.unordered_operator_iterator()}
    tensors = {o for node in onnx_model.graph.node for o in node.output}
    found, Xt = [], X
    for name, step in steps[:-1]:
        Xt = step.transform(Xt)
        tensor = by_step.get(id(step))
        if tensor in tensors:
            found.append(Intermediate(name, type(step).__name__, tensor, Xt))
    name, last = steps[-1]
    outputs = [o.name for o in onnx_model.graph.output]
    if _is_classifier(last) and hasattr(last, "predict_proba") and len(outputs) > 1:
        found.append(Intermediate(name, type(last).__name__, outputs[1], last.predict_proba(Xt)))
    elif hasattr(last, "predict"):
        found.append(Intermediate(name, type(last).__name__, outputs[0], last.predict(Xt)))
    return found

@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="sklearn",
        framework="scikit-learn",
        description="scikit-learn estimators and pipelines via skl2onnx",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".skops",),
        unsafe_suffixes=(".joblib", ".pkl", ".pickle"),
        object_types=("sklearn.base.BaseEstimator",),
        # skl2onnx computes in float32 where sklearn uses float64
        tolerance=Tolerance(rtol=1e-4, atol=1e-4),
        requires=("scikit-learn", "skl2onnx"),
        framework_distribution="scikit-learn",
        intermediates=intermediates,
        options=(OptionSpec("zipmap", bool, False,
                            help="classifiers output probabilities as ZipMap (a list of {class: p}) "
                                 "instead of a matrix"),),
    )
