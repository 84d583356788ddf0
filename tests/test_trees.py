"""XGBoost, LightGBM and CatBoost converters (and boosters inside sklearn
pipelines): contract kit, detection, native files, bad input, opset cap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

pytest.importorskip("xgboost")
pytest.importorskip("lightgbm")
pytest.importorskip("catboost")
pytest.importorskip("onnxmltools")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import trees_fixtures


@pytest.fixture(scope="module")
def data():
    return trees_fixtures._data()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixtures the main job converts, built once."""
    return trees_fixtures.build(tmp_path_factory.mktemp("trees-fixtures"))


def _iris():
    return trees_fixtures._data()["iris"]


def _xgb_classifier():
    import xgboost

    X, y = _iris()
    return xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0).fit(X, y)


def _lgbm_classifier():
    import lightgbm

    X, y = trees_fixtures._data()["breast_cancer"]
    return lightgbm.LGBMClassifier(n_estimators=10, num_leaves=7, n_jobs=1, verbose=-1).fit(X, y)


def _catboost_classifier():
    import catboost

    X, y = _iris()
    return catboost.CatBoostClassifier(
        iterations=10, depth=3, random_seed=0, thread_count=1, verbose=0, allow_writing_files=False
    ).fit(X, y)


# --- the contract kit, once per converter, each from a native file ---------
class TestXGBoostContract(ConverterContract):
    converter = "xgboost"

    def make_source(self, tmp_path):
        path = tmp_path / "xgb.json"
        _xgb_classifier().save_model(str(path))
        return path


class TestLightGBMContract(ConverterContract):
    converter = "lightgbm"

    def make_source(self, tmp_path):
        path = tmp_path / "lgbm.txt"
        _lgbm_classifier().booster_.save_model(str(path))
        return path


class TestCatBoostContract(ConverterContract):
    converter = "catboost"

    def make_source(self, tmp_path):
        path = tmp_path / "cb.cbm"
        _catboost_classifier().save_model(str(path))
        return path


# --- every model kind, in memory, with synthesised and real inputs --------
def _models(data):
    for name, model, _suffix, X in (
        trees_fixtures.xgboost_models(data)
        + trees_fixtures.lightgbm_models(data)
        + trees_fixtures.catboost_models(data)
    ):
        yield name, model, X
    xgbc, xgbr = trees_fixtures.xgboost_models(data)
    lgbc, lgbr = trees_fixtures.lightgbm_models(data)
    yield "xgboost-booster-multiclass", xgbc[1].get_booster(), xgbc[3]
    yield "xgboost-booster-regressor", xgbr[1].get_booster(), xgbr[3]
    yield "lightgbm-booster-binary", lgbc[1].booster_, lgbc[3]
    yield "lightgbm-booster-regressor", lgbr[1].booster_, lgbr[3]


@pytest.fixture(scope="module")
def all_models(data):
    return {name: (model, X) for name, model, X in _models(data)}


MODEL_NAMES = [
    "xgboost-classifier",
    "xgboost-regressor",
    "lightgbm-classifier",
    "lightgbm-regressor",
    "catboost-classifier",
    "catboost-regressor",
    "xgboost-booster-multiclass",
    "xgboost-booster-regressor",
    "lightgbm-booster-binary",
    "lightgbm-booster-regressor",
]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_in_memory_models_pass_with_real_and_synthesised_inputs(name, all_models, tmp_path):
    from onnxgate.pipeline import convert

    model, X = all_models[name]
    sample = tmp_path / "x.npz"
    np.savez(sample, X=X.astype(np.float32))
    for kwargs in ({"sample": sample}, {}):
        result = convert(model, **kwargs)
        assert result.passed, (name, result.failures)
        assert result.artifact.tree_ensemble
        outputs = [o for o in result.model.graph.output]
        assert all(o.type.HasField("tensor_type") for o in outputs), "classifier outputs must be plain tensors"
        if "classifier" in name or "multiclass" in name or "binary" in name:
            assert [o.name for o in outputs] == ["label", "probabilities"]


def test_binary_xgboost_booster(data):
    import xgboost

    from onnxgate.pipeline import convert

    X, y = data["breast_cancer"]
    booster = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(X, y).get_booster()
    result = convert(booster)
    assert result.passed, result.failures
    probs = [o for c in result.report.cases for o in c.outputs if o.name == "probabilities"]
    assert probs and probs[0].shape[1] == 2


