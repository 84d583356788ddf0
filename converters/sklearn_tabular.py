"""scikit-learn models trained on DataFrames: inputs by column name.

A model with ``feature_names_in_`` was fitted on a DataFrame. When it picks
columns by name (a ``ColumnTransformer``) or encodes strings, skl2onnx wants
one ONNX input per column, typed as the column (float, int64, string tensors,
shape ``[None, 1]``); otherwise it keeps the single float input ``X``, whose
columns are named (``InputSpec.columns``) so a sample's header orders them.
The original model is run on a DataFrame with the training columns.
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxgate.plugins import InputSpec

#: Encoders whose fitted ``categories_`` say whether a column held strings.
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


def feature_names(model) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def per_column(model) -> bool:
    """One ONNX input per column: the model selects columns by name or encodes strings."""
    if feature_names(model) is None:
        return False
    return any(
        type(est).__name__ == "ColumnTransformer" or _string_categories(est) for est in _fitted_estimators(model)
    )


def signature(model) -> list[InputSpec] | None:
    names = feature_names(model)
    if names is None:
        return None
    if not per_column(model):
        return [InputSpec(name="X", shape=(None, len(names)), dtype="float32", columns=tuple(names))]
    encoded = _encoded_columns(model, names)
    return [InputSpec(name=n, shape=(None, 1), dtype=_column_dtype(encoded.get(n))) for n in names]


def _column_dtype(category_kind: str | None) -> str:
    """Strings an encoder saw: string tensors; integer categories: int64;
    everything else is a number the numeric steps take as float (skl2onnx's
    imputers and scalers refuse an int64 input)."""
    if category_kind is None:
        return "float32"
    return "str" if category_kind in "OUS" else "int64" if category_kind in "iub" else "float32"


def initial_types(example: Mapping[str, object]) -> list:
    """skl2onnx input types from the sample's columns: float, int64 or string tensors."""
    import numpy as np
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = []
    for name, value in example.items():
        kind = np.asarray(value).dtype.kind
        tensor = StringTensorType if kind in "OUS" else Int64TensorType if kind in "iub" else FloatTensorType
        types.append((name, tensor([None, 1])))
    return types


def restore_input_names(onx, names) -> None:
    """skl2onnx makes column names identifiers (``income ($)`` -> ``income____``);
    the inputs take the columns' own names back, which callers send."""
    taken = {o for node in onx.graph.node for o in node.output} | {i.name for i in onx.graph.initializer}
    for graph_input, name in zip(list(onx.graph.input), names):
        old = graph_input.name
        if old != name and name not in taken:
            graph_input.name = name
            for node in onx.graph.node:
                node.input[:] = [name if i == old else i for i in node.input]


def to_frame(model, inputs: Mapping[str, object]):
    """The original's input: a DataFrame with the training columns, in training order."""
    import numpy as np
    import pandas as pd

    names = feature_names(model) or []
    if per_column(model):
        columns = {}
        for name in names:
            values = np.asarray(inputs[name]).reshape(-1)
            columns[name] = values.astype(object) if values.dtype.kind in "OUS" else values
        return pd.DataFrame(columns)
    (X,) = inputs.values()
    return pd.DataFrame(np.asarray(X), columns=names)


def _fitted_estimators(model):
    """The model and every fitted estimator inside (pipeline steps, a
    ColumnTransformer's fitted transformers, ensembles' members)."""
    found, todo, seen = [], [model], set()
    while todo:
        est = todo.pop()
        if id(est) in seen or not hasattr(est, "fit"):
            continue
        seen.add(id(est))
        found.append(est)
        todo += [step for _, step in getattr(est, "steps", None) or []]
        todo += [trans for _, trans, _ in getattr(est, "transformers_", None) or []]
        members = getattr(est, "estimators_", None)  # a list; gradient boosting's is an array of trees
        todo += members if isinstance(members, list) else []
    return found


def _string_categories(est) -> bool:
    return type(est).__name__ in _ENCODERS and any(
        getattr(c, "dtype", None) is not None and c.dtype.kind in "OUS" for c in getattr(est, "categories_", ())
    )


def _encoded_columns(model, names: list[str]) -> dict[str, str]:
    """Columns an encoder saw (ColumnTransformer branches, or the whole model),
    each with the dtype kind of its categories ("O"/"U": strings, "i": integers)."""
    kinds: dict[str, str] = {}
    for est in _fitted_estimators(model):
        branches = getattr(est, "transformers_", None)
        if branches is None and est is model:
            branches = [("model", model, names)]
        for _, trans, columns in branches or []:
            if not hasattr(trans, "fit"):
                continue  # "drop", "passthrough"
            selected = _column_names(columns, names)
            for inner in _fitted_estimators(trans):
                categories = getattr(inner, "categories_", None) if type(inner).__name__ in _ENCODERS else None
                if categories is not None and len(categories) == len(selected):
                    kinds.update({c: cats.dtype.kind for c, cats in zip(selected, categories)})
    return kinds


def _column_names(columns, names: list[str]) -> list[str]:
    import numpy as np

    if isinstance(columns, (str, int)):
        columns = [columns]
    selected = list(np.asarray(columns).tolist()) if not isinstance(columns, slice) else names[columns]
    if selected and all(isinstance(c, bool) for c in selected):  # a boolean mask
        return [n for n, keep in zip(names, selected) if keep]
    return [names[c] if isinstance(c, int) else str(c) for c in selected]
