"""CONTRACT tests of the azureml target's failure handling (issue 12, items
17-20), against the same fake of Azure ML's HTTP layer as
tests/test_azureml_contract.py (the `responses` library). They check the
requests onnxgate sends and how it maps the answers; they do not prove the
live service behaves this way."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed: pip install 'onnxgate[azureml]'")
pytest.importorskip("responses")

from test_azureml_contract import (
    RG,
    SUB,
    WS,
    FakeCredential,
    _answer_like_validated,
    _body,
    _deploy,
    _iris_model,
    _writes,
    fake,
    model,
)

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.deployment import azureml as deploy_azureml
from onnxgate.pipeline.deployment import record
from onnxgate.plugins.errors import UsageError

__all__ = ["fake", "model"]  # pytest fixtures, imported for use here

AZ = ["--target", "azureml", "--subscription-id", SUB, "--resource-group", RG, "--workspace", WS]


def _cli(model_path, monkeypatch, *extra):
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda **kw: FakeCredential())
    return cli.main(["deploy", str(model_path), "--name", "iris", *AZ, *extra])


# ---- item 17: scoring errors ------------------------------------------------------------------
def test_contract_408_from_scoring_is_reported_as_a_timeout(model, fake, monkeypatch, capsys):
    fake.score = lambda body: (408, {"message": "request timed out"})
    code = _cli(model, monkeypatch)
    err = capsys.readouterr().err
    assert code == 3, err
    assert "timed out" in err and "408" in err and "TypeError" not in err
    assert "--request-timeout" in err  # says what to change
    assert len(err.strip().splitlines()) == 1


def test_contract_401_from_scoring_says_the_endpoint_rejected_the_key(model, fake, monkeypatch, capsys):
    fake.score = lambda body: (401, {"message": "unauthorized"})
    code = _cli(model, monkeypatch)
    err = capsys.readouterr().err
    assert code == 3 and "the endpoint rejected the key" in err, err
    assert "az login" not in err and "AZURE_CLIENT_SECRET" not in err


@pytest.mark.parametrize(
    "status,body",
    [
        (502, {"message": "upstream connect error"}),
        (503, "<html><head><title>503 Service Unavailable</title></head><body><h1>oops</h1></body></html>"),
        (500, {"message": "An unexpected error occurred in scoring script"}),
    ],
)
def test_contract_service_failures_from_scoring_exit_3_in_one_line(model, fake, monkeypatch, capsys, status, body):
    fake.score = lambda b: (status, body)
    code = _cli(model, monkeypatch)
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"HTTP {status}" in err and "<html" not in err and "<h1>" not in err
    assert len(err.strip().splitlines()) == 1


def test_contract_smoke_mismatch_exits_1_through_the_cli(model, fake, monkeypatch, capsys):
    rec = record.load(model)
    wrong = json.loads(json.dumps(rec["smoke"]["response"]))
    wrong["outputs"]["probabilities"][0][0] += 0.3
    fake.score = lambda body: (200, wrong)
    assert _cli(model, monkeypatch) == 1
    assert "smoke test failed" in capsys.readouterr().err


def test_contract_request_settings_default_and_from_options(model, fake):
    _deploy(model, fake)
    settings = _body(fake, "PUT", "/deployments/blue")["properties"]["requestSettings"]
    assert settings["requestTimeout"] == "PT1M30S"  # 90 s: Azure's 5 s default is too short for large models
    assert settings["maxConcurrentRequestsPerInstance"] == deploy_azureml.DEFAULT_MAX_CONCURRENT
    fake.calls.clear()
    _deploy(model, fake, request_timeout=120, max_concurrent_requests=4)
    settings = _body(fake, "PUT", "/deployments/blue")["properties"]["requestSettings"]
    assert settings["requestTimeout"] == "PT2M" and settings["maxConcurrentRequestsPerInstance"] == 4


def test_contract_request_settings_out_of_range_send_nothing(model, fake):
    for opts in ({"request_timeout": 0}, {"request_timeout": 181}, {"max_concurrent_requests": 0}):
        with pytest.raises(UsageError):
            _deploy(model, fake, **opts)
    assert fake.calls == []


def test_contract_request_settings_from_the_cli(model, fake, monkeypatch):
    fake.score = _answer_like_validated(model)
    assert _cli(model, monkeypatch, "--request-timeout", "45", "--max-concurrent-requests", "2") == 0
    settings = _body(fake, "PUT", "/deployments/blue")["properties"]["requestSettings"]
    assert settings["requestTimeout"] == "PT45S" and settings["maxConcurrentRequestsPerInstance"] == 2


# ---- item 18: names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option,value",
    [
        ("--endpoint", "1-starts-with-a-digit"),
        ("--endpoint", "under_score"),
        ("--endpoint", "ab"),
        ("--endpoint", "x" * 33),
        ("--endpoint", "ends-with-"),
        ("--deployment", "Blue_1"),
        ("--deployment", "b"),
        ("--deployment", "9lives"),
        ("--deployment", "d" * 33),
    ],
)
def test_contract_invalid_names_fail_the_dry_run_and_send_nothing(model, fake, monkeypatch, capsys, option, value):
    for dry in (["--dry-run"], []):
        code = _cli(model, monkeypatch, option, value, *dry)
        err = capsys.readouterr().err
        assert code == 2 and value in err and "3-32" in err, err
    assert fake.calls == []  # nothing created before the name was checked


# ---- item 19: archived versions ---------------------------------------------------------------
def _archive_all(fake):
    for versions in fake.models.values():
        for doc in versions.values():
            doc["properties"]["isArchived"] = True


def test_contract_archived_version_with_the_same_bytes_is_reused(model, fake):
    _deploy(model, fake)
    _archive_all(fake)
    fake.calls.clear()
    result = _deploy(model, fake)
    assert result["version"] == "1"
    assert not [p for _m, p in _writes(fake) if "/models/" in p]
    lists = [q for m, p, q, _b in fake.calls if m == "GET" and p.endswith("/models/iris/versions")]
    assert lists and all(q.get("listViewType") == ["All"] for q in lists)


def test_contract_next_version_counts_archived_versions(tmp_path, fake):
    first = _iris_model(tmp_path, "a.onnx", C=1.0)
    second = _iris_model(tmp_path, "b.onnx", C=0.01)
    _deploy(first, fake)
    _archive_all(fake)  # the newest version is archived
    fake.score = _answer_like_validated(second)
    result = _deploy(second, fake)
    assert result["version"] == "2" and sorted(fake.models["iris"]) == ["1", "2"]


def test_contract_model_name_rules():
    with pytest.raises(UsageError, match="3-32"):
        deploy_azureml.check_name("deployment", "-x-")
    assert deploy_azureml.check_name("deployment", "green-2") == "green-2"


# ---- item 3 in Azure: external-data files are registered with the model -----------------------
def test_contract_external_data_files_are_uploaded_with_the_model(tmp_path, fake):
    from test_hostile_record import _external_model

    path = _external_model(tmp_path)
    assert cli.main(["validate", str(path), str(path), "--accept-unverified", "--no-latency"]) == 0
    fake.score = _answer_like_validated(path)
    _deploy(path, fake, name="ext")
    uploaded = {k.rsplit("/", 1)[-1]: v["data"] for k, v in fake.blobs.items() if "LocalUpload" in k}
    assert uploaded.get("model.onnx") == path.read_bytes()
    assert uploaded.get("w.bin") == (tmp_path / "w.bin").read_bytes()