# --- detection --------------------------------------------------------------
def test_objects_are_detected_by_mro_without_sklearn_taking_them(all_models):
    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    specs = Registry().converters()
    expected = {
        "xgboost-classifier": "xgboost",
        "xgboost-booster-regressor": "xgboost",
        "lightgbm-regressor": "lightgbm",
        "lightgbm-booster-binary": "lightgbm",
        "catboost-classifier": "catboost",
        "catboost-regressor": "catboost",
    }
    for name, converter in expected.items():
        assert detect.for_object(all_models[name][0], specs).name == converter, name


def test_native_files_are_detected_by_content(built):
    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    specs = Registry().converters()
    by_name = {e["name"]: Path(e["source"]) for e in built}
    assert detect.for_path(by_name["xgboost-classifier"], specs).name == "xgboost"  # .json
    assert detect.for_path(by_name["xgboost-regressor"], specs).name == "xgboost"  # .ubj
    assert detect.for_path(by_name["lightgbm-classifier"], specs).name == "lightgbm"
    assert detect.for_path(by_name["catboost-regressor"], specs).name == "catboost"


def test_spec_flags_and_requirements():
    from importlib import metadata

    from onnxgate.plugins.manager import Registry

    registry = Registry()
    for name in ("xgboost", "lightgbm", "catboost"):
        spec = registry.converter(name)
        assert spec.tree_ensemble
        for dist in spec.requires:  # names the distribution actually installed here
            metadata.version(dist)
    assert registry.converter("xgboost").requires[0] in ("xgboost", "xgboost-cpu")


# --- bad input: one clean line, exit 2, nothing written -------------------
def _assert_refused(tmp_path, source, *extra, code=2, needle=""):
    out = tmp_path / "out.onnx"
    proc = run_cli("convert", str(source), "-o", str(out), *extra)
    assert_clean_error(proc, code)
    assert not out.exists()
    assert needle.lower() in proc.stderr.lower(), proc.stderr
    return proc


def test_json_that_is_not_xgboost(tmp_path):
    import os

    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"name": "not a model", "layers": [1, 2, 3]}))
    _assert_refused(tmp_path, bad)  # detection: no converter's sniffer accepts it
    _assert_refused(tmp_path, bad, "--framework", "xgboost", needle="not an XGBoost model file")
    bad.write_bytes(b'{"learner": ' + os.urandom(512))  # right start, garbage after
    _assert_refused(tmp_path, bad, "--framework", "xgboost", needle="cannot load as XGBoost")
    bad.write_bytes(os.urandom(1024))
    _assert_refused(tmp_path, bad, "--framework", "xgboost", needle="not an XGBoost model file")


def test_lightgbm_text_cut_in_half(tmp_path):
    path = tmp_path / "model.txt"
    _lgbm_classifier().booster_.save_model(str(path))
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    # LightGBM itself would abort the interpreter on this file; onnxgate refuses it first.
    _assert_refused(tmp_path, path, needle="not a complete LightGBM text model")


