"""LIVE test against a real Azure Machine Learning workspace.

Skipped unless you opt in and give a workspace (it creates billable
resources: a managed online endpoint with one instance):

    export ONNXGATE_AZUREML_LIVE=1
    export AZURE_SUBSCRIPTION_ID=... AZURE_RESOURCE_GROUP=... AZUREML_WORKSPACE=...
    az login        # or AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET
    pytest -q tests/test_azureml_live.py

Optional: ONNXGATE_AZUREML_ENDPOINT (default onnxgate-live-<random>),
ONNXGATE_AZUREML_INSTANCE_TYPE (default Standard_DS3_v2),
ONNXGATE_AZUREML_KEEP=1 to keep the endpoint afterwards (deleted otherwise).
"""

import os
import uuid

import numpy as np
import pytest

REQUIRED = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE")
pytestmark = pytest.mark.skipif(
    os.environ.get("ONNXGATE_AZUREML_LIVE") != "1" or not all(os.environ.get(v) for v in REQUIRED),
    reason="live Azure ML test: set ONNXGATE_AZUREML_LIVE=1 and " + ", ".join(REQUIRED),
)


def test_live_deploy_smoke_test_and_idempotency(tmp_path):
    pytest.importorskip("azure.ai.ml")
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api
    from onnxgate.pipeline.deployment import service as deploy

    X, y = load_iris(return_X_y=True)
    sample = tmp_path / "sample.npy"
    np.save(sample, X[:4].astype(np.float32))
    model = tmp_path / "onnxgate-live-iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample).save(model)

    endpoint = os.environ.get("ONNXGATE_AZUREML_ENDPOINT") or f"onnxgate-live-{uuid.uuid4().hex[:8]}"
    options = {
        "subscription_id": os.environ["AZURE_SUBSCRIPTION_ID"],
        "resource_group": os.environ["AZURE_RESOURCE_GROUP"],
        "workspace": os.environ["AZUREML_WORKSPACE"],
        "endpoint": endpoint,
        "instance_type": os.environ.get("ONNXGATE_AZUREML_INSTANCE_TYPE", "Standard_DS3_v2"),
        "timeout": 3600,
    }
    try:
        first = deploy.deploy(model, "azureml", name="onnxgate-live-iris", options=options)
        assert first["passed"] and first["smoke_test"]["passed"] is True
        second = deploy.deploy(model, "azureml", name="onnxgate-live-iris", options=options)
        assert second["changes"] == [] and second["version"] == first["version"]
    finally:
        if os.environ.get("ONNXGATE_AZUREML_KEEP") != "1":
            client = MLClient(
                DefaultAzureCredential(), options["subscription_id"], options["resource_group"], options["workspace"]
            )
            try:
                client.online_endpoints.begin_delete(endpoint).result(timeout=1800)
            except Exception as exc:  # cleanup is best effort; say so
                print(f"could not delete endpoint {endpoint}: {exc}")
