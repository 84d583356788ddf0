"""score.py against hostile requests, in process on a real onnxruntime session
(issue 12, items 2, 5, 7): deep nesting, non-finite values in answers,
booleans for numbers, and init() re-verifying the model against the record.
The same file answers HTTP in tests/test_hostile_serving.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from deploy_support import load_score, validated_iris

from onnxgate.pipeline.deployment import package, record


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return validated_iris(tmp_path_factory.mktemp("score"))


@pytest.fixture
def pkg(model, tmp_path):
    return package.build(record.check(model), tmp_path / "pkg")


def _load_score(pkg, monkeypatch):
    return load_score(pkg, monkeypatch, "onnxgate_hostile_score")


# ---- item 5: nesting ---------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [70, 1000, 5000, 100_000])
def test_deep_nesting_is_400_not_500(pkg, monkeypatch, depth):
    score = _load_score(pkg, monkeypatch)
    for body in (
        '{"inputs": {"X": ' + "[" * depth + "]" * depth + "}}",
        "[" * depth + "]" * depth,
        '{"inputs": {"X": ' + '{"a":' * depth + "1" + "}" * depth + "}}",
    ):
        status, answer = score.score(body)
        assert status == 400, (depth, answer)
        assert "nest" in answer["message"] or "rank" in answer["message"]


# ---- item 7: strict JSON out, strict types in --------------------------------------------------
def test_non_finite_outputs_are_strict_json_strings(pkg, monkeypatch):
    score = _load_score(pkg, monkeypatch)
    status, answer = score.score('{"inputs": {"X": [[NaN, 1, 2, 3], [Infinity, -Infinity, 1, 2], [1, 2, 3, 4]]}}')
    assert status == 200
    text = score.dumps(answer)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    probs = parsed["outputs"]["probabilities"]
    assert probs[0][0] in ("NaN", "Infinity", "-Infinity")
    assert all(isinstance(v, float) for v in probs[2])
    decoded = np.asarray(probs, dtype=np.float64)  # the documented strings parse back as floats
    assert math.isnan(decoded[0][0]) and np.isfinite(decoded[2]).all()


def test_to_json_value_encodes_non_finite_everywhere():
    from onnxgate.pipeline.deployment import score_template as st

    value = {
        "a": np.array([np.nan, np.inf, -np.inf, 1.5], np.float32),
        "b": [{"x": float("nan")}],
        "c": np.float64("inf"),
    }
    assert st.to_json_value(value) == {"a": ["NaN", "Infinity", "-Infinity", 1.5], "b": [{"x": "NaN"}], "c": "Infinity"}


@pytest.mark.parametrize(
    "body",
    [
        '{"inputs": {"X": [[true, 1, 2, 3]]}}',
        '{"inputs": {"X": [[true, false, true, false]]}}',
        '{"inputs": {"X": [[1, 2, 3, 4], [5, 6, 7, false]]}}',
    ],
)
def test_booleans_for_float_inputs_are_400(pkg, monkeypatch, body):
    score = _load_score(pkg, monkeypatch)
    status, answer = score.score(body)
    assert status == 400 and "boolean" in answer["message"], answer


def test_the_word_true_inside_a_string_is_not_a_boolean(pkg, monkeypatch):
    score = _load_score(pkg, monkeypatch)
    status, answer = score.score('{"inputs": {"X": [["true", 1, 2, 3]]}}')
    assert status == 400 and "must hold numbers" in answer["message"]


def test_smoke_comparison_reads_the_encoded_non_finite_values():
    from onnxgate.pipeline.deployment import serve

    smoke = {"response": {"outputs": {"y": [["NaN", 1.0], ["Infinity", 2.0]]}}}
    assert serve.compare_response({"outputs": {"y": [["NaN", 1.0], ["Infinity", 2.0]]}}, smoke, {}).passed
    assert not serve.compare_response({"outputs": {"y": [[0.0, 1.0], ["Infinity", 2.0]]}}, smoke, {}).passed


# ---- item 2: score.py verifies the model against the validation record -------------------------
def test_init_verifies_the_model_against_the_packaged_record(pkg, monkeypatch):
    """Tampering with the model AND onnxgate-serving.json is still caught: the
    record (with its sha256 of the validated model) is in the code folder."""
    assert (pkg / "code" / "validation-record.json").is_file()
    model = pkg / "model" / "model.onnx"
    tampered = model.read_bytes() + b"\0"
    model.write_bytes(tampered)
    settings = pkg / "code" / "onnxgate-serving.json"
    data = json.loads(settings.read_text())
    data["sha256"] = record.sha256_bytes(tampered)
    settings.write_text(json.dumps(data))
    with pytest.raises(RuntimeError, match="validated"):
        _load_score(pkg, monkeypatch)
