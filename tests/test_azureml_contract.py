"""CONTRACT tests of the azureml deploy target against a fake of Azure ML.

These check the requests onnxgate makes through azure-ai-ml (sequence,
bodies, uploaded bytes) and how it handles the answers and failures. The fake
sits at the `requests` level (the `responses` library), so blob uploads are
seen too, and any request it does not expect fails the test. They do NOT
prove that the live service accepts the deployment: tests/test_azureml_live.py
does that for a user with a subscription. The fake's answers carry the fields
azure-ai-ml 1.35 parses, hence the pin `azure-ai-ml>=1.35,<2`.
"""

import base64
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pytest.importorskip("azure.ai.ml", reason="the azureml extra is not installed: pip install 'onnxgate[azureml]'")
responses = pytest.importorskip("responses")

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.deployment import azureml as deploy_azureml
from onnxgate.pipeline.deployment import record
from onnxgate.pipeline.deployment.serve import SmokeTestFailed
from onnxgate.pipeline.deployment.service import DeployError, DeployRequest
from onnxgate.plugins.errors import UsageError

TOKEN = "FAKE-TOKEN-s3cr3t-0123456789"


# ---- the fake --------------------------------------------------------------
SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg-onnxgate", "ws-onnxgate"
ARM = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
ACCOUNT, CONTAINER = "fakestore", "azureml-blobstore-0001"
BLOB = f"https://{ACCOUNT}.blob.core.windows.net"
SCORING = "https://{ep}.westeurope.inference.ml.azure.com/score"
ENDPOINT_KEY = "FAKE-ENDPOINT-KEY-k3y"
ACCOUNT_KEY = base64.b64encode(b"FAKE-ACCOUNT-KEY").decode()


def _sys():
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    return {
        "createdAt": now,
        "createdBy": "fake",
        "createdByType": "User",
        "lastModifiedAt": now,
        "lastModifiedBy": "fake",
        "lastModifiedByType": "User",
    }


