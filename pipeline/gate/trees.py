"""Tree ensembles: tell float32 threshold-rounding flips from converter bugs.

onnxruntime compares float32 inputs with float32 thresholds; the source often
compares with thresholds learned in float64 (scikit-learn, LightGBM). A row
whose feature sits within float32 rounding of a split can then take the other
branch, and its prediction "flips" although the converter is right.

For each row that disagrees, every split of the ONNX tree nodes whose feature
value lies within ``ULPS`` float32 steps of its threshold is a suspect. The
row is *explained* when moving one suspect feature (or all of them) by one
float32 step across its threshold makes onnxruntime's row agree with the
original: the disagreement is then nothing but that rounding. Any other
disagreeing row is *unexplained* and counts against ``--max-flip-rate``
(default 0): a corrupted threshold or a swapped branch still fails.

Limit: this needs the tree to read a graph input directly (possibly through
a Cast); with a preprocessing step in front (a scaler in a pipeline), the
split features are computed values and rows cannot be nudged: every flip is
then unexplained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble")
#: How close (in float32 steps) a feature must be to a threshold to be a suspect.
ULPS = 2
#: Bounds on the search, so a badly broken model does not take minutes.
MAX_SUSPECTS_PER_ROW = 32
MAX_ROWS_ANALYSED = 2000


def is_tree_model(model) -> bool:
    return any(n.op_type in TREE_OPS for n in model.graph.node)


def splits(model) -> tuple[str | None, np.ndarray, np.ndarray]:
    """(graph input the trees read, feature ids, float32 thresholds) of every split node."""
    from onnx import helper, numpy_helper

    inputs = {i.name for i in model.graph.input}
    producers = {o: n for n in model.graph.node for o in n.output}
    source, feats, thresholds = None, [], []
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        name = node.input[0]
        while name not in inputs and name in producers and producers[name].op_type in ("Cast", "Identity"):
            name = producers[name].input[0]
        if name not in inputs:
            return None, np.array([], np.int64), np.array([], np.float32)
        source = name
        attrs = {a.name: a for a in node.attribute}
        modes = attrs.get("nodes_modes")
        values = None
        for key in ("nodes_values", "nodes_values_as_tensor", "nodes_splits"):
            if key in attrs:
                value = helper.get_attribute_value(attrs[key])
                values = numpy_helper.to_array(value) if hasattr(value, "dims") else np.asarray(value)
                break
        if values is None or "nodes_featureids" not in attrs:
            continue
        ids = np.asarray(helper.get_attribute_value(attrs["nodes_featureids"]), dtype=np.int64)
        keep = np.ones(len(ids), bool)
        if modes is not None:
            mode_values = helper.get_attribute_value(modes)
            mode_values = numpy_helper.to_array(mode_values) if hasattr(mode_values, "dims") else mode_values
            keep = np.array([m not in (b"LEAF", "LEAF") for m in mode_values], bool)
        feats.append(ids[keep])
        thresholds.append(np.asarray(values, dtype=np.float32).ravel()[keep])
    if not feats:
        return source, np.array([], np.int64), np.array([], np.float32)
    return source, np.concatenate(feats), np.concatenate(thresholds)


def _suspects(row: np.ndarray, feats: np.ndarray, thresholds: np.ndarray) -> list[tuple[int, float]]:
    valid = feats < row.shape[0]
    f, t = feats[valid], thresholds[valid]
    x = row[f].astype(np.float32)
    ulp = np.spacing(np.abs(t)).astype(np.float32)
    near = np.isfinite(x) & (np.abs(x.astype(np.float64) - t.astype(np.float64)) <= ULPS * ulp)
    seen, out = set(), []
    for fid, thr in zip(f[near], t[near]):
        key = (int(fid), float(thr))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out[:MAX_SUSPECTS_PER_ROW]


def _variants(row: np.ndarray, suspects: list[tuple[int, float]]):
    """Rows with one suspect (then all) moved one float32 step across its threshold."""
    for fid, thr in suspects:
        t = np.float32(thr)
        for value in (np.nextafter(t, np.float32(-np.inf)), t, np.nextafter(t, np.float32(np.inf))):
            if value != row[fid]:
                changed = row.copy()
                changed[fid] = value
                yield changed
    if len(suspects) > 1:
        for direction in (-np.inf, np.inf):
            changed = row.copy()
            for fid, thr in suspects:
                t = np.float32(thr)
                changed[fid] = t if row[fid] != t else np.nextafter(t, np.float32(direction))
            yield changed


def analyse(
    session, model, inputs: dict[str, np.ndarray], expected: dict[str, Any], bad_rows: np.ndarray, row_agrees
) -> dict[str, Any]:
    """Explained/unexplained split of the disagreeing rows of one case.

    ``row_agrees(actual_outputs, row_index)`` says whether onnxruntime's
    outputs for a one-row input agree with the original's row ``row_index``.
    """
    source, feats, thresholds = splits(model)
    n_rows = int(len(bad_rows))
    flipped = np.flatnonzero(bad_rows)
    result: dict[str, Any] = {
        "rows": n_rows,
        "flipped": int(len(flipped)),
        "explained": 0,
        "unexplained": int(len(flipped)),
        "explained_rows": [],
        "unexplained_rows": [],
    }
    if not len(flipped):
        return result
    if source is None or len(inputs) != 1 or source not in inputs:
        result["note"] = "the trees read a computed tensor, not a model input: flips cannot be nudged"
        result["unexplained_rows"] = flipped[:50].tolist()
        return result
    X = inputs[source]
    names = [o.name for o in session.get_outputs()]
    explained: list[int] = []
    unexplained: list[int] = []
    for i in flipped[:MAX_ROWS_ANALYSED]:
        row = X[i].copy()
        ok = False
        for variant in _variants(row, _suspects(row, feats, thresholds)):
            actual = dict(zip(names, session.run(names, {source: variant[None, :].astype(X.dtype)})))
            if row_agrees(actual, int(i)):
                ok = True
                break
        (explained if ok else unexplained).append(int(i))
    unexplained += [int(i) for i in flipped[MAX_ROWS_ANALYSED:]]
    result.update(
        explained=len(explained),
        unexplained=len(unexplained),
        explained_rows=explained[:50],
        unexplained_rows=unexplained[:50],
    )
    return result
