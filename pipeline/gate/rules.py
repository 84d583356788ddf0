"""The built-in comparison rules, registered through the same entry-point path
a third-party plugin uses (``rules = onnxgate.pipeline.gate.rules``).

What each output IS decides how it is judged; detected from the outputs
themselves (no framework needed), highest priority first:

- ``classifier-label`` (integer/string/bool, one per row): label agreement
  rate, gated by ``min_agreement`` (default 1.0). Class indices on one side
  and class names on the other are mapped through the classifier's class list
  (from the ONNX classifier node or ZipMap keys; failing that, the sorted
  labels when their count matches the probability columns, and the report
  says so);
- ``classifier-probabilities`` (rows in [0, 1] summing to 1, or ZipMap's list
  of dicts): elementwise probability error plus argmax agreement;
- ``embedding`` (float, trailing feature dim >= 2; embeddings and logits):
  elementwise error, plus per-row cosine similarity and top-k agreement,
  which can gate instead (``min_cosine``, ``min_topk``, ``elementwise = false``);
- ``regression`` (one float per row): absolute and relative error;
- ``tensor`` (anything else): elementwise error only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onnxgate.pipeline.core.arrays import as_array, is_zipmap
from onnxgate.plugins import CompareRule, OptionSpec, hookimpl

DEFAULT_TOPK = 5
#: Cosine gate used when elementwise=false and no other gate is set.
DEFAULT_MIN_COSINE = 0.999


def is_label(value: Any) -> bool:
    if is_zipmap(value):
        return False
    arr = np.asarray(value)
    squeezed = arr.reshape(arr.shape[0], -1) if arr.ndim >= 1 and arr.shape[:1] != (0,) else arr
    return arr.dtype.kind in "iubOSU" and arr.ndim >= 1 and (arr.ndim == 1 or squeezed.shape[1] == 1)


def is_probabilities(value: Any) -> bool:
    if is_zipmap(value):
        return True
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] == 0:
        return False
    finite = arr[np.isfinite(arr).all(axis=1)]
    if not len(finite):
        return False
    return bool(
        (finite >= -1e-6).all() and (finite <= 1 + 1e-6).all() and np.allclose(finite.sum(axis=1), 1, atol=1e-3)
    )


class ClassifierLabels(CompareRule):
    name = "classifier-label"
    priority = 40
    elementwise = False  # the agreement rate IS the verdict
    keys = (OptionSpec("min_agreement", float, 1.0, help="classifier labels: share of rows whose label agrees"),)
    description = "predicted labels: agreement rate; class indices vs names mapped through the class list"

    def matches(self, actual, expected):
        return is_label(expected) or (actual is not None and is_label(actual) and not is_probabilities(expected))

    def prepare(self, actual, expected, context):
        width = next(
            (
                int(as_array(context.expected[n]).shape[-1])
                for n, kind in context.kinds.items()
                if kind == ClassifierProbabilities.name
            ),
            None,
        )
        act, exp, note = normalise_labels(actual, expected, context.classes, width)
        return _flat_labels(act), _flat_labels(exp), note

    def metrics(self, actual, expected, result, settings):
        return {"label_agreement": 1.0 - float(result["mismatch_fraction"])}

    def check(self, metrics, settings):
        floor = 1.0 if settings.get("min_agreement") is None else settings["min_agreement"]
        agreement = metrics["label_agreement"]
        return [] if agreement >= floor else [f"label agreement {agreement:.4f} < {floor:g}"]


class ClassifierProbabilities(CompareRule):
    name = "classifier-probabilities"
    priority = 30
    description = "class probabilities (or ZipMap): elementwise error plus argmax agreement"
    per_element_scale = True

    def matches(self, actual, expected):
        return is_probabilities(expected) or (actual is not None and is_zipmap(actual))

    def prepare(self, actual, expected, context):
        note = "ZipMap output turned into a probability matrix" if is_zipmap(actual) or is_zipmap(expected) else ""
        return as_array(actual, context.classes), as_array(expected, context.classes), note

    def metrics(self, actual, expected, result, settings):
        if actual.shape != expected.shape or actual.ndim != 2:
            return {}
        return {
            "max_prob_err": result["max_abs_err"],
            "argmax_agreement": float((np.argmax(actual, axis=1) == np.argmax(expected, axis=1)).mean()),
        }


class Embeddings(CompareRule):
    name = "embedding"
    priority = 20
    keys = (
        OptionSpec("min_cosine", float, help="embeddings/logits: minimum cosine similarity of every row"),
        OptionSpec("min_topk", float, help="embeddings/logits: minimum share of rows whose top-k indices agree"),
        OptionSpec("topk", int, DEFAULT_TOPK, help="embeddings/logits: k of top-k"),
    )
    description = "embeddings and logits: elementwise error plus per-row cosine and top-k agreement"

    def matches(self, actual, expected):
        arr = as_array(expected)
        return arr.dtype.kind in "fc" and arr.ndim >= 2 and arr.shape[-1] >= 2

    def metrics(self, actual, expected, result, settings):
        if actual.size != expected.size or not actual.size:
            return {}
        return embedding_metrics(actual.reshape(expected.shape), expected, settings.get("topk") or DEFAULT_TOPK)

    def check(self, metrics, settings):
        reasons = []
        min_cos, min_topk = settings.get("min_cosine"), settings.get("min_topk")
        if min_cos is None and settings.get("elementwise") is False and min_topk is None:
            min_cos = DEFAULT_MIN_COSINE
        if min_cos is not None and metrics.get("cosine_min", 1.0) < min_cos:
            reasons.append(f"cosine similarity {metrics['cosine_min']:.6f} < {min_cos:g}")
        if min_topk is not None and metrics.get("topk_agreement", 1.0) < min_topk:
            reasons.append(f"top-{metrics.get('topk')} agreement {metrics['topk_agreement']:.4f} < {min_topk:g}")
        return reasons


class Regression(CompareRule):
    name = "regression"
    priority = 10
    description = "one float per row: absolute and relative error"

    def matches(self, actual, expected):
        return as_array(expected).dtype.kind in "fc"

    def metrics(self, actual, expected, result, settings):
        if actual.size != expected.size or not actual.size:
            return {}
        diff = np.abs(actual.reshape(expected.shape).astype(np.float64) - expected.astype(np.float64))
        finite = np.isfinite(diff)
        return {"mean_abs_err": float(diff[finite].mean()) if finite.any() else float("inf")}


class Tensor(CompareRule):
    name = "tensor"
    priority = 0
    description = "any other output: elementwise error"

    def matches(self, actual, expected):
        return True


@hookimpl
def onnxgate_compare_rules():
    yield ClassifierLabels()
    yield ClassifierProbabilities()
    yield Embeddings()
    yield Regression()
    yield Tensor()


def normalise_labels(
    actual: Any, expected: Any, classes: Sequence[Any] | None, width: int | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Map class indices to class labels when the two sides disagree on which they return."""
    a, e = np.asarray(actual), np.asarray(expected)
    a_text, e_text = a.dtype.kind in "OSU", e.dtype.kind in "OSU"
    note = ""
    if classes is None and a_text != e_text and width:
        named = a if a_text else e
        uniq = sorted(set(named.ravel().tolist()))
        if len(uniq) == width:
            classes, note = uniq, "assumed the classes are the sorted labels; "
    if classes is None:
        return a, e, ""
    cls = np.asarray(classes, dtype=object)

    def indices(x):
        return x.dtype.kind in "iu" and x.size > 0 and x.min() >= 0 and x.max() < len(cls)

    def labels(x):
        return x.size > 0 and set(x.ravel().tolist()) <= set(cls.tolist())

    if indices(a) and not labels(a) and labels(e):
        return cls[a], e, note + "onnxruntime returned class indices; mapped to class labels"
    if indices(e) and not labels(e) and labels(a):
        return a, cls[e], note + "the original returned class indices; mapped to class labels"
    if a_text != e_text and indices(a) and labels(e):
        return cls[a], e, note + "onnxruntime returned class indices; mapped to class labels"
    if a_text != e_text and indices(e) and labels(a):
        return a, cls[e], note + "the original returned class indices; mapped to class labels"
    return a, e, ""


