"""What is served is what was validated (issue 12, items 2-4): the record's
sha256 covers external-data files, tampering in the registry or in a reused
package is refused before serving, and an optional HMAC signs the record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from deploy_support import validated_iris
from onnx import TensorProto, helper, numpy_helper

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.deployment import package, record


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    return validated_iris(tmp_path_factory.mktemp("rec"))


@pytest.fixture
def model(iris, tmp_path):
    path = tmp_path / "iris.onnx"
    shutil.copyfile(iris, path)
    shutil.copyfile(record.path_for(iris), record.path_for(path))
    return path


def _external_model(folder):
    """MatMul with its weight in an external-data file ``w.bin``."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
        [w],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    assert (folder / "w.bin").is_file()
    return path


@pytest.fixture
def external(tmp_path):
    path = _external_model(tmp_path)
    code = cli.main(["validate", str(path), str(path), "--accept-unverified", "--no-latency"])
    assert code == 0
    return path


# ---- item 3: external data is part of the hash ------------------------------------------------
def test_record_hash_covers_external_data_files(external):
    rec = record.load(external)
    assert set(rec["model"]["files"]["external"]) == {"w.bin"}
    assert rec["model"]["sha256"] != record.sha256_path(external)  # not the .onnx file alone
    assert record.check(external).sha256 == rec["model"]["sha256"]
    weights = external.parent / "w.bin"
    data = bytearray(weights.read_bytes())
    data[4] ^= 0xFF  # a swapped weight
    weights.write_bytes(bytes(data))
    with pytest.raises(record.DeployRefused, match="changed since validation"):
        record.check(external)


def test_package_carries_external_data_and_score_verifies_it(external, tmp_path, monkeypatch):
    import importlib.util

    pkg = package.build(record.check(external), tmp_path / "pkg")
    assert (pkg / "model" / "w.bin").read_bytes() == (external.parent / "w.bin").read_bytes()
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(pkg / "model"))

    def load():
        spec = importlib.util.spec_from_file_location("onnxgate_ext_score", pkg / "code" / "score.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.init()
        return module

    score = load()
    status, answer = score.score('{"inputs": {"X": [[1, 0, 0, 0]]}}')
    assert status == 200 and answer["outputs"]["Y"] == [[0.0, pytest.approx(0.1), pytest.approx(0.2)]]
    (pkg / "model" / "w.bin").write_bytes(b"\0" * 48)
    with pytest.raises(RuntimeError, match="not the"):
        load()


def test_external_location_escaping_the_folder_is_refused(tmp_path):
    path = _external_model(tmp_path)
    m = onnx.load(str(path), load_external_data=False)
    for entry in m.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save(m, str(path))
    with pytest.raises(Exception, match="outside"):
        record.model_files(path)


# ---- item 2: tampering between validation and serving -----------------------------------------
def test_serve_a_registered_name_checks_the_record_not_meta(model, tmp_path, capsys):
    from onnxgate.pipeline.deployment.registry import LocalRegistry

    reg = LocalRegistry(tmp_path / "reg")
    version = reg.register(record.check(model), "iris")
    tampered = version.model_path.read_bytes() + b"\0"
    version.model_path.write_bytes(tampered)
    meta = json.loads((version.path / "meta.json").read_text())
    meta["model_sha256"] = record.sha256_bytes(tampered)  # the attacker updates meta.json too
    (version.path / "meta.json").write_text(json.dumps(meta))
    code = cli.main(["serve", "iris:1", "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and "validat" in err


def test_deploy_refuses_a_tampered_package_folder(model, tmp_path, capsys):
    from onnxgate.pipeline.deployment import local
    from onnxgate.pipeline.deployment.registry import LocalRegistry

    gate = record.check(model)
    version = LocalRegistry(tmp_path / "reg").register(gate, "iris")
    pkg = local.ensure_package(version, gate)
    target = pkg / "model" / "model.onnx"
    tampered = target.read_bytes() + b"\0"
    target.write_bytes(tampered)
    settings = json.loads((pkg / "code" / "onnxgate-serving.json").read_text())
    settings["sha256"] = record.sha256_bytes(tampered)
    (pkg / "code" / "onnxgate-serving.json").write_text(json.dumps(settings))
    with pytest.raises(record.DeployRefused, match="package"):
        local.ensure_package(version, gate)
    code = cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg")])
    assert code == 2 and "package" in capsys.readouterr().err


# ---- item 4: the record is plain JSON; an optional HMAC signs it ------------------------------
def test_record_signed_with_a_key_is_verified_by_deploy(model, monkeypatch):
    monkeypatch.setenv(record.KEY_ENV, "team-secret")
    rec = record.load(model)
    rec.pop("hmac", None)
    record.path_for(model).write_text(json.dumps(record.sign(rec)))
    assert record.check(model).passed
    rec = record.load(model)
    assert rec["hmac"]["alg"] == "hmac-sha256"
    rec["passed"] = True
    rec["summary"]["failures"] = ["edited"]
    record.path_for(model).write_text(json.dumps(rec))
    with pytest.raises(record.DeployRefused, match="signature"):
        record.check(model)
    monkeypatch.setenv(record.KEY_ENV, "another-key")
    with pytest.raises(record.DeployRefused, match="signature"):
        record.check(model)


def test_unsigned_record_is_refused_when_a_key_is_set(model, monkeypatch):
    rec = record.load(model)
    rec.pop("hmac", None)
    record.path_for(model).write_text(json.dumps(rec))
    monkeypatch.setenv(record.KEY_ENV, "team-secret")
    with pytest.raises(record.DeployRefused, match="not signed"):
        record.check(model)
    monkeypatch.delenv(record.KEY_ENV)
    assert record.check(model).passed  # without a key the record is plain JSON, as documented


def test_validate_signs_the_record_when_the_key_is_set(external, monkeypatch):
    monkeypatch.setenv(record.KEY_ENV, "team-secret")
    assert cli.main(["validate", str(external), str(external), "--accept-unverified", "--no-latency"]) == 0
    assert "hmac" in record.load(external) and record.check(external).passed
