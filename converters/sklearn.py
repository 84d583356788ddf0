"""scikit-learn -> ONNX with skl2onnx.

Classifiers come out as two plain arrays (label, probabilities): ZipMap is
switched off for every classifier in the model, pipelines included.
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, OptionSpec, Tolerance, hookimpl

from . import sklearn_tabular as tabular
from .common import first_zip_member, name_columns

#: Modules whose plain-data classes are trusted in .skops files: rebuilding
#: an instance of one of them runs no user code. Functions (os.system,
#: numpy.load, any callable) and other modules' types are never trusted here.
SKOPS_TRUSTED_MODULES = ("sklearn", "numpy", "scipy")


def load(path: Path, trusted: bool, options=None):
    suffix = path.suffix.lower()
    if suffix == ".skops":
        import skops.io as sio

        if not first_zip_member(path):
            raise ValueError("not a .skops archive")
        untrusted = sio.get_untrusted_types(file=path)
        chosen = set(_option_list(options, "trust_types"))
        unknown = [t for t in untrusted if t not in chosen and not _plain_data_type(t)]
        if unknown and not trusted:
            raise _untrusted(path, unknown)
        return sio.load(path, trusted=untrusted)
    import joblib  # .joblib / .pkl: the caller checked trust already

    return joblib.load(path)


def _option_list(options, key):
    value = (getattr(options, "extra", None) or {}).get(key) or []
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]


def _plain_data_type(dotted: str) -> bool:
    """A class (not a function) defined in scikit-learn, numpy or scipy."""
    import importlib
    import inspect

    if dotted.split(".")[0] not in SKOPS_TRUSTED_MODULES:
        return False
    module_name, _, name = dotted.rpartition(".")
    try:  # importing these libraries' own modules runs no code from the file
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return inspect.isclass(obj) and obj.__module__.split(".")[0] in SKOPS_TRUSTED_MODULES


def _untrusted(path, types):
    from onnxgate.plugins import UntrustedSourceError

    return UntrustedSourceError(
        f"{path}: the .skops file holds types that are not known to be safe: {', '.join(types)}; "
        "trust them one by one with --trust-type TYPE (repeatable), or all with --trust-source"
    )


def signature(model, options=None):
    named = tabular.signature(model)  # trained on a DataFrame: inputs by column name
    if named is not None:
        return named
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        return None
    return [InputSpec(name="X", shape=(None, int(n_features)), dtype="float32")]


def _is_classifier(model) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(model)


def convert(model, example, options):
    from skl2onnx import convert_sklearn, to_onnx

    columns = tabular.per_column(model)
    X = None if columns else _features(example, for_onnx=True)
    kwargs = {"target_opset": _target_opsets(options)}
    boosters = _register_boosters(model)
    from .trees_common import positional_feature_names

    xgb = [b for b in boosters if "xgboost" in type(b).__module__]
    with _soft_voting_unflattened(model), positional_feature_names(xgb):
        if columns:  # one input per DataFrame column, typed as the column
            types = tabular.initial_types(example)
            onx = convert_sklearn(model, initial_types=types, options=_estimator_options(model, options), **kwargs)
        else:
            onx = to_onnx(model, X[:1], options=_estimator_options(model, options), **kwargs)
    if columns:
        tabular.restore_input_names(onx, list(example))
    elif onx.graph.input and onx.graph.input[0].name != "X":
        _rename_input(onx, onx.graph.input[0].name, "X")
    if not columns:
        name_columns(onx, "X", tabular.feature_names(model))
    if boosters:
        from .trees_common import dedupe_opsets

        dedupe_opsets(onx)  # skl2onnx lists the default domain once per converter
    return Conversion(onx, exporter="skl2onnx" + (" + onnxmltools" if boosters else ""))


def _target_opsets(options):
    """One opset per domain: skl2onnx supports ai.onnx.ml only up to its
    own tested version, lower than onnx's newest (IsolationForest asks for it)."""
    from skl2onnx import get_latest_tested_opset_version

    from .trees_common import ML_OPSET

    return {"": options.opset or get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET}


def _features(example, for_onnx: bool = False):
    """The single input: float32 features, or a column of strings (text)."""
    import numpy as np

    (X,) = example.values()
    X = np.asarray(X)
    if X.dtype.kind in "OUS":
        return X.astype(str).reshape(-1) if not for_onnx else X.astype(str).reshape(-1, 1)[:, 0]
    return X.astype(np.float32)


def _estimators(model):
    """The model and every estimator inside it (pipeline steps, ensembles)."""
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    seen, found = set(), []
    for obj in [model, *params.values()]:
        if hasattr(obj, "fit") and id(obj) not in seen:
            seen.add(id(obj))
            found.append(obj)
    return found


