"""Tree ensembles: float32 threshold-rounding flips pass, a flipped split fails."""

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxgate.pipeline import api
from onnxgate.pipeline.gate import trees
from onnxgate.pipeline.gate.config import GateConfig


def _boundary_rows(model, X32, limit=12):
    """Rows moved onto the float32 rounding of real split thresholds.

    scikit-learn compares float32(x) with a float64 threshold t. A converter
    that stores float32(t) (as most do; skl2onnx alone nudges its thresholds
    to compensate) sends x = float32(t) left where float32(t) > t, while
    scikit-learn sends it right (x > t).
    """
    tree = model.tree_
    nodes = [
        n
        for n in range(tree.node_count)
        if tree.children_left[n] != -1 and float(np.float32(tree.threshold[n])) > tree.threshold[n]
    ]
    assert nodes, "no threshold rounds up in float32"
    rows = []
    for row in X32:
        for n in nodes:
            moved = row.copy()
            moved[tree.feature[n]] = np.float32(tree.threshold[n])
            if model.decision_path(moved[None, :]).toarray()[0, n]:  # the row still reaches that split
                rows.append(moved)
                break
        if len(rows) == limit:
            break
    return np.array(rows, dtype=np.float32)


def _plain_float32_thresholds(onx, model):
    """The model as a converter without skl2onnx's compensation writes it:
    every threshold is float32(t)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(onx)
    node = next(n for n in fixed.graph.node if n.op_type in trees.TREE_OPS)
    attrs = {a.name: a for a in node.attribute}
    ids = list(attrs["nodes_nodeids"].ints)
    modes = list(attrs["nodes_modes"].strings)
    values = [float(np.float32(model.tree_.threshold[i])) if m != b"LEAF" else 0.0 for i, m in zip(ids, modes)]
    attrs["nodes_values"].CopyFrom(helper.make_attribute("nodes_values", values))
    return fixed


def _convert_unadjusted(model, sample, **kw):
    onx = api.convert(model, latency=False, gate=GateConfig(sweep=False, optimizer_check=False)).model
    return api.validate(model, _plain_float32_thresholds(onx, model), sample=sample, latency=False, **kw)


@pytest.fixture(scope="module")
def diabetes_tree():
    from sklearn.datasets import load_diabetes
    from sklearn.tree import DecisionTreeRegressor

    X, y = load_diabetes(return_X_y=True)
    return DecisionTreeRegressor(max_depth=5, random_state=0).fit(X, y), X.astype(np.float32)


def _flips(report):
    return report.tree_flips


def test_rows_at_rounding_boundaries_flip_and_are_explained(diabetes_tree, tmp_path):
    model, X32 = diabetes_tree
    rows = _boundary_rows(model, X32)
    np.save(tmp_path / "x.npy", rows)
    assert api.convert(model, sample=tmp_path / "x.npy", latency=False).report.tree_flips["flipped"] == 0
    result = _convert_unadjusted(model, tmp_path / "x.npy")
    flips = _flips(result.report)
    assert flips["flipped"] > 0, "the boundary rows should take the other branch in onnxruntime"
    assert flips["explained"] == flips["flipped"] and flips["unexplained"] == 0
    assert result.passed, result.failures
    base = result.report.cases[0]
    out = base.outputs[0]
    assert out.tolerated and "explained by float32 threshold rounding" in out.tolerated
    assert out.failed_reason  # the plain elementwise comparison did fail
    assert out.attribution is None
    assert base.tree_flips["explained_rows"]


def test_classifier_label_flips_are_explained(tmp_path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_breast_cancer(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y)
    rows = _boundary_rows(model, X.astype(np.float32), limit=30)
    np.save(tmp_path / "x.npy", rows)
    result = _convert_unadjusted(model, tmp_path / "x.npy")
    flips = _flips(result.report)
    assert flips["flipped"] > 0 and flips["unexplained"] == 0
    assert result.passed, result.failures


def _swap_root_branches(onx):
    """A converter bug: the root split's true and false branches exchanged."""
    broken = onnx.ModelProto()
    broken.CopyFrom(onx)
    node = next(n for n in broken.graph.node if n.op_type in trees.TREE_OPS)
    attrs = {a.name: a for a in node.attribute}
    true_ids, false_ids = list(attrs["nodes_truenodeids"].ints), list(attrs["nodes_falsenodeids"].ints)
    true_ids[0], false_ids[0] = false_ids[0], true_ids[0]
    for name, values in (("nodes_truenodeids", true_ids), ("nodes_falsenodeids", false_ids)):
        attrs[name].CopyFrom(helper.make_attribute(name, values))
    return broken


def test_a_flipped_tree_split_fails_as_unexplained(diabetes_tree, tmp_path):
    model, X32 = diabetes_tree
    correct = api.convert(model, latency=False)
    assert correct.passed and _flips(correct.report)["flipped"] == 0
    broken = _swap_root_branches(correct.model)
    result = api.validate(model, broken, latency=False)
    flips = _flips(result.report)
    assert not result.passed
    assert flips["unexplained"] > 0 and flips["explained"] == 0
    check = next(c for c in result.report.checks if c.name == "tree_flips")
    assert not check.passed
    # the acceptable rate is the user's call: allowing every flip lets it through, by design
    assert api.validate(model, broken, latency=False, gate=GateConfig(max_flip_rate=1.0)).passed


def test_split_extraction_reads_thresholds_and_features(diabetes_tree):
    model, _ = diabetes_tree
    onx = api.convert(model, latency=False, gate=GateConfig(sweep=False, optimizer_check=False)).model
    source, feats, thresholds = trees.splits(onx)
    inner = model.tree_.children_left != -1
    assert source == "X"
    assert sorted(feats.tolist()) == sorted(model.tree_.feature[inner].tolist())
    want = np.sort(model.tree_.threshold[inner].astype(np.float32))
    # skl2onnx nudges some thresholds by one float32 step to mimic float64 comparisons
    assert (np.abs(np.sort(thresholds) - want) <= np.spacing(np.abs(want))).all()


def test_lightgbm_rounding_flips_are_explained(tmp_path):
    """LightGBM keeps float64 thresholds; its converter stores float32(t)."""
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.datasets import load_diabetes

    from onnxgate.plugins.manager import Registry

    if "lightgbm" not in {s.name for s in Registry().converters()}:
        pytest.skip("no lightgbm converter registered")
    X, y = load_diabetes(return_X_y=True)
    model = lightgbm.LGBMRegressor(n_estimators=20, num_leaves=15, random_state=0, n_jobs=1, verbose=-1).fit(X, y)
    splits = []

    def walk(node):
        if "split_feature" in node:
            splits.append((node["split_feature"], node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    rounding_up = [(f, t) for f, t in splits if float(np.float32(t)) > t]
    rows = X[: len(rounding_up)].astype(np.float32)
    for row, (f, t) in zip(rows, rounding_up):
        row[f] = np.float32(t)
    np.save(tmp_path / "x.npy", rows[:40])
    model.booster_.save_model(str(tmp_path / "m.txt"))
    result = api.convert(str(tmp_path / "m.txt"), sample=tmp_path / "x.npy", latency=False)
    flips = _flips(result.report)
    assert flips["flipped"] > 0 and flips["unexplained"] == 0
    assert result.passed, result.failures
