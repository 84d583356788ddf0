"""Comparing one ONNX output with the original model's, elementwise."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from onnxgate.pipeline.core.arrays import abs_diff, as_array
from onnxgate.plugins.spec import Tolerance


def bad_elements(actual: np.ndarray, expected: np.ndarray, tol: Tolerance) -> np.ndarray:
    """True where two same-shaped arrays disagree (NaN/inf on both sides agree)."""
    if not (_is_float(actual) or _is_float(expected)):
        if actual.dtype.kind in "OSU" or expected.dtype.kind in "OSU":
            return actual.astype(str) != expected.astype(str)
        return actual != expected
    return _beyond(abs_diff(actual, expected), expected.astype(np.float64), tol)


def _beyond(diff: np.ndarray, expected: np.ndarray, tol: Tolerance) -> np.ndarray:
    # a non-finite expected value gives no slack: +inf vs -inf (or a finite value) is a
    # mismatch, NaN vs NaN already has diff 0
    return ~(diff <= tol.atol + tol.rtol * np.abs(np.where(np.isfinite(expected), expected, 0.0)))


def row_mask(actual: Any, expected: Any, tol: Tolerance) -> np.ndarray | None:
    """Per row (axis 0): True when the row disagrees. None when the outputs
    cannot be lined up row by row (shape mismatch, scalars)."""
    actual, expected = as_array(actual), as_array(expected)
    if actual.shape != expected.shape:
        if actual.size != expected.size or not expected.ndim:
            return None
        actual = actual.reshape(expected.shape)
    if not expected.ndim or expected.shape[0] == 0:
        return None
    bad = bad_elements(actual, expected, tol)
    return cast(np.ndarray, bad.reshape(bad.shape[0], -1).any(axis=1))  # any(axis=1) of a 2-D array: an array


def compare_output(name: str, actual: Any, expected: Any, tol: Tolerance) -> dict[str, Any]:
    """Statistics and verdict for one output; never raises on a mismatch."""
    actual, expected = as_array(actual), as_array(expected)
    result: dict[str, Any] = {
        "name": name,
        "shape": list(actual.shape),
        "expected_shape": list(expected.shape),
        "dtype": str(actual.dtype),
        "rtol": tol.rtol,
        "atol": tol.atol,
        "max_abs_err": 0.0,
        "max_rel_err": 0.0,
        "mismatch_fraction": 0.0,
        "passed": True,
        "reason": "",
    }
    if actual.shape != expected.shape:
        squeezable = actual.size == expected.size and actual.size > 0
        if not squeezable:
            return _fail(result, f"shape {list(actual.shape)} != expected {list(expected.shape)}", 1.0)
        actual = actual.reshape(expected.shape)  # e.g. (n, 1) vs (n,) regressor outputs
    if actual.size == 0:
        return result
    if _is_float(actual) or _is_float(expected):
        return _compare_float(result, actual.astype(np.float64), expected.astype(np.float64), tol)
    return _compare_exact(result, actual, expected)


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind in "fc"


def _compare_float(result, actual, expected, tol):
    diff = abs_diff(actual, expected)
    bad = _beyond(diff, expected, tol)
    finite = np.isfinite(diff)
    result["max_abs_err"] = float(diff[finite].max()) if finite.any() else float("inf")
    with np.errstate(invalid="ignore"):  # inf / inf
        rel = diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    result["max_rel_err"] = float(rel[finite].max()) if finite.any() else float("inf")
    if not finite.all():
        result["max_abs_err"] = float("inf")
    fraction = float(bad.mean())
    if bad.any():
        nan_one_side = (np.isnan(actual) ^ np.isnan(expected)).any()
        why = (
            "NaN on one side only"
            if nan_one_side
            else (
                f"{int(bad.sum())} of {bad.size} elements differ beyond atol={tol.atol:g} + rtol={tol.rtol:g}*|expected| "
                f"(max abs err {result['max_abs_err']:.3g})"
            )
        )
        return _fail(result, why, fraction)
    return result


def _compare_exact(result, actual, expected):
    if actual.dtype.kind in "OSU" or expected.dtype.kind in "OSU":
        equal = actual.astype(str) == expected.astype(str)
    else:
        equal = (
            actual.astype(np.int64) == expected.astype(np.int64) if actual.dtype.kind in "iub" else actual == expected
        )
        if actual.dtype.kind in "iub" and expected.dtype.kind in "iub":
            diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            result["max_abs_err"] = float(diff.max())
    result["rtol"] = 0.0
    result["atol"] = 0.0
    fraction = float((~equal).mean())
    if not equal.all():
        return _fail(result, f"{int((~equal).sum())} of {equal.size} values differ (exact comparison)", fraction)
    return result


def _fail(result, reason, fraction):
    result.update(passed=False, reason=reason, mismatch_fraction=fraction)
    if result["max_abs_err"] == 0.0 and "shape" in reason:
        result["max_abs_err"] = float("inf")
    return result