class FakeAzureML:
    def __init__(self, score=None):
        self.calls = []  # (method, path, query, body)
        self.unexpected = []
        self.models, self.envs, self.endpoints, self.deployments, self.codes = {}, {}, {}, {}, {}
        self.blobs = {}
        self.fail = {}  # (method, path-regex) -> (status, error json)
        self.lro_fail = set()  # resource kinds whose LRO ends Failed
        self.score = score  # callable(body)->(status, json)
        self.ops = {}
        self.score_deployments = []  # the deployment each scoring call asked for

    def install(self, rs):
        for m in ("GET", "PUT", "POST", "HEAD", "DELETE", "PATCH"):
            rs.add_callback(m, re.compile(r"https://.*"), callback=self._dispatch)

    def _dispatch(self, req):
        u = urlparse(req.url)
        body = req.body
        if isinstance(body, str):
            body = body.encode()
        if body is not None and not isinstance(body, bytes):
            body = b"".join(body) if hasattr(body, "__iter__") else body.read()
        self.calls.append((req.method, u.netloc + u.path, parse_qs(u.query), body))
        for (m, pat), answer in self.fail.items():
            if m == req.method and re.search(pat, u.path):
                return answer[0], {"Content-Type": "application/json"}, json.dumps(answer[1])
        try:
            return self._route(req.method, u, body, req.headers)
        except _Unexpected:
            self.unexpected.append(f"{req.method} {req.url}")
            return (
                400,
                {"Content-Type": "application/json"},
                json.dumps({"error": {"code": "Unexpected", "message": "not expected by the fake"}}),
            )

    def _json(self, status, obj, headers=None):
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj)

    def _404(self, what):
        return self._json(404, {"error": {"code": "UserError", "message": f"{what} not found"}})

    def _route(self, method, u, body, headers):
        host, path = u.netloc, u.path
        if host == f"{ACCOUNT}.blob.core.windows.net":
            return self._blob(method, u, body)
        if host.endswith("inference.ml.azure.com") and method == "POST" and path == "/score":
            return self._score(host, body, headers)
        if host != "management.azure.com":
            raise _Unexpected()
        base = urlparse(ARM).path
        if not path.startswith(base):
            raise _Unexpected()
        rel = path[len(base) :]
        for pattern, handler in self._routes():
            m = re.fullmatch(pattern, rel)
            if m and handler[0] == method:
                return handler[1](body, parse_qs(u.query), *m.groups())
        raise _Unexpected()

    def _routes(self):
        return [
            (r"", ("GET", self._workspace)),
            (r"/onlineEndpoints/([^/]+)", ("GET", self._get_endpoint)),
            (r"/onlineEndpoints/([^/]+)", ("PUT", self._put_endpoint)),
            (r"/onlineEndpoints/([^/]+)/deployments", ("GET", self._list_deployments)),
            (r"/onlineEndpoints/([^/]+)/deployments/([^/]+)", ("GET", self._get_deployment)),
            (r"/onlineEndpoints/([^/]+)/deployments/([^/]+)", ("PUT", self._put_deployment)),
            (r"/onlineEndpoints/([^/]+)/listKeys", ("POST", self._list_keys)),
            (r"/operations/([^/]+)", ("GET", self._operation)),
            (r"/models/([^/]+)/versions", ("GET", self._list_models)),
            (r"/models/([^/]+)/versions/([^/]+)", ("GET", self._get_model)),
            (r"/models/([^/]+)/versions/([^/]+)", ("PUT", self._put_model)),
            (r"/datastores/workspaceblobstore", ("GET", self._datastore)),
            (r"/datastores/workspaceblobstore/listSecrets", ("POST", self._secrets)),
            (r"/environments/([^/]+)/versions/([^/]+)", ("GET", self._get_env)),
            (r"/environments/([^/]+)/versions/([^/]+)", ("PUT", self._put_env)),
            (r"/codes/([^/]+)/versions", ("GET", self._list_codes)),
            (r"/codes/([^/]+)/versions/([^/]+)", ("GET", self._get_code)),
            (r"/codes/([^/]+)/versions/([^/]+)", ("PUT", self._put_code)),
            (r"/codes/([^/]+)/versions/([^/]+)/startPendingUpload", ("POST", self._pending_upload)),
        ]

    # --- resources --------------------------------------------------------
    def _resource(self, rel, name, body, extra_props=None):
        doc = json.loads(body) if body else {}
        doc.update(id=urlparse(ARM).path + rel, name=name, systemData=_sys())
        doc.setdefault("properties", {}).update(extra_props or {})
        return doc

    def _workspace(self, body, q):
        return self._json(
            200,
            {
                "id": urlparse(ARM).path,
                "name": WS,
                "location": "westeurope",
                "type": "Microsoft.MachineLearningServices/workspaces",
                "properties": {"friendlyName": WS},
                "systemData": _sys(),
            },
        )

    def _lro(self, status_code, doc, kind):
        op = f"op{len(self.ops) + 1}"
        self.ops[op] = kind
        url = f"{ARM}/operations/{op}?api-version=2023-01-01"
        return self._json(status_code, doc, {"Azure-AsyncOperation": url, "Retry-After": "0"})

    def _operation(self, body, q, op):
        kind = self.ops.get(op)
        if kind is None:
            raise _Unexpected()
        if kind in self.lro_fail:
            return self._json(
                200,
                {
                    "status": "Failed",
                    "error": {
                        "code": "DeploymentFailed",
                        "message": f"fake {kind} failure: container crashed (ImageBuildFailure)",
                    },
                },
            )
        return self._json(200, {"status": "Succeeded"})

    def _get_endpoint(self, body, q, ep):
        return self._json(200, self.endpoints[ep]) if ep in self.endpoints else self._404(f"endpoint {ep}")

    def _put_endpoint(self, body, q, ep):
        doc = self._resource(
            f"/onlineEndpoints/{ep}",
            ep,
            body,
            {
                "provisioningState": "Succeeded",
                "scoringUri": SCORING.format(ep=ep),
                "swaggerUri": SCORING.format(ep=ep).replace("/score", "/swagger.json"),
            },
        )
        doc.setdefault("location", "westeurope")
        doc["properties"].setdefault("traffic", {})
        new = ep not in self.endpoints
        self.endpoints[ep] = doc
        return self._lro(201 if new else 200, doc, "endpoint")

    def _list_deployments(self, body, q, ep):
        return self._json(200, {"value": [d for (e, _), d in self.deployments.items() if e == ep]})

    def _get_deployment(self, body, q, ep, name):
        d = self.deployments.get((ep, name))
        return self._json(200, d) if d else self._404(f"deployment {name}")

    def _put_deployment(self, body, q, ep, name):
        if ep not in self.endpoints:
            return self._404(f"endpoint {ep}")
        doc = self._resource(
            f"/onlineEndpoints/{ep}/deployments/{name}", name, body, {"provisioningState": "Succeeded"}
        )
        doc.setdefault("location", "westeurope")
        doc["properties"].setdefault("scaleSettings", {"scaleType": "Default"})
        new = (ep, name) not in self.deployments
        self.deployments[(ep, name)] = doc
        return self._lro(201 if new else 200, doc, "deployment")

    def _list_keys(self, body, q, ep):
        if ep not in self.endpoints:
            return self._404(f"endpoint {ep}")
        return self._json(200, {"primaryKey": ENDPOINT_KEY, "secondaryKey": ENDPOINT_KEY + "2"})

    def _list_models(self, body, q, name):
        versions = list(self.models.get(name, {}).values())
        view = (q.get("listViewType") or ["ActiveOnly"])[0]
        if view == "ActiveOnly":  # Azure's default hides archived versions
            versions = [d for d in versions if not d["properties"].get("isArchived")]
        elif view == "ArchivedOnly":
            versions = [d for d in versions if d["properties"].get("isArchived")]
        if "$orderBy" in q:
            versions = sorted(versions, key=lambda d: int(d["name"]), reverse=True)[:1]
        return self._json(200, {"value": versions})

    def _get_model(self, body, q, name, version):
        d = self.models.get(name, {}).get(version)
        return self._json(200, d) if d else self._404(f"model {name}:{version}")

    def _put_model(self, body, q, name, version):
        if version in self.models.get(name, {}):
            return self._json(409, {"error": {"code": "Conflict", "message": "version exists"}})
        doc = self._resource(f"/models/{name}/versions/{version}", version, body)
        doc["properties"].setdefault("flavors", {})
        self.models.setdefault(name, {})[version] = doc
        return self._json(201, doc)

    def _datastore(self, body, q):
        return self._json(
            200,
            {
                "id": urlparse(ARM).path + "/datastores/workspaceblobstore",
                "name": "workspaceblobstore",
                "systemData": _sys(),
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": ACCOUNT,
                    "containerName": CONTAINER,
                    "endpoint": "core.windows.net",
                    "protocol": "https",
                    "isDefault": True,
                    "credentials": {"credentialsType": "AccountKey"},
                },
            },
        )

    def _secrets(self, body, q):
        return self._json(200, {"secretsType": "AccountKey", "key": ACCOUNT_KEY})

    def _get_env(self, body, q, name, version):
        d = self.envs.get((name, version))
        return self._json(200, d) if d else self._404(f"environment {name}:{version}")

    def _put_env(self, body, q, name, version):
        doc = self._resource(f"/environments/{name}/versions/{version}", version, body)
        self.envs[(name, version)] = doc
        return self._json(201, doc)

    def _list_codes(self, body, q, name):
        h = (q.get("hash") or [None])[0]
        return self._json(
            200,
            {
                "value": [
                    d
                    for (n, _), d in self.codes.items()
                    if n == name and (h is None or d["properties"].get("codeHash") == h)
                ]
            },
        )

    def _get_code(self, body, q, name, version):
        d = self.codes.get((name, version))
        return self._json(200, d) if d else self._404(f"code {name}:{version}")

    def _put_code(self, body, q, name, version):
        doc = self._resource(f"/codes/{name}/versions/{version}", version, body)
        self.codes[(name, version)] = doc
        return self._json(201, doc)

    def _pending_upload(self, body, q, name, version):
        sas = f"{BLOB}/{CONTAINER}/codes/{name}?sv=2021&sig=FAKESAS"
        return self._json(
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": f"{BLOB}/{CONTAINER}/codes/{name}",
                    "storageAccountArmId": "/fake",
                    "credential": {"credentialType": "SAS", "sasUri": sas},
                }
            },
        )

    # --- blob storage ---------------------------------------------------------
    def _blob(self, method, u, body):
        key = u.path
        q = parse_qs(u.query)
        if method == "HEAD":
            if key in self.blobs:
                return (
                    200,
                    {
                        "Content-Length": str(len(self.blobs[key]["data"])),
                        "x-ms-blob-type": "BlockBlob",
                        **{f"x-ms-meta-{k}": v for k, v in self.blobs[key]["meta"].items()},
                    },
                    "",
                )
            return 404, {"x-ms-error-code": "BlobNotFound"}, ""
        if method == "PUT" and q.get("comp") == ["metadata"]:
            return 200, {}, ""
        if method == "PUT" and not q.get("comp"):
            self.blobs[key] = {"data": body or b"", "meta": {}}
            return 201, {"ETag": '"0x1"', "Last-Modified": "Thu, 26 Nov 2026 10:00:00 GMT"}, ""
        if method == "GET" and q.get("restype") == ["container"] and q.get("comp") == ["list"]:
            prefix = (q.get("prefix") or [""])[0]
            names = [
                k.split(f"/{CONTAINER}/", 1)[1]
                for k in self.blobs
                if k.split(f"/{CONTAINER}/", 1)[1].startswith(prefix)
            ]
            items = "".join(
                f"<Blob><Name>{n}</Name><Properties><Content-Length>{len(self.blobs['/' + CONTAINER + '/' + n]['data'])}</Content-Length><BlobType>BlockBlob</BlobType></Properties><Metadata /></Blob>"
                for n in names
            )
            xml = f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{BLOB}/" ContainerName="{CONTAINER}"><Prefix>{prefix}</Prefix><Blobs>{items}</Blobs><NextMarker /></EnumerationResults>'
            return 200, {"Content-Type": "application/xml"}, xml
        raise _Unexpected()

    def _score(self, host, body, headers):
        self.score_deployments.append(headers.get("azureml-model-deployment"))
        if headers.get("Authorization") != f"Bearer {ENDPOINT_KEY}":
            return self._json(401, {"message": "bad key"})
        status, answer = self.score(json.loads(body))
        if isinstance(answer, str):  # an HTML error page from a gateway
            return status, {"Content-Type": "text/html"}, answer
        return self._json(status, answer)


