"""Task-aware comparison: what each output IS decides how it is judged.

Detected from the outputs themselves (no framework needed):

- classifier labels (integer/string/bool, one per row): label agreement rate,
  gated by ``min_agreement`` (default 1.0). Class indices on one side and class
  names on the other are mapped through the classifier's class list (from the
  ONNX classifier node or ZipMap keys; failing that, the sorted labels when
  their count matches the probability columns, and the report says so);
- classifier probabilities (rows in [0, 1] summing to 1, or ZipMap's list of
  dicts): elementwise probability error plus argmax agreement;
- regression (one float per row): absolute and relative error;
- embeddings / logits (float, trailing feature dim >= 2): elementwise error,
  plus per-row cosine similarity and top-k agreement, which can gate instead
  (``min_cosine``, ``min_topk``, ``elementwise = false``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from onnxgate.plugins.spec import Tolerance
from onnxgate.pipeline.core.arrays import as_array, is_zipmap
from onnxgate.pipeline.gate.compare import compare_output, row_mask
from onnxgate.pipeline.gate.config import GateConfig, OutputRule

CLASSIFIER_OPS = ("TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier", "ZipMap")
DEFAULT_TOPK = 5
#: Cosine gate used when elementwise=false and no other gate is set.
DEFAULT_MIN_COSINE = 0.999


def model_classes(model) -> Optional[List[Any]]:
    """The class list a converted classifier declares, in column order."""
    from onnx import helper

    for node in getattr(model, "graph", None).node if model is not None else ():
        if node.op_type in CLASSIFIER_OPS:
            for attr in node.attribute:
                if attr.name in ("classlabels_strings", "classlabels_int64s"):
                    values = helper.get_attribute_value(attr)
                    if len(values):
                        return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def _is_label(value: Any) -> bool:
    if is_zipmap(value):
        return False
    arr = np.asarray(value)
    squeezed = arr.reshape(arr.shape[0], -1) if arr.ndim >= 1 and arr.shape[:1] != (0,) else arr
    return arr.dtype.kind in "iubOSU" and arr.ndim >= 1 and (arr.ndim == 1 or squeezed.shape[1] == 1)


def _is_probabilities(value: Any) -> bool:
    if is_zipmap(value):
        return True
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] == 0:
        return False
    finite = arr[np.isfinite(arr).all(axis=1)]
    if not len(finite):
        return False
    return bool((finite >= -1e-6).all() and (finite <= 1 + 1e-6).all() and np.allclose(finite.sum(axis=1), 1, atol=1e-3))


def detect(actual: Dict[str, Any], expected: Dict[str, Any]) -> Dict[str, str]:
    """Task per output name."""
    tasks = {}
    for name, exp in expected.items():
        act = actual.get(name)
        if _is_label(exp) or (act is not None and _is_label(act) and not _is_probabilities(exp)):
            tasks[name] = "classifier-label"
        elif _is_probabilities(exp) or (act is not None and is_zipmap(act)):
            tasks[name] = "classifier-probabilities"
        else:
            arr = as_array(exp)
            if arr.dtype.kind in "fc" and arr.ndim >= 2 and arr.shape[-1] >= 2:
                tasks[name] = "embedding"
            elif arr.dtype.kind in "fc":
                tasks[name] = "regression"
            else:
                tasks[name] = "tensor"
    return tasks


def _zipmap_keys(*values: Any) -> Optional[List[Any]]:
    for value in values:
        if is_zipmap(value):
            return list(value[0])
    return None


def _prob_width(actual: Dict[str, Any], expected: Dict[str, Any], tasks: Dict[str, str]) -> Optional[int]:
    for name, task in tasks.items():
        if task == "classifier-probabilities":
            return int(as_array(expected[name]).shape[-1])
    return None


def normalise_labels(actual: Any, expected: Any, classes: Optional[Sequence[Any]],
                     width: Optional[int]) -> Tuple[np.ndarray, np.ndarray, str]:
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


def compare_case(actual: Dict[str, Any], expected: Dict[str, Any], tol: Tolerance, gate: Optional[GateConfig],
                 classes: Optional[Sequence[Any]] = None) -> Tuple[List[Dict[str, Any]], Dict[str, Optional[np.ndarray]]]:
    """Results per output (report entries) and per-output row masks (True = row disagrees)."""
    gate = gate or GateConfig()
    tasks = detect(actual, expected)
    classes = classes or _zipmap_keys(*actual.values(), *expected.values())
    width = _prob_width(actual, expected, tasks)
    results, masks = [], {}
    for name, exp in expected.items():
        act = actual[name]
        rule = gate.rule(name)
        out_tol = rule.tolerance(tol)
        task = tasks[name]
        note = ""
        if task == "classifier-probabilities":
            act, exp = as_array(act, classes), as_array(exp, classes)
            note = "ZipMap output turned into a probability matrix" if is_zipmap(actual[name]) or is_zipmap(expected[name]) else ""
        elif task == "classifier-label":
            act, exp, note = normalise_labels(act, exp, classes, width)
            act, exp = _flat_labels(act), _flat_labels(exp)
        result = compare_output(name, act, exp, out_tol)
        result["task"] = task
        if note:
            result["normalised"] = note
        mask = row_mask(act, exp, out_tol)
        metrics = _metrics(task, as_array(act), as_array(exp), rule, result, mask)
        result["metrics"] = metrics
        _apply_gates(task, rule, result, metrics)
        results.append(result)
        masks[name] = mask
    return results, masks


def _flat_labels(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1) if x.ndim == 2 and x.shape[1] == 1 else x


def _metrics(task, act, exp, rule: OutputRule, result, mask) -> Dict[str, Any]:
    metrics: Dict[str, Any] = {}
    if task == "classifier-label":
        metrics["label_agreement"] = 1.0 - float(result["mismatch_fraction"])
    elif task == "classifier-probabilities" and act.shape == exp.shape and act.ndim == 2:
        metrics["max_prob_err"] = result["max_abs_err"]
        metrics["argmax_agreement"] = float((np.argmax(act, axis=1) == np.argmax(exp, axis=1)).mean())
    elif task == "regression" and act.size == exp.size and act.size:
        diff = np.abs(act.reshape(exp.shape).astype(np.float64) - exp.astype(np.float64))
        finite = np.isfinite(diff)
        metrics["mean_abs_err"] = float(diff[finite].mean()) if finite.any() else float("inf")
    elif task == "embedding" and act.size == exp.size and act.size:
        metrics.update(_embedding_metrics(act.reshape(exp.shape), exp, rule.topk or DEFAULT_TOPK))
    if mask is not None and len(mask):
        metrics["rows"] = int(len(mask))
        metrics["rows_mismatched"] = int(mask.sum())
    return metrics


def _embedding_metrics(act: np.ndarray, exp: np.ndarray, k: int) -> Dict[str, Any]:
    d = exp.shape[-1]
    a = act.reshape(-1, d).astype(np.float64)
    e = exp.reshape(-1, d).astype(np.float64)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(e).all(axis=1)
    a, e = a[ok], e[ok]
    out: Dict[str, Any] = {"cosine_rows": int(len(a)), "topk": int(min(k, d))}
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


def _apply_gates(task, rule: OutputRule, result, metrics) -> None:
    """Task gates on top of (or instead of) the elementwise verdict."""
    if "shape" in result.get("reason", "") and not result["passed"]:
        return  # nothing lines up: no metric can rescue it
    reasons = []
    elementwise = rule.elementwise is not False
    passed = result["passed"] if elementwise else True
    if task == "classifier-label":
        floor = 1.0 if rule.min_agreement is None else rule.min_agreement
        agreement = metrics["label_agreement"]
        passed = agreement >= floor  # labels: the agreement rate IS the verdict
        if not passed:
            reasons.append(f"label agreement {agreement:.4f} < {floor:g}")
    if task == "embedding":
        min_cos = rule.min_cosine
        if min_cos is None and not elementwise and rule.min_topk is None:
            min_cos = DEFAULT_MIN_COSINE
        if min_cos is not None and metrics.get("cosine_min", 1.0) < min_cos:
            passed = False
            reasons.append(f"cosine similarity {metrics['cosine_min']:.6f} < {min_cos:g}")
        if rule.min_topk is not None and metrics.get("topk_agreement", 1.0) < rule.min_topk:
            passed = False
            reasons.append(f"top-{metrics.get('topk')} agreement {metrics['topk_agreement']:.4f} < {rule.min_topk:g}")
    if elementwise and not result["passed"] and task != "classifier-label":
        passed = False
        reasons.insert(0, result["reason"])
    result["passed"] = passed
    result["reason"] = "; ".join(r for r in reasons if r) if not passed else ""
    if not elementwise:
        result["elementwise_gated"] = False
