"""The deployable package, its score.py (run in-process on a real onnxruntime
session) and the local file registry."""

import importlib.util
import json
import threading

import numpy as np
import pytest

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.deployment import package, record
from onnxgate.pipeline.deployment.registry import LocalRegistry
from onnxgate.plugins.errors import UsageError


@pytest.fixture
def model(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    X, y = load_iris(return_X_y=True)
    sample = tmp_path / "sample.npy"
    np.save(sample, X[:5].astype(np.float32))
    path = tmp_path / "iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample).save(path)
    return path


@pytest.fixture
def pkg(model, tmp_path):
    return package.build(record.check(model), tmp_path / "pkg")


def _load_score(pkg, monkeypatch):
    """Import the package's score.py as Azure's server does, and init() it."""
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(pkg / "model"))
    spec = importlib.util.spec_from_file_location("onnxgate_test_score", pkg / "code" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


def test_package_layout_pins_and_hashes(pkg, model):
    import onnxruntime

    rec = record.load(model)
    assert (pkg / "model" / "model.onnx").read_bytes() == model.read_bytes()
    assert (pkg / "code" / "score.py").read_bytes() == package.SCORE_TEMPLATE.read_bytes()
    settings = json.loads((pkg / "code" / "onnxgate-serving.json").read_text())
    assert settings["sha256"] == rec["model"]["sha256"] and settings["model_file"] == "model.onnx"
    conda = (pkg / "environment" / "conda.yaml").read_text()
    assert f"onnxruntime=={onnxruntime.__version__}" in conda and "azureml-inference-server-http==1.5.1" in conda
    assert f"onnxruntime=={onnxruntime.__version__}" in (pkg / "environment" / "requirements.txt").read_text()
    assert json.loads((pkg / "sample-request.json").read_text()) == rec["smoke"]["request"]
    assert json.loads((pkg / "expected-response.json").read_text()) == rec["smoke"]["response"]
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["model_sha256"] == rec["model"]["sha256"]
    assert manifest["files"]["model/model.onnx"] == rec["model"]["sha256"]
    assert not [p for p in pkg.parent.iterdir() if p.name.startswith(".pkg.")]  # no temp folder left


def test_package_refuses_a_non_empty_output(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        package.build(record.check(model), out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_cli_package(model, tmp_path, capsys):
    assert cli.main(["package", str(model), "-o", str(tmp_path / "p")]) == 0
    assert "PACKAGED" in capsys.readouterr().out
    assert (tmp_path / "p" / "code" / "score.py").is_file()


def test_score_answers_the_sample_like_the_validated_model(pkg, monkeypatch):
    score = _load_score(pkg, monkeypatch)
    request = (pkg / "sample-request.json").read_text()
    status, body = score.score(request)
    assert status == 200
    # through JSON, exactly as over HTTP
    assert json.loads(json.dumps(body)) == json.loads((pkg / "expected-response.json").read_text())


BAD_REQUESTS = [
    ("{not json", 400, "not valid JSON"),
    ("[1, 2]", 400, "expected a JSON object"),
    ('{"data": [[1, 2, 3, 4]]}', 400, "expected a JSON object"),
    ('{"inputs": {}}', 400, "missing ['X']"),
    ('{"inputs": {"X": [[1, 2, 3, 4]], "Y": [1]}}', 400, "unknown ['Y']"),
    ('{"inputs": {"X": [1, 2, 3, 4]}}', 400, "expects rank 2"),
    ('{"inputs": {"X": [[1, 2, 3]]}}', 400, "the model expects [None, 4]"),
    ('{"inputs": {"X": [[1, 2], [3, 4, 5, 6]]}}', 400, "not a rectangular array"),
    ('{"inputs": {"X": [["a", "b", "c", "d"]]}}', 400, "must hold numbers"),
    ('{"inputs": {"X": [[{"a": 1}, 2, 3, 4]]}}', 400, "not a rectangular array of numbers"),
    ('{"inputs": {"X": [[null, 2, 3, 4]]}}', 400, "not a rectangular array of numbers"),
]


@pytest.mark.parametrize("body,status,message", BAD_REQUESTS)
def test_score_rejects_bad_requests_with_4xx_and_a_message(pkg, monkeypatch, body, status, message):
    score = _load_score(pkg, monkeypatch)
    got, answer = score.score(body)
    assert got == status and message in answer["message"], answer


def test_score_limits_payload_size(pkg, monkeypatch):
    score = _load_score(pkg, monkeypatch)
    score._settings["max_request_bytes"] = 1000
    status, answer = score.score(json.dumps({"inputs": {"X": [[1.0, 2.0, 3.0, 4.0]] * 100}}))
    assert status == 413 and "limit is 1000" in answer["message"]


def test_score_refuses_to_start_on_other_bytes(pkg, monkeypatch):
    model = pkg / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(RuntimeError, match="is not the packaged model"):
        _load_score(pkg, monkeypatch)


def test_score_integer_inputs_are_checked(tmp_path, monkeypatch):
    """An int64 input: floats with a fraction and out-of-range values are 400s."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["i"], ["o"])],
        "g",
        [helper.make_tensor_value_info("i", TensorProto.INT32, [None, 2])],
        [helper.make_tensor_value_info("o", TensorProto.INT32, [None, 2])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "int.onnx"
    onnx.save(m, path)
    gate = record.check(path, allow_unvalidated=True)
    score = _load_score(package.build(gate, tmp_path / "ipkg"), monkeypatch)
    assert score.score('{"inputs": {"i": [[1, 2]]}}') == (200, {"outputs": {"o": [[1, 2]]}})
    assert score.score('{"inputs": {"i": [[1.0, 2.0]]}}')[0] == 200
    status, answer = score.score('{"inputs": {"i": [[1.5, 2]]}}')
    assert status == 400 and "integers" in answer["message"]
    status, answer = score.score('{"inputs": {"i": [[1, 99999999999]]}}')
    assert status == 400 and "out of range" in answer["message"]


# ---- the local file registry ------------------------------------------------------------
def test_registry_numbers_versions_and_reuses_same_bytes(model, tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    first = reg.register(record.check(model), "iris")
    again = reg.register(record.check(model), "iris")
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    model.write_bytes(model.read_bytes() + b"\0")
    changed = reg.register(record.check(model, allow_unvalidated=True), "iris")
    assert (changed.version, changed.created) == (2, True)
    assert changed.meta["tags"]["onnxgate.override"] == record.OVERRIDE_FLAG
    assert reg.get("iris", 1).model_path.read_bytes() != reg.get("iris", 2).model_path.read_bytes()
    assert reg.get("iris").version == 2
    assert reg.get("iris", 1).record["passed"] is True
    assert [v.version for v in reg.versions("iris")] == [1, 2]


def test_registry_never_overwrites_a_version(model, tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    v1 = reg.register(record.check(model), "iris")
    before = v1.model_path.read_bytes()
    (tmp_path / "reg" / "iris" / "2").mkdir()  # a version folder someone left half-made
    (tmp_path / "reg" / "iris" / "2" / "junk").write_text("x")
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(UsageError, match="cannot write"):  # renaming onto an existing version fails
        reg.register(record.check(model, allow_unvalidated=True), "iris")
    assert v1.model_path.read_bytes() == before
    assert (tmp_path / "reg" / "iris" / "2" / "junk").read_text() == "x"
    assert not [p for p in (tmp_path / "reg" / "iris").iterdir() if p.name.startswith(".register.")]


def test_registry_concurrent_registrations_of_same_bytes_give_one_version(model, tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    gate = record.check(model)
    got = []
    threads = [threading.Thread(target=lambda: got.append(reg.register(gate, "iris").version)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [1] * 6 and [v.version for v in reg.versions("iris")] == [1]


def test_registry_rejects_bad_names(model, tmp_path):
    with pytest.raises(UsageError, match="model name"):
        LocalRegistry(tmp_path / "reg").register(record.check(model), "../escape")


def test_zipmap_outputs_travel_as_objects_and_compare(tmp_path, monkeypatch):
    """A sequence-of-maps output (skl2onnx's ZipMap, CatBoost) goes through the
    record, score.py and the smoke comparison."""
    import onnx
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline.core.artifact import Case
    from onnxgate.pipeline.deployment import serve

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    onx = to_onnx(LogisticRegression(max_iter=500).fit(X, y), X[:1])  # ZipMap on
    path = tmp_path / "zip.onnx"
    onnx.save(onx, path)
    smoke = record.smoke_sample(path.read_bytes(), [Case(name="c", inputs={"X": X[:3]})])
    probs = smoke["response"]["outputs"]["output_probability"]
    assert isinstance(probs[0], dict) and sorted(probs[0]) == ["0", "1", "2"]
    rec = {
        "passed": True,
        "smoke": smoke,
        "tolerance": {"rtol": 1e-4, "atol": 1e-5},
        "validated_with": {"onnxruntime": __import__("onnxruntime").__version__},
    }
    gate = record.Gate(path, sha256_path(path), rec)
    score = _load_score(package.build(gate, tmp_path / "zpkg"), monkeypatch)
    status, answer = score.score(json.dumps(smoke["request"]))
    assert status == 200
    assert serve.compare_response(json.loads(json.dumps(answer)), smoke, rec["tolerance"]).passed
    answer["outputs"]["output_probability"][0]["1"] += 0.1
    assert not serve.compare_response(answer, smoke, rec["tolerance"]).passed