class _Unexpected(Exception):
    pass


# ---- fixtures ------------------------------------------------------------------
class FakeCredential:
    """An azure.core TokenCredential with a static token (the fake checks nothing else)."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(TOKEN, int(time.time()) + 3600)


def _iris_model(tmp_path, name="iris.onnx", max_iter=500, C=1.0):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    X, y = load_iris(return_X_y=True)
    sample = tmp_path / f"{name}.sample.npy"
    np.save(sample, X[:6].astype(np.float32))
    result = api.convert(LogisticRegression(max_iter=max_iter, C=C).fit(X, y), sample=sample)
    path = tmp_path / name
    result.save(path)
    assert result.passed
    return path


@pytest.fixture
def model(tmp_path):
    return _iris_model(tmp_path)


@pytest.fixture
def fake():
    f = FakeAzureML()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        f.install(rs)
        yield f
    assert f.unexpected == [], f"requests the fake did not expect: {f.unexpected}"


def _answer_like_validated(model_path):
    rec = record.load(model_path)
    return lambda body: (200, rec["smoke"]["response"])


WS_OPTS = {"subscription_id": SUB, "resource_group": RG, "workspace": WS, "timeout": 60}


def _deploy(model_path, fake, name="iris", log=None, **opts):
    fake.score = fake.score or _answer_like_validated(model_path)
    gate = record.check(model_path, allow_unvalidated=opts.pop("allow_unvalidated", False))
    request = DeployRequest(gate=gate, name=name, options={**WS_OPTS, **opts}, log=log or (lambda line: None))
    return deploy_azureml.deploy(request, credential=FakeCredential())


def _writes(fake):
    """Requests that create or change something (listKeys and scoring are reads)."""
    return [
        (m, p)
        for m, p, _q, _b in fake.calls
        if m in ("PUT", "POST", "PATCH", "DELETE") and not p.endswith(("/listKeys", "/score"))
    ]


def _body(fake, method, path_end):
    found = [b for m, p, _q, b in fake.calls if m == method and p.endswith(path_end)]
    assert found, f"no {method} ...{path_end} was sent"
    return json.loads(found[-1])


# ---- first deploy: the sequence and the bodies ---------------------------------------
def test_contract_first_deploy_sends_the_expected_sequence(model, fake):
    result = _deploy(model, fake)
    assert result["passed"] and result["version"] == "1" and result["traffic"] == {"blue": 100}
    sequence = [
        (m, re.sub(r"^.*/workspaces/[^/]+", "", p) if "management" in p else p.split(".", 1)[-1])
        for m, p, _q, _b in fake.calls
    ]
    wanted = [
        ("GET", "/onlineEndpoints/onnxgate-iris"),
        ("GET", "/models/iris/versions"),
        ("POST", "/datastores/workspaceblobstore/listSecrets"),
        ("PUT", "/models/iris/versions/1"),
        ("PUT", f"/environments/{result['environment'].replace(':', '/versions/')}"),
        ("PUT", "/onlineEndpoints/onnxgate-iris"),
        ("PUT", "/onlineEndpoints/onnxgate-iris/deployments/blue"),
        ("PUT", "/onlineEndpoints/onnxgate-iris"),  # traffic
        ("POST", "/onlineEndpoints/onnxgate-iris/listKeys"),
        ("POST", "westeurope.inference.ml.azure.com/score"),
    ]
    position = 0
    for step in wanted:  # in this order, other requests may come between
        while position < len(sequence) and sequence[position] != step:
            position += 1
        assert position < len(sequence), f"{step} missing or out of order in {sequence}"
        position += 1


def test_contract_model_is_custom_type_with_validation_tags_and_its_bytes_uploaded(model, fake):
    _deploy(model, fake)
    body = _body(fake, "PUT", "/models/iris/versions/1")
    props = body["properties"]
    assert props["modelType"] == "custom_model"
    sha = sha256_path(model)
    assert props["tags"]["onnxgate.model_sha256"] == sha
    assert props["tags"]["onnxgate.verdict"] == "passed"
    assert props["tags"]["onnxgate.onnxruntime"] == record.load(model)["validated_with"]["onnxruntime"]
    assert "onnxgate.override" not in props["tags"]
    assert json.loads(props["properties"]["onnxgate.summary"])["cases"] >= 1
    uploads = {k: v["data"] for k, v in fake.blobs.items() if k.endswith("/model.onnx")}
    assert list(uploads.values()) == [model.read_bytes()]
    assert props["modelUri"].rstrip("/").endswith("model.onnx") or "LocalUpload" in props["modelUri"]


def test_contract_environment_pins_the_validating_onnxruntime(model, fake):
    result = _deploy(model, fake)
    name, version = result["environment"].split(":")
    body = _body(fake, "PUT", f"/environments/{name}/versions/{version}")
    ort = record.load(model)["validated_with"]["onnxruntime"]
    conda = body["properties"]["condaFile"]
    assert f"onnxruntime=={ort}" in conda and "azureml-inference-server-http==" in conda
    assert body["properties"]["image"] == deploy_azureml.BASE_IMAGE


def test_contract_deployment_body_and_uploaded_scoring_script(model, fake):
    _deploy(model, fake, instance_type="Standard_F2s_v2", instance_count=2)
    body = _body(fake, "PUT", "/onlineEndpoints/onnxgate-iris/deployments/blue")
    props = body["properties"]
    assert props["endpointComputeType"] == "Managed"
    assert props["instanceType"] == "Standard_F2s_v2" and body["sku"]["capacity"] == 2
    assert props["codeConfiguration"]["scoringScript"] == "score.py"
    assert props["model"].endswith("/models/iris/versions/1")
    assert props["environmentId"].split("/environments/")[1].startswith("onnxgate-ort-")
    score = [v["data"] for k, v in fake.blobs.items() if k.endswith("/score.py")]
    template = Path(deploy_azureml.package_mod.SCORE_TEMPLATE).read_bytes()
    assert score == [template]
    endpoint = _body(fake, "PUT", "/onlineEndpoints/onnxgate-iris")
    assert endpoint["properties"]["traffic"] == {"blue": 100}
    scored = _body(fake, "POST", "/score")
    assert scored == record.load(model)["smoke"]["request"]


# ---- idempotency ---------------------------------------------------------------------
def test_contract_second_deploy_of_the_same_model_changes_nothing(model, fake):
    _deploy(model, fake)
    fake.calls.clear()
    result = _deploy(model, fake)
    assert _writes(fake) == [], f"the second deploy changed something: {_writes(fake)}"
    assert result["changes"] == [] and result["version"] == "1"
    assert not any(p.endswith("/model.onnx") for _m, p, _q, _b in fake.calls)
    assert result["smoke_test"]["passed"] is True


def test_contract_new_bytes_make_a_new_version_and_update_the_deployment(tmp_path, fake):
    first = _iris_model(tmp_path, "a.onnx", C=1.0)
    second = _iris_model(tmp_path, "b.onnx", C=0.01)
    assert sha256_path(first) != sha256_path(second)
    _deploy(first, fake)
    fake.calls.clear()
    fake.score = _answer_like_validated(second)
    result = _deploy(second, fake)
    assert result["version"] == "2"
    writes = [p.split("/workspaces/")[-1] for _m, p in _writes(fake) if "management" in p]
    assert "ws-onnxgate/models/iris/versions/2" in writes
    assert "ws-onnxgate/onlineEndpoints/onnxgate-iris/deployments/blue" in writes
    assert not any(w.startswith("ws-onnxgate/environments/") for w in writes)  # same onnxruntime: reused
    assert sorted(fake.models["iris"]) == ["1", "2"]  # version 1 untouched


def test_contract_blue_green_traffic_split(model, tmp_path, fake):
    _deploy(model, fake, deployment="blue")
    fake.calls.clear()
    result = _deploy(model, fake, deployment="green", traffic=10)
    assert result["traffic"] == {"blue": 90, "green": 10}
    assert _body(fake, "PUT", "/onlineEndpoints/onnxgate-iris")["properties"]["traffic"] == {"blue": 90, "green": 10}
    # the smoke test targets the new deployment, whatever its share
    assert fake.score_deployments[-1] == "green"
    fake.calls.clear()
    _deploy(model, fake, deployment="green", traffic=100)
    traffic = _body(fake, "PUT", "/onlineEndpoints/onnxgate-iris")["properties"]["traffic"]
    assert {k: v for k, v in traffic.items() if v} == {"green": 100}


def test_contract_traffic_rules():
    assert deploy_azureml.desired_traffic({}, "blue", None, True) == {"blue": 100}
    assert deploy_azureml.desired_traffic({"blue": 100}, "green", None, False) == {"blue": 100, "green": 0}
    assert deploy_azureml.desired_traffic({"blue": 60, "red": 40}, "green", 50, False) == {
        "blue": 30,
        "red": 20,
        "green": 50,
    }
    with pytest.raises(UsageError, match="no other deployment"):
        deploy_azureml.desired_traffic({}, "blue", 40, True)


# ---- failures ---------------------------------------------------------------------------
def test_contract_failed_long_running_operation_reports_the_service_message(model, fake):
    fake.lro_fail.add("deployment")
    with pytest.raises(DeployError, match="ImageBuildFailure") as info:
        _deploy(model, fake)
    assert info.value.exit_code == 3 and "creating the deployment" in str(info.value)


def test_contract_service_error_is_reported_with_its_message_and_exit_3(model, fake, capsys, monkeypatch):
    fake.fail[("PUT", r"/models/iris/versions/")] = (
        400,
        {"error": {"code": "UserError", "message": "Model asset name is reserved"}},
    )
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda **kw: FakeCredential())
    fake.score = _answer_like_validated(model)
    code = cli.main(
        [
            "deploy",
            str(model),
            "--target",
            "azureml",
            "--name",
            "iris",
            "--subscription-id",
            SUB,
            "--resource-group",
            RG,
            "--workspace",
            WS,
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "Model asset name is reserved" in err and "HTTP 400" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_contract_missing_credentials_exit_2_and_nothing_sent(model, fake, capsys, monkeypatch):
    for var in list(os.environ):
        if var.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(var)
    code = cli.main(
        [
            "deploy",
            str(model),
            "--target",
            "azureml",
            "--subscription-id",
            SUB,
            "--resource-group",
            RG,
            "--workspace",
            WS,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Azure credentials" in err and "az login" in err
    assert len(err.strip().splitlines()) == 1
    assert fake.calls == []


def test_contract_smoke_test_mismatch_fails_the_deploy(model, fake):
    rec = record.load(model)
    wrong = json.loads(json.dumps(rec["smoke"]["response"]))
    wrong["outputs"]["probabilities"] = (np.asarray(wrong["outputs"]["probabilities"]) + 0.2).tolist()
    fake.score = lambda body: (200, wrong)
    with pytest.raises(SmokeTestFailed, match="probabilities") as info:
        _deploy(model, fake)
    assert info.value.exit_code == 1


def test_contract_scoring_error_from_the_endpoint_is_a_deploy_failure(model, fake):
    fake.score = lambda body: (400, {"message": "input 'X' has shape [1, 3]"})
    with pytest.raises(DeployError, match="smoke test"):
        _deploy(model, fake)


# ---- the gate, dry run, secrets ------------------------------------------------------------
def test_contract_refused_model_sends_nothing(model, fake, capsys):
    model.write_bytes(model.read_bytes() + b"\0")  # bytes no longer match the record
    code = cli.main(
        [
            "deploy",
            str(model),
            "--target",
            "azureml",
            "--subscription-id",
            SUB,
            "--resource-group",
            RG,
            "--workspace",
            WS,
        ]
    )
    assert code == 2 and "bytes changed" in capsys.readouterr().err
    assert fake.calls == []


def test_contract_override_is_recorded_in_the_model_tags(model, fake):
    model.write_bytes(model.read_bytes() + b"\0")
    fake.score = lambda body: (200, {"outputs": {}})
    result = _deploy(model, fake, allow_unvalidated=True)
    tags = _body(fake, "PUT", "/models/iris/versions/1")["properties"]["tags"]
    assert tags["onnxgate.override"] == record.OVERRIDE_FLAG
    assert "bytes changed" in tags["onnxgate.override_reason"]
    assert result["smoke_test"]["passed"] is None  # no validated sample for these bytes: said, not faked


def test_contract_dry_run_prints_every_resource_and_sends_nothing(model, fake, capsys):
    code = cli.main(
        [
            "deploy",
            str(model),
            "--target",
            "azureml",
            "--dry-run",
            "--subscription-id",
            SUB,
            "--resource-group",
            RG,
            "--workspace",
            WS,
            "--deployment",
            "green",
            "--traffic",
            "20",
            "--instance-type",
            "Standard_F4s_v2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert fake.calls == []
    for needle in (
        "model: iris",
        "custom_model",
        "environment: onnxgate-ort-",
        "endpoint: onnxgate-iris",
        "deployment: green",
        "Standard_F4s_v2",
        "traffic: 20%",
        "smoke test",
    ):
        assert needle in out, f"{needle!r} not in the dry-run plan:\n{out}"


def test_contract_workspace_from_config_file(model, fake, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"subscription_id": SUB, "resource_group": RG, "workspace_name": WS}))
    fake.score = _answer_like_validated(model)
    gate = record.check(model)
    request = DeployRequest(gate=gate, name="iris", options={"workspace_config": cfg}, log=lambda line: None)
    assert deploy_azureml.deploy(request, credential=FakeCredential())["passed"]
    assert all(SUB in p for _m, p, _q, _b in fake.calls if "management" in p)
    with pytest.raises(UsageError, match="needs a workspace"):
        deploy_azureml.workspace_from({"subscription_id": SUB})


def test_contract_credentials_never_appear_in_output_or_report(model, fake, tmp_path, capsys, monkeypatch):
    import logging

    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda **kw: FakeCredential())
    fake.score = _answer_like_validated(model)
    report = tmp_path / "deploy.json"
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("azure").addHandler(handler)
    logging.getLogger("azure").setLevel(logging.DEBUG)  # even with the SDK's own debug logging on
    try:
        code = cli.main(
            [
                "deploy",
                str(model),
                "--target",
                "azureml",
                "--report",
                str(report),
                "--subscription-id",
                SUB,
                "--resource-group",
                RG,
                "--workspace",
                WS,
            ]
        )
    finally:
        logging.getLogger("azure").setLevel(logging.NOTSET)
        logging.getLogger("azure").removeHandler(handler)
    captured = capsys.readouterr()
    text = captured.out + captured.err + report.read_text()
    assert code == 0, captured.err
    assert json.loads(report.read_text())["smoke_test"]["passed"] is True
    for secret in (TOKEN, ENDPOINT_KEY, ACCOUNT_KEY, "FAKESAS"):
        assert secret not in text


def test_azure_sdk_is_not_imported_by_the_cli_or_plugin_listing():
    import subprocess

    code = (
        "import sys; from onnxgate.pipeline import cli; cli.build_parser(); "
        "from onnxgate.plugins.manager import Registry; r = Registry(); r.deploy_target('azureml'); "
        "assert not [m for m in sys.modules if m.startswith(('azure.ai', 'azure.identity'))], 'azure imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
