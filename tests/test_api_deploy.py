"""Results a person can look at, and deploy from Python.

Local deploys run the real Azure ML inference server from the serving venv
(under $ONNXGATE_HOME, created when missing as in test_serve_local.py); the
Azure ML deploy is a CONTRACT test against the fake HTTP layer of
tests/test_azureml_contract.py, with an MLClient built by the caller.
"""

import json
import urllib.request

import numpy as np
import onnx
import pytest

from onnxgate.pipeline import (
    AzureMLDeployment,
    DeployRefused,
    LocalDeployment,
    Tolerance,
    UsageError,
    convert,
    deploy,
)
from onnxgate.pipeline.envs import serving as serving_env

FAST = dict(latency=False, sweep=False)


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    return model, X, convert(model, sample=X[:10], **FAST)


@pytest.fixture(scope="module")
def venv():
    return serving_env.create(quiet=True)  # no-op when ready


# ---- Result -----------------------------------------------------------------------
def test_repr_is_one_line_summary(iris):
    _model, _X, result = iris
    text = repr(result)
    assert "\n" not in text
    assert text.startswith("<Result PASSED: scikit-learn via sklearn (skl2onnx)")
    assert "cases" in text and "max abs err" in text


def test_repr_of_a_failed_result_names_the_first_failure(iris):
    model, X, _result = iris
    failed = convert(model, sample=X[:10], expected={"label": np.full(10, 99)}, **FAST)  # labels it never gives
    assert not failed.passed
    assert "FAILED" in repr(failed) and "failure" in repr(failed)


def test_repr_html_embeds_the_self_contained_report(iris):
    _model, _X, result = iris
    html = result._repr_html_()
    assert html.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in html
    import html as html_mod

    page = html_mod.unescape(html.split('srcdoc="', 1)[1].split('" sandbox=', 1)[0])
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "PASSED" in page.upper() and "probabilities" in page and "Content-Security-Policy" in page


def test_onnx_bytes_session_and_save(iris, tmp_path):
    _model, X, result = iris
    data = result.onnx_bytes()
    assert onnx.load_from_string(data).graph.output[0].name == "label"
    session = result.session()
    label, proba = session.run(None, {"X": X[:5].astype(np.float32)})
    np.testing.assert_allclose(proba, iris[0].predict_proba(X[:5]), rtol=1e-4, atol=1e-5)
    result.save(tmp_path / "iris.onnx")
    assert (tmp_path / "iris.onnx").read_bytes() == data
    assert (tmp_path / "iris.onnx.onnxgate.json").is_file()


# ---- local deploy: the real server ---------------------------------------------------
def test_result_deploy_local_predict_and_stop(iris, venv, tmp_path):
    model, X, result = iris
    lines = []
    handle = result.deploy("local", registry=tmp_path / "registry", name="iris", log=lines.append)
    try:
        assert isinstance(handle, LocalDeployment) and handle.running
        assert handle.url.startswith("http://127.0.0.1:") and handle.url.endswith("/score")
        assert handle.version == 1 and handle.smoke_test["passed"] is True
        assert any("registered iris version 1" in line for line in lines)
        out = handle.predict(X[:6])  # float64 rows: cast to the model's float32 input
        np.testing.assert_array_equal(out["label"], model.predict(X[:6]))
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(X[:6]), rtol=1e-4, atol=1e-5)
        assert handle.predict({"X": X[:2].tolist()})["label"].shape == (2,)
        import pandas as pd
        import torch

        for form in (pd.DataFrame(X[:3]), torch.tensor(X[:3])):  # every in-memory form predicts too
            np.testing.assert_array_equal(handle.predict(form)["label"], model.predict(X[:3]))
        with pytest.raises(UsageError, match="a set is not usable"):
            handle.predict({1, 2})
        with pytest.raises(UsageError, match=r"HTTP 400.*expects \[None, 4\]"):
            handle.predict(np.ones((2, 3)))
        pid = handle.server.pid
    finally:
        handle.stop()
    assert not handle.running and handle.server.process.poll() is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(handle.url.replace("/score", "/"), timeout=2)
    with pytest.raises(UsageError, match="not running"):
        handle.predict(X[:1])
    handle.stop()  # idempotent
    assert pid > 0


def test_deploy_path_as_context_manager_reuses_the_registered_version(iris, venv, tmp_path):
    _model, X, result = iris
    path = tmp_path / "iris.onnx"
    result.save(path)
    registry = tmp_path / "registry"
    with deploy(path, registry=registry, log=lambda line: None) as first:
        assert first.name == "iris" and first.version == 1
        answer = first.predict(X[:3].astype(np.float32))
    assert not first.running
    with deploy(str(path), registry=registry, log=lambda line: None) as again:
        assert again.version == 1 and again.result["registered"] is False  # same bytes, same version
        np.testing.assert_array_equal(again.predict(X[:3])["label"], answer["label"])
    assert not again.running


