"""The validation record: written by convert/validate, bound to the model's
bytes, and enforced by the deploy-time gate."""

import json

import numpy as np
import pytest

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.deployment import record


def _fit(C=1.0):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500, C=C).fit(X, y), X


@pytest.fixture
def converted(tmp_path):
    from onnxgate.pipeline import api

    model, X = _fit()
    sample = tmp_path / "sample.npy"
    np.save(sample, X[:8].astype(np.float32))
    result = api.convert(model, sample=sample)
    path = tmp_path / "iris.onnx"
    result.save(path)
    return path


def _skops(tmp_path, name, C):
    import skops.io

    model, X = _fit(C)
    path = tmp_path / name
    skops.io.dump(model, path)
    np.save(tmp_path / "sample.npy", X[:8].astype(np.float32))
    return path


def test_convert_writes_a_passing_record_bound_to_the_bytes(converted):
    import onnxruntime

    rec = json.loads(record.path_for(converted).read_text())
    assert rec["kind"] == record.RECORD_KIND
    assert rec["passed"] is True and rec["verdict"] == "passed"
    assert rec["model"]["sha256"] == sha256_path(converted)
    assert rec["model"]["size"] == converted.stat().st_size
    assert rec["validated_with"]["onnxruntime"] == onnxruntime.__version__
    assert rec["summary"]["cases"] >= 1 and rec["summary"]["outputs_compared"] >= 2
    assert rec["tolerance"]["rtol"] > 0
    assert [i["name"] for i in rec["signature"]["inputs"]] == ["X"]


def test_smoke_sample_is_what_onnxruntime_answers_on_the_validation_inputs(converted):
    import onnxruntime as ort

    smoke = record.load(converted)["smoke"]
    x = np.asarray(smoke["request"]["inputs"]["X"], dtype=np.float32)
    assert x.shape == (8, 4)
    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"X": x})
    assert smoke["response"]["outputs"]["label"] == label.tolist()
    assert np.array_equal(np.asarray(smoke["response"]["outputs"]["probabilities"], dtype=np.float32), proba)


def test_gate_accepts_the_validated_bytes(converted):
    gate = record.check(converted)
    assert gate.passed and gate.sha256 == sha256_path(converted) and gate.record["passed"]


def test_gate_refuses_a_model_without_record(converted):
    record.path_for(converted).unlink()
    with pytest.raises(record.DeployRefused, match="no validation record") as info:
        record.check(converted)
    assert info.value.exit_code == 2 and record.OVERRIDE_FLAG in str(info.value)


def test_gate_refuses_changed_bytes(converted):
    converted.write_bytes(converted.read_bytes() + b"\0")
    with pytest.raises(record.DeployRefused, match="bytes changed"):
        record.check(converted)


def test_gate_refuses_a_failed_record_and_override_is_explicit(converted):
    path = record.path_for(converted)
    rec = json.loads(path.read_text())
    rec.update(passed=False, verdict="failed")
    rec["summary"]["failures"] = ["batch_8/probabilities: 3 of 24 elements differ"]
    path.write_text(json.dumps(rec))
    with pytest.raises(record.DeployRefused, match="validation failed .*3 of 24"):
        record.check(converted)
    gate = record.check(converted, allow_unvalidated=True)
    assert not gate.passed and "validation failed" in gate.override


def test_cli_validate_records_against_the_files_bytes_passed_and_failed(tmp_path, capsys):
    source = _skops(tmp_path, "a.skops", C=1.0)
    other = _skops(tmp_path, "b.skops", C=0.001)
    sample = tmp_path / "sample.npy"
    onnx_path = tmp_path / "a.onnx"
    assert cli.main(["convert", str(source), "-o", str(onnx_path), "--sample", str(sample)]) == 0
    record.path_for(onnx_path).unlink()

    # the right source: passes, and the record names these bytes
    assert cli.main(["validate", str(source), str(onnx_path), "--sample", str(sample)]) == 0
    rec = record.load(onnx_path)
    assert rec["passed"] and rec["model"]["sha256"] == sha256_path(onnx_path)

    # a different source: the gate fails, and a FAILED record replaces the passing one
    assert cli.main(["validate", str(other), str(onnx_path), "--sample", str(sample)]) == 1
    rec = record.load(onnx_path)
    assert rec["passed"] is False and rec["verdict"] == "failed" and rec["summary"]["failures"]
    with pytest.raises(record.DeployRefused, match="validation failed"):
        record.check(onnx_path)
    capsys.readouterr()


def test_cli_deploy_refusals_are_exit_2_with_the_reason(converted, tmp_path, capsys):
    reg = tmp_path / "registry"
    converted.write_bytes(converted.read_bytes() + b"\0")
    code = cli.main(["deploy", str(converted), "--registry", str(reg), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "bytes changed" in err and len(err.strip().splitlines()) == 1
    assert not reg.exists()
    record.path_for(converted).unlink()
    assert cli.main(["package", str(converted), "-o", str(tmp_path / "pkg")]) == 2
    assert "no validation record" in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()


def test_a_failed_conversion_gate_writes_a_failed_record(tmp_path):
    from onnxgate.pipeline import api

    model, X = _fit()
    sample = tmp_path / "sample.npy"
    np.save(sample, X[:8].astype(np.float32))
    # zero tolerance: float32 onnxruntime vs float64 sklearn probabilities cannot match exactly
    result = api.convert(model, sample=sample, rtol=0.0, atol=0.0)
    assert not result.passed
    path = tmp_path / "strict.onnx"
    result.save(path)
    rec = record.load(path)
    assert rec["passed"] is False and rec["tolerance"] == {"rtol": 0.0, "atol": 0.0}
    assert rec["model"]["sha256"] == sha256_path(path)
    with pytest.raises(record.DeployRefused, match="validation failed"):
        record.check(path)