def _flat_labels(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1) if x.ndim == 2 and x.shape[1] == 1 else x


def embedding_metrics(act: np.ndarray, exp: np.ndarray, k: int) -> dict[str, Any]:
    d = exp.shape[-1]
    a = act.reshape(-1, d).astype(np.float64)
    e = exp.reshape(-1, d).astype(np.float64)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(e).all(axis=1)
    a, e = a[ok], e[ok]
    out: dict[str, Any] = {"cosine_rows": int(len(a)), "topk": int(min(k, d))}
    if not len(a):
        return out
    # cosine is scale-invariant: scaling each row by its largest magnitude
    # keeps the norms finite for edge-value inputs (1e30 squared overflows)
    a = a / np.maximum(np.abs(a).max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    e = e / np.maximum(np.abs(e).max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    na, ne = np.linalg.norm(a, axis=1), np.linalg.norm(e, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((na == 0) & (ne == 0), 1.0, (a * e).sum(axis=1) / (na * ne))
    cos = np.nan_to_num(cos, nan=0.0)
    out["cosine_min"] = float(cos.min())
    out["cosine_mean"] = float(cos.mean())
    out["top1_agreement"] = float((a.argmax(axis=1) == e.argmax(axis=1)).mean())
    k = min(k, d)
    top_a = np.sort(np.argsort(-a, axis=1, kind="stable")[:, :k], axis=1)
    top_e = np.sort(np.argsort(-e, axis=1, kind="stable")[:, :k], axis=1)
    out["topk_agreement"] = float((top_a == top_e).all(axis=1).mean())
    return out
