"""The one helper each for what used to be copied: the verdict, the
NaN/inf-aware difference, sha256 of a file or folder, the one-line message."""

import numpy as np

from onnxgate.pipeline.core.arrays import abs_diff
from onnxgate.pipeline.core.digest import sha256_bytes, sha256_path
from onnxgate.pipeline.gate.verdict import decide
from onnxgate.pipeline.report.model import CaseResult, Check, OutputResult
from onnxgate.plugins.helpers import one_line


def test_abs_diff_matches_nan_with_nan_and_an_infinity_with_itself_only():
    a = np.array([np.nan, np.inf, np.inf, 1.0, np.nan, 2.0], dtype=np.float32)
    e = np.array([np.nan, np.inf, -np.inf, 1.5, 0.0, np.inf])
    d = abs_diff(a, e)
    assert d.dtype == np.float64
    assert d[0] == 0 and d[1] == 0 and d[2] == np.inf and d[3] == 0.5 and np.isnan(d[4]) and d[5] == np.inf


def test_sha256_of_a_file_is_its_bytes_and_a_folder_covers_names_and_contents(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"abc")
    assert sha256_path(tmp_path / "m" / "a.bin") == sha256_bytes(b"abc")
    before = sha256_path(tmp_path / "m")
    (tmp_path / "m" / "a.bin").rename(tmp_path / "m" / "b.bin")
    renamed = sha256_path(tmp_path / "m")
    (tmp_path / "m" / "b.bin").write_bytes(b"abd")
    assert len({before, renamed, sha256_path(tmp_path / "m")}) == 3


def test_one_line_takes_the_first_line_truncated_and_accepts_text():
    assert one_line(ValueError("\n  first\nsecond")) == "first"
    assert one_line(KeyError("x"), with_type=True) == "KeyError: 'x'"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert one_line(RuntimeError("y" * 900), limit=20) == "y" * 17 + "..."
    assert one_line("HTTP 404\nheaders") == "HTTP 404" and one_line("") == ""


def _case(name, *outputs, error=None):
    return CaseResult(
        name=name,
        outputs=[OutputResult(name=n, passed=ok, reason="" if ok else "differs") for n, ok in outputs],
        error=error,
    )


def test_verdict_lists_every_failure_once_in_a_stable_order():
    checks = [
        Check("onnx_checker", True, "ok"),
        Check("edge_values", False, "nan: MISMATCH"),
        Check("comparison", False, "no expected outputs"),
        Check("drift", False, "grew"),
    ]
    cases = [_case("batch_4", ("y", True), ("p", False)), _case("batch_1", error="onnxruntime failed to run")]
    drift = {"outputs": [{"name": "y", "passed": False, "reason": "max abs err grew"}]}
    v = decide(checks, cases, verified=False, drift=drift)
    assert not v.passed and v.verdict == "failed"
    assert v.failures == [
        "check edge_values: nan: MISMATCH",
        "batch_1: onnxruntime failed to run",
        "batch_4/p: differs",
        "check comparison: no expected outputs (pass --accept-unverified to accept)",
        "drift y: max abs err grew",
    ]


def test_verdict_unverified_passes_only_when_accepted():
    accepted = decide([Check("comparison", True, "no expected outputs")], [_case("batch_4")], verified=False)
    assert accepted.passed and accepted.verdict == "unverified" and accepted.failures == []
    assert decide([], [_case("batch_4", ("y", True))]).verdict == "passed"
