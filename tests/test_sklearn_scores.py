"""Classifiers without predict_proba: the second output is decision_function,
laid out as skl2onnx writes it, and the gate judges labels and scores."""

import numpy as np
import pytest

from onnxgate.plugins.testing import run_cli

pytest.importorskip("sklearn")
from sklearn.datasets import load_iris
from sklearn.linear_model import RidgeClassifier, SGDClassifier
from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC, NuSVC


def _data(classes: int):
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    if classes == 2:
        return X, (y == 1).astype(int)
    if classes == 4:  # OvO SVC scores: 6 pairs, not 3 (iris's 3 pairs = 3 classes hides the shape)
        return X, np.where((y == 2) & (X[:, 0] > 6.5), 3, y)
    return X, y


SCORERS = {
    "svc": lambda: SVC(),
    "svc_ovo": lambda: SVC(decision_function_shape="ovo"),
    "nusvc": lambda: NuSVC(nu=0.1),
    "linear_svc": lambda: LinearSVC(),
    "ridge": lambda: RidgeClassifier(),
    "sgd_hinge": lambda: SGDClassifier(loss="hinge", random_state=0),
    "ovr_svc": lambda: OneVsRestClassifier(SVC()),
    "ovr_linear_svc": lambda: OneVsRestClassifier(LinearSVC()),
    "ovo_linear_svc": lambda: OneVsOneClassifier(LinearSVC()),
    "scaled_svc": lambda: make_pipeline(StandardScaler(), SVC()),
}


@pytest.mark.parametrize("classes", [2, 3, 4])
@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_scoring_classifier_compares_decision_function(kind, classes):
    from onnxgate.pipeline import convert

    X, y = _data(classes)
    model = SCORERS[kind]().fit(X, y)
    result = convert(model, sample=X[::7], latency=False)
    if kind == "ovr_linear_svc" and classes == 2:
        # converter limit (docs/compatibility.md): skl2onnx thresholds the raw score at 0.5, not 0
        assert not result.passed and any("label agreement" in f for f in result.failures)
        return
    assert result.passed, result.failures
    scores = {o.name: o for o in result.report.cases[0].outputs}["probabilities"]
    assert scores.passed and scores.max_abs_err is not None
    # the compared expectation is the model's decision_function, not a probability
    decision = np.asarray(model.decision_function(X[::7]))
    assert scores.shape[0] == len(decision)
    if decision.ndim == 2:
        assert scores.shape[1] == decision.shape[1]


def _negate_scores(onnx_model, flip_labels: bool):
    """A converter bug that flips the decision's sign (optionally the labels too)."""
    from onnx import helper

    graph = onnx_model.graph
    scores = graph.output[1].name
    graph.node.append(helper.make_node("Neg", [scores + "_raw"], [scores]))
    for node in graph.node[:-1]:
        node.output[:] = [scores + "_raw" if o == scores else o for o in node.output]
    if flip_labels:  # binary int labels 0/1 -> 1/0
        label = graph.output[0].name
        one = helper.make_tensor(label + "_one", 7, [], [1])
        graph.initializer.append(one)
        graph.node.append(helper.make_node("Sub", [label + "_one", label + "_raw"], [label]))
        for node in graph.node[:-1]:
            node.input[:] = [label + "_raw" if i == label else i for i in node.input]
            node.output[:] = [label + "_raw" if o == label else o for o in node.output]
    return onnx_model


@pytest.mark.parametrize("flip_labels", [False, True])
def test_sign_flipped_decision_fails_validation_with_exit_1(tmp_path, flip_labels):
    import skops.io as sio

    from onnxgate.pipeline import convert

    X, y = _data(2)
    model = SVC().fit(X, y)
    good = convert(model, sample=X[::7], latency=False)
    assert good.passed, good.failures
    bad = tmp_path / "flipped.onnx"
    bad.write_bytes(_negate_scores(good.model, flip_labels).SerializeToString())
    source = tmp_path / "svc.skops"
    sio.dump(model, source)
    np.save(tmp_path / "x.npy", X[::7])
    proc = run_cli("validate", str(source), str(bad), "--sample", str(tmp_path / "x.npy"), "--no-latency")
    assert proc.returncode == 1, proc.stderr
    assert "probabilities" in proc.stderr
    if flip_labels:
        assert "label" in proc.stderr


def test_ensembles_holding_arrays_of_estimators_still_convert():
    """Gradient boosting keeps its trees in an array, not a list (the
    estimator walk must not take its truth value)."""
    from sklearn.ensemble import GradientBoostingClassifier

    from onnxgate.pipeline import convert

    X, y = _data(3)
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y)
    assert convert(model, sample=X[::9], latency=False).passed
