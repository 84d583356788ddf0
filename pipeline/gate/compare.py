"""Comparing one ONNX output with the original model's: the tolerance rule.

Two bounds (docs/validation.md, "The tolerance rule"), both scale-aware:

- **float32 noise** (``Noise``), when stage 1 ran the original once more in
  float64: the original's own float32 error on this output, ``floor =
  max|float32 - float64|``, sets the bound for every element:
  ``|onnx - expected| <= multiple * floor + NOISE_ULPS * 2**-23 * max|expected|``.
- **scale-aware default** otherwise: ``|onnx - expected| <= atol + rtol *
  max|expected in its row|`` (rows: axis 0, one sample each), so a logit near
  zero in a row of logits near 20 is held to the row's float32 precision,
  not to its own magnitude. Probabilities keep their own magnitude
  (``per_element``): a softmax's error on a class is proportional to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from onnxgate.pipeline.core.arrays import abs_diff, as_array
from onnxgate.plugins.spec import Tolerance

#: Default multiple of the original's float32 noise an ONNX error may reach:
#: two independent float32 evaluations differ by up to ~2x one's error from
#: float64 (measured: ONNX/original ratio at most 2.3 over the zoo), doubled for margin.
DEFAULT_NOISE_MULTIPLE = 4.0
#: Float32 ulps of the output's largest magnitude always allowed on top, for
#: outputs the original happens to compute (almost) exactly.
NOISE_ULPS = 2
_EPS32 = float(np.finfo(np.float32).eps)  # 2**-23


@dataclass(frozen=True)
class Noise:
    """The original's float32 noise floor on one output of one case."""

    floor: float
    multiple: float = DEFAULT_NOISE_MULTIPLE

    def bound(self, scale: float) -> float:
        """The largest absolute error accepted on an output whose largest finite magnitude is ``scale``."""
        return self.multiple * self.floor + NOISE_ULPS * _EPS32 * scale


def scale_of(expected: np.ndarray) -> float:
    finite = np.abs(expected[np.isfinite(expected)])
    return float(finite.max()) if finite.size else 0.0


def row_scale(expected: np.ndarray) -> np.ndarray:
    """Per element: the largest finite magnitude in its row (axis 0); a scalar is one row."""
    if expected.ndim < 2:
        return np.abs(np.where(np.isfinite(expected), expected, 0.0))
    rows = np.abs(np.where(np.isfinite(expected), expected, 0.0)).reshape(expected.shape[0], -1)
    per_row = rows.max(axis=1, initial=0.0)
    return np.broadcast_to(per_row.reshape((-1,) + (1,) * (expected.ndim - 1)), expected.shape)


def bad_elements(
    actual: np.ndarray, expected: np.ndarray, tol: Tolerance, noise: Noise | None = None, per_element: bool = False
) -> np.ndarray:
    """True where two same-shaped arrays disagree (NaN/inf on both sides agree)."""
    if not (_is_float(actual) or _is_float(expected)):
        if actual.dtype.kind in "OSU" or expected.dtype.kind in "OSU":
            return actual.astype(str) != expected.astype(str)
        return actual != expected
    return _beyond(abs_diff(actual, expected), expected.astype(np.float64), tol, noise, per_element)


def _beyond(
    diff: np.ndarray, expected: np.ndarray, tol: Tolerance, noise: Noise | None = None, per_element: bool = False
) -> np.ndarray:
    # a non-finite expected value gives no slack of its own: +inf vs -inf (or a finite
    # value) is a mismatch, NaN vs NaN already has diff 0
    if noise is not None:
        return ~(diff <= noise.bound(scale_of(expected)))
    scale = np.abs(np.where(np.isfinite(expected), expected, 0.0)) if per_element else row_scale(expected)
    return ~(diff <= tol.atol + tol.rtol * scale)


def row_mask(
    actual: Any, expected: Any, tol: Tolerance, noise: Noise | None = None, per_element: bool = False
) -> np.ndarray | None:
    """Per row (axis 0): True when the row disagrees. None when the outputs
    cannot be lined up row by row (shape mismatch, scalars)."""
    actual, expected = as_array(actual), as_array(expected)
    if actual.shape != expected.shape:
        if actual.size != expected.size or not expected.ndim:
            return None
        actual = actual.reshape(expected.shape)
    if not expected.ndim or expected.shape[0] == 0:
        return None
    bad = bad_elements(actual, expected, tol, noise, per_element)
    return cast(np.ndarray, bad.reshape(bad.shape[0], -1).any(axis=1))  # any(axis=1) of a 2-D array: an array


def compare_output(
    name: str, actual: Any, expected: Any, tol: Tolerance, noise: Noise | None = None, per_element: bool = False
) -> dict[str, Any]:
    """Statistics and verdict for one output; never raises on a mismatch.
    ``noise``: the original's float32 noise floor on it (None: the scale-aware
    default, scaled per row, or per element when ``per_element``)."""
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
        return _compare_float(result, actual.astype(np.float64), expected.astype(np.float64), tol, noise, per_element)
    return _compare_exact(result, actual, expected)


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind in "fc"


def _compare_float(result, actual, expected, tol, noise, per_element=False):
    diff = abs_diff(actual, expected)
    bad = _beyond(diff, expected, tol, noise, per_element)
    scale = scale_of(expected)
    if noise is not None:
        result.update(
            tolerance_rule="float32-noise",
            noise_floor=noise.floor,
            noise_multiple=noise.multiple,
            bound=noise.bound(scale),
        )
    else:
        result.update(tolerance_rule="scale-aware", bound=tol.atol + tol.rtol * scale)
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
        why = "NaN on one side only" if nan_one_side else _why(result, bad, tol, noise, per_element)
        return _fail(result, why, fraction)
    return result


def _why(result, bad, tol: Tolerance, noise: Noise | None, per_element: bool = False) -> str:
    err = result["max_abs_err"]
    if noise is not None:
        return (
            f"max abs err {err:.3g} > bound {result['bound']:.3g} = {noise.multiple:g} x the original's float32 "
            f"noise floor {noise.floor:.3g} + {NOISE_ULPS} ulp of max|expected| ({int(bad.sum())} of {bad.size} elements)"
        )
    scale = "|expected|" if per_element else "max|expected| of their row"
    return (
        f"{int(bad.sum())} of {bad.size} elements differ beyond atol={tol.atol:g} + rtol={tol.rtol:g}*{scale} "
        f"(max abs err {err:.3g})"
    )


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