def test_keep_running_false_smoke_tests_then_stops(iris, venv, tmp_path):
    _model, _X, result = iris
    handle = deploy(result, registry=tmp_path / "r", keep_running=False, name="iris", log=lambda line: None)
    assert not handle.running and handle.result["running"] is False and handle.smoke_test["passed"] is True


def test_failed_result_is_refused_as_on_the_cli(iris, tmp_path):
    model, X, _result = iris
    failed = convert(model, sample=X[:10], expected={"label": np.full(10, 99)}, **FAST)
    assert not failed.passed
    with pytest.raises(DeployRefused, match="validation failed.*--deploy-unvalidated-i-know-what-im-doing"):
        failed.deploy("local", registry=tmp_path / "registry", log=lambda line: None)
    assert not (tmp_path / "registry" / "model").exists()


def test_unvalidated_file_is_refused(tmp_path, iris):
    path = tmp_path / "bare.onnx"
    path.write_bytes(iris[2].onnx_bytes())  # no record beside it
    with pytest.raises(DeployRefused, match="no validation record"):
        deploy(path, registry=tmp_path / "registry", log=lambda line: None)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(target="local", endpoint="x"), "endpoint: not an option of target 'local'"),
        (dict(target="azureml", registry="/tmp/r", dry_run=True), "registry: not an option of target 'azureml'"),
        (dict(target="nowhere"), "nowhere"),
        (
            dict(target="azureml", traffic=120, subscription_id="s", resource_group="r", workspace="w", dry_run=True),
            "traffic=120: must be 0..100",
        ),
    ],
)
def test_bad_deploy_options_are_usage_errors(iris, tmp_path, kwargs, needle):
    target = kwargs.pop("target")
    with pytest.raises(UsageError, match=needle):
        iris[2].deploy(target, log=lambda line: None, **kwargs)


def test_not_a_model_is_a_usage_error():
    with pytest.raises(UsageError, match="a dict is not deployable"):
        deploy({"not": "a model"})


# ---- Azure ML -------------------------------------------------------------------------
def test_azureml_dry_run_from_python_sends_nothing(iris):
    lines = []
    plan = iris[2].deploy(
        "azureml",
        dry_run=True,
        name="iris",
        subscription_id="sub-1",
        resource_group="rg",
        workspace="ws",
        traffic=20,
        log=lines.append,
    )
    assert isinstance(plan, AzureMLDeployment) and plan.dry_run
    assert plan.endpoint == "onnxgate-iris" and plan.scoring_uri is None
    assert any("endpoint: onnxgate-iris" in step for step in plan.plan) and lines


def test_contract_azureml_deploy_with_the_callers_mlclient(tmp_path):
    """CONTRACT (fake Azure ML HTTP layer): the caller's MLClient is used as is,
    the workspace comes from it, and the handle carries endpoint, URI, deployment."""
    pytest.importorskip("azure.ai.ml")
    responses = pytest.importorskip("responses")
    from azure.ai.ml import MLClient
    from test_azureml_contract import RG, SUB, WS, FakeAzureML, FakeCredential, _answer_like_validated, _iris_model

    path = _iris_model(tmp_path)
    fake = FakeAzureML()
    fake.score = _answer_like_validated(path)
    client = MLClient(FakeCredential(), SUB, RG, WS, show_progress=False, enable_telemetry=False)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        fake.install(rs)
        handle = deploy(path, "azureml", ml_client=client, name="iris", timeout=60, log=lambda line: None)
    assert fake.unexpected == []
    assert isinstance(handle, AzureMLDeployment)
    assert handle.endpoint == "onnxgate-iris" and handle.deployment == "blue"
    assert handle.scoring_uri == "https://onnxgate-iris.westeurope.inference.ml.azure.com/score"
    assert handle.version == "1" and handle.smoke_test["passed"] is True
    assert all(SUB in p and WS in p for _m, p, _q, _b in fake.calls if p.startswith("management.azure.com"))
    assert json.loads(json.dumps(handle.result))  # the result stays plain JSON: the client is not in it


def test_tolerance_is_exported():
    assert Tolerance(rtol=1e-3).atol == 1e-5


def test_register_without_serving(iris, tmp_path):
    from onnxgate.pipeline import register

    first = register(iris[2], name="iris", registry=tmp_path / "registry")
    assert first.created and first.version == 1 and first.model_path.read_bytes() == iris[2].onnx_bytes()
    again = register(iris[2], name="iris", registry=tmp_path / "registry")
    assert not again.created and again.version == 1
    failed = convert(iris[0], sample=iris[1][:10], expected={"label": np.full(10, 99)}, **FAST)
    with pytest.raises(DeployRefused):
        register(failed, name="iris", registry=tmp_path / "registry")
    assert [p.name for p in (tmp_path / "registry" / "iris").iterdir() if p.name.isdigit()] == ["1"]


def test_local_dry_run_from_python_starts_nothing(iris, tmp_path):
    plan = deploy(iris[2], registry=tmp_path / "registry", name="iris", dry_run=True, log=lambda line: None)
    assert plan.dry_run and not plan.running and any("register iris" in step for step in plan.plan)
    assert not (tmp_path / "registry" / "iris").exists()