def _estimator_options(model, options):
    """skl2onnx options per estimator, only those its converter declares:
    no ZipMap (plain probability arrays), a StringNormalizer locale that exists here."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    per = {}
    locale = str((options.extra or {}).get("locale") or _available_locale())
    for est in _estimators(model):
        if hasattr(est, "steps"):
            continue  # a Pipeline hands its options to its last step
        try:
            allowed = get_converter(sklearn_operator_name_map[type(est)]).get_allowed_options() or {}
        except (KeyError, ValueError, AttributeError):
            continue
        chosen = {}
        if "zipmap" in allowed:
            chosen["zipmap"] = bool((options.extra or {}).get("zipmap", False))
        if "locale" in allowed:
            chosen["locale"] = locale
        if "raw_scores" in allowed and _scores_only(est):
            chosen["raw_scores"] = True  # decision_function's layout, not a made-up probability
        # even empty: inside a Pipeline skl2onnx adds zipmap=True to a
        # classifier without options, and LinearSVC's converter rejects it
        per[id(est)] = chosen
    return per or None


def _available_locale() -> str:
    """skl2onnx's StringNormalizer defaults to en_US, which onnxruntime
    refuses where that locale is not installed; C.UTF-8 is everywhere."""
    import locale

    current = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "en_US.UTF-8")
        return "en_US.UTF-8"
    except locale.Error:
        return "C.UTF-8"
    finally:
        locale.setlocale(locale.LC_CTYPE, current)


class _soft_voting_unflattened:
    """skl2onnx converts a soft VotingClassifier only with
    ``flatten_transform=False`` (it changes transform(), not predictions)."""

    def __init__(self, model):
        self.changed = [
            e
            for e in _estimators(model)
            if type(e).__name__ == "VotingClassifier" and getattr(e, "flatten_transform", False)
        ]

    def __enter__(self):
        for est in self.changed:
            est.flatten_transform = False

    def __exit__(self, *exc):
        for est in self.changed:
            est.flatten_transform = True


def _register_boosters(model) -> list:
    """XGBoost/LightGBM steps (e.g. a scaler then an XGBClassifier): register
    onnxmltools' converters with skl2onnx. Matched by dotted type path, so
    those frameworks are imported only when such a step is present."""
    from .trees_common import boosters_in, register_with_skl2onnx

    boosters = boosters_in(model)
    if boosters:
        register_with_skl2onnx(boosters)
    return boosters


def _has_classifier(model) -> bool:
    steps = getattr(model, "steps", None)
    if steps:
        return _has_classifier(steps[-1][1])
    return _is_classifier(model)


def _final(model):
    steps = getattr(model, "steps", None)
    return _final(steps[-1][1]) if steps else model


def _rename_input(onx, old: str, new: str) -> None:
    for inp in onx.graph.input:
        if inp.name == old:
            inp.name = new
    for node in onx.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def run(model, inputs):
    """The original's outputs in skl2onnx's order, per kind of final estimator."""
    import numpy as np

    if tabular.feature_names(model) is not None:  # fitted on a DataFrame: given one, same columns
        frame = tabular.to_frame(model, inputs)
        try:
            return _outputs(model, frame)
        except ValueError:  # as below: float64 for Cython paths that refuse float32
            if tabular.per_column(model):
                raise
            return _outputs(model, frame.astype(np.float64))
    (X,) = inputs.values()
    X = _features(inputs) if np.asarray(X).dtype.kind in "OUS" else np.asarray(X)
    try:  # the ONNX model's float32 data, as users feed both
        return _outputs(model, X)
    except ValueError:  # some Cython paths (KMeans fitted in float64) refuse float32
        if X.dtype.kind != "f":
            raise
        return _outputs(model, X.astype(np.float64))


def run_float64(model, inputs):
    """The original on the same features in float64, natively (scikit-learn
    keeps float32 data in float32 where it can): the gate's measure of the
    float32 run's own rounding noise. A model fitted on a DataFrame gets its
    DataFrame with the float columns in float64; text alone: not applicable."""
    import numpy as np

    if tabular.feature_names(model) is not None:
        frame = tabular.to_frame(model, inputs)
        floats = {name: np.float64 for name in frame.columns if frame[name].dtype.kind == "f"}
        return _outputs(model, frame.astype(floats)) if floats else None
    if len(inputs) != 1:
        return None
    (X,) = inputs.values()
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        return None
    return _outputs(model, X.astype(np.float64))


def _outputs(model, X):
    last = _final(model)
    if _has_classifier(model):
        outputs = [model.predict(X)]
        if hasattr(model, "predict_proba") and _has_proba(last):
            outputs.append(model.predict_proba(X))
        elif type(last).__name__ == "VotingClassifier":  # hard: each class's share of the votes
            outputs.append(_vote_shares(model, last, X))
        elif hasattr(model, "decision_function"):  # SVC, LinearSVC, OneVsRest...: scores
            outputs.append(decision_scores(last, model.decision_function(X)))
        return outputs
    from sklearn.base import is_clusterer, is_outlier_detector

    if is_clusterer(last):  # label, distances to the centres
        return [model.predict(X), model.transform(X)]
    if is_outlier_detector(last):  # label, decision_function
        return [model.predict(X), model.decision_function(X)]
    if hasattr(model, "predict"):
        return [model.predict(X)]
    return [model.transform(X)]


def _has_proba(est) -> bool:
    try:
        return hasattr(est, "predict_proba")
    except Exception:  # SVC(probability=False), hard voting: the property raises
        return False


def _vote_shares(model, voting, X):
    import numpy as np

    Xt = model[:-1].transform(X) if hasattr(model, "steps") else X
    votes = voting.transform(Xt)  # hard voting: each member's class index
    weights = np.asarray(voting.weights if voting.weights is not None else np.ones(votes.shape[1]), dtype=np.float64)
    shares = np.zeros((len(votes), len(voting.classes_)))
    for member in range(votes.shape[1]):
        shares[np.arange(len(votes)), votes[:, member]] += weights[member]
    return shares / weights.sum()


def _scores_only(est) -> bool:
    """A classifier that can only score (no predict_proba): skl2onnx's
    ``raw_scores`` makes it write decision_function instead of a sign-flipped
    (SVC) or normalised (OneVsRest) stand-in for probabilities. Linear SVC
    and ridge write raw scores already; a OneVsRest over linear SVCs must not
    ask (skl2onnx then reads two columns where there is one)."""
    if type(est).__name__ in _ONE_SCORE_COLUMN or _ovr_over_linear_svc(est):
        return False
    return _is_classifier(est) and not _has_proba(est) and hasattr(est, "decision_function")


#: Binary classifiers whose scores skl2onnx writes as the one column sklearn returns.
_ONE_SCORE_COLUMN = ("LinearSVC", "RidgeClassifier", "RidgeClassifierCV")


def _ovr_over_linear_svc(est) -> bool:
    if type(est).__name__ != "OneVsRestClassifier":
        return False
    return any(type(e).__name__ == "LinearSVC" for e in getattr(est, "estimators_", None) or [])


def decision_scores(final, scores):
    """decision_function laid out as skl2onnx writes it (converters with
    ``raw_scores``): multiclass as is; a binary score d as ``[-d, d]``, one
    column for linear SVC/ridge, and ``[1 - d, d]`` for OneVsOne (its votes
    plus confidences, of which sklearn returns the second)."""
    import numpy as np

    scores = np.asarray(scores)
    if _ovr_over_linear_svc(final):  # no raw_scores there: skl2onnx divides each row by its sum
        both = scores if scores.ndim == 2 else np.hstack([1 - scores.reshape(-1, 1), scores.reshape(-1, 1)])
        return both / both.sum(axis=1, keepdims=True)  # (by its L1 norm below opset 22: not matched)
    if scores.ndim == 2:
        return scores
    column = scores.reshape(-1, 1)
    name = type(final).__name__
    if name in _ONE_SCORE_COLUMN:
        return column
    if name == "OneVsOneClassifier":
        return np.hstack([1 - column, column])
    return np.hstack([-column, column])


def intermediates(model, inputs, onnx_model):
    """A Pipeline's output after each step, mapped to the ONNX tensor skl2onnx
    wrote for that step (its topology names each operator's outputs)."""
    from onnxgate.plugins import Intermediate

    steps = [(n, s) for n, s in getattr(model, "steps", None) or [] if s not in (None, "passthrough")]
    if not steps or tabular.per_column(model):  # per-column inputs: steps are not traced
        return []
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X = _features(inputs)
    opset = max((i.version for i in onnx_model.opset_import if i.domain in ("", "ai.onnx")), default=None)
    _, topology = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, X.shape[1]]))],
        target_opset=opset,
        options={"zipmap": False} if _has_classifier(model) else None,
        intermediate=True,
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
        run_float64=run_float64,
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
        options=(
            OptionSpec(
                "zipmap",
                bool,
                False,
                help="classifiers output probabilities as ZipMap (a list of {class: p}) instead of a matrix",
            ),
            OptionSpec(
                "trust_types",
                str,
                help="comma-separated types a .skops file may load beyond the plain-data ones (the CLI's --trust-type)",
            ),
            OptionSpec("locale", str, help="StringNormalizer locale (default: en_US.UTF-8 if installed, else C.UTF-8)"),
        ),
    )