def test_lightgbm_structure_check_catches_every_truncation(tmp_path):
    from onnxgate.converters.lightgbm import check_model_text

    path = tmp_path / "model.txt"
    _lgbm_classifier().booster_.save_model(str(path))
    text = path.read_bytes()
    assert check_model_text(text) == ""
    end_of_trees = text.index(b"end of trees")
    for cut in range(20, end_of_trees, max(1, end_of_trees // 50)):
        assert check_model_text(text[:cut]), f"truncation at byte {cut} not caught"
    params = text.index(b"\nparameters:")
    assert "parameters" in check_model_text(text[: params + 40])


@pytest.mark.parametrize("kind", ["random", "json-export", "truncated"])
def test_cbm_of_the_wrong_kind(tmp_path, kind):
    import os

    model = _catboost_classifier()
    path = tmp_path / "model.cbm"
    if kind == "random":
        path.write_bytes(os.urandom(2048))
    elif kind == "json-export":  # a CatBoost model, but its JSON export
        model.save_model(str(path), format="json")
    else:
        model.save_model(str(path))
        path.write_bytes(path.read_bytes()[:4000])
    _assert_refused(tmp_path, path, "--framework", "catboost", needle="catboost")


def test_catboost_categorical_features_are_a_conversion_failure(tmp_path):
    import catboost
    import pandas as pd

    X, y = _iris()
    frame = pd.DataFrame({"a": X[:, 0], "colour": np.array(["red", "blue"])[np.arange(len(y)) % 2]})
    model = catboost.CatBoostClassifier(
        iterations=5, verbose=0, cat_features=["colour"], thread_count=1, allow_writing_files=False
    ).fit(frame, y)
    path = tmp_path / "cat.cbm"
    model.save_model(str(path))
    _assert_refused(tmp_path, path, code=3, needle="categorical features")


# --- outputs and opsets -----------------------------------------------------
def test_catboost_zipmap_is_removed():
    from onnxgate.pipeline import convert

    result = convert(_catboost_classifier())
    assert result.passed, result.failures
    assert "ZipMap" not in {n.op_type for n in result.model.graph.node}
    probs = next(o for o in result.model.graph.output if o.name == "probabilities")
    assert probs.type.tensor_type.elem_type == 1  # float tensor, not seq(map)
    assert any("ZipMap" in note for note in result.artifact.notes)


@pytest.mark.parametrize("make", [_xgb_classifier, _lgbm_classifier])
def test_onnxmltools_opset_cap_is_respected(make):
    from onnxgate.pipeline import convert

    result = convert(make(), opset=18)
    assert result.passed, result.failures
    default = [i.version for i in result.model.opset_import if i.domain in ("", "ai.onnx")]
    assert all(v <= 15 for v in default)
    assert any("onnxmltools supports at most 15" in n for n in result.artifact.notes)


# --- boosters inside scikit-learn pipelines ---------------------------------
@pytest.mark.parametrize("index", [0, 1])
def test_pipeline_with_booster_converts_through_sklearn(index, data):
    from onnxgate.pipeline import convert

    name, model, X = trees_fixtures.pipeline_models(data)[index]
    result = convert(model, sample=None)
    assert result.artifact.converter["name"] == "sklearn"
    assert "onnxmltools" in result.artifact.converter["exporter"]
    assert result.passed, (name, result.failures)
    domains = [i.domain for i in result.model.opset_import]
    assert len(domains) == len(set(domains))


def test_plain_sklearn_pipeline_imports_no_booster_framework():
    code = (
        "import sys\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "from onnxgate.pipeline import convert\n"
        "X, y = load_iris(return_X_y=True)\n"
        "assert convert(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)).passed\n"
        "print(sorted(m for m in ('xgboost', 'lightgbm', 'catboost', 'onnxmltools') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# --- the fixtures the main job runs ----------------------------------------
def test_fixtures_build_and_pass(built):
    from onnxgate.pipeline import convert

    assert len(built) == 8
    for entry in built:
        result = convert(
            entry["source"],
            sample=entry["sample"],
            framework=entry.get("framework"),
            trust_source=entry.get("trust_source", False),
        )
        assert result.passed, (entry["name"], result.failures)


def test_pipeline_skops_needs_trust(tmp_path, built):
    source = next(e["source"] for e in built if e["name"] == "xgboost-pipeline")
    _assert_refused(tmp_path, source, needle="--trust-source")


@pytest.mark.parametrize("as_booster", [False, True])
def test_xgboost_multi_softmax_gives_probabilities(as_booster):
    import xgboost

    from onnxgate.pipeline import convert

    X, y = _iris()
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, objective="multi:softmax").fit(X, y)
    result = convert(model.get_booster() if as_booster else model)
    # onnxmltools would return raw margins under "probabilities" here
    assert result.passed, result.failures
    assert any("SOFTMAX" in n for n in result.artifact.notes)


def test_missing_framework_is_named(monkeypatch):
    """`onnxgate plugins` and convert name the distribution to install."""
    from importlib import metadata

    from onnxgate.pipeline import convert
    from onnxgate.pipeline.cli.plugins import rows
    from onnxgate.plugins.errors import UsageError

    real = metadata.version

    def version(name):
        if name in ("xgboost", "xgboost-cpu", "catboost"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    by_name = {r["name"]: r for r in rows()}
    assert by_name["xgboost"]["missing"] == ["xgboost-cpu"] and not by_name["xgboost"]["usable"]
    assert by_name["catboost"]["missing"] == ["catboost"]
    assert by_name["lightgbm"]["usable"]
    with pytest.raises(UsageError, match=r"onnxgate\[xgboost\]"):
        convert(_xgb_classifier())
