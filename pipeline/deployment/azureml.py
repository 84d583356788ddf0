"""The ``azureml`` deploy target: an Azure ML managed online endpoint (SDK v2).

Steps, each skipped when the workspace already holds what it would create
(so deploying the same validated model twice changes nothing):

1. model: a custom-model version tagged with the model's sha256 (reused when
   a version with that tag exists; versions are never overwritten);
2. environment: ``onnxgate-ort-<version>`` built from the package's conda
   file, versioned by the file's hash (reused when present);
3. endpoint: created with key auth when missing;
4. deployment: created or updated when its model, environment, code, instance
   type or count differ (tracked in its ``onnxgate.*`` tags);
5. traffic: set as asked (blue/green), updated only when it differs;
6. smoke test: invoke the deployment with the record's sample request and
   compare with the validated outputs.

``azure-ai-ml`` and ``azure-identity`` are imported only here, inside
functions (install with ``pip install 'onnxgate[azureml]'``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.deployment import package as package_mod
from onnxgate.pipeline.deployment.registry import tags as model_tags
from onnxgate.pipeline.deployment.serve import SmokeTestFailed, compare_response
from onnxgate.pipeline.deployment.service import DeployError, DeployRequest
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.helpers import one_line

#: Azure's base image for custom inference environments; the conda file adds
#: the pinned onnxruntime and the inference server on top.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
DEFAULT_TIMEOUT_S = 1800.0
#: The smallest size Azure ML recommends for general-purpose online endpoints.
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
#: Seconds a scoring request may take (Azure's own default, 5 s, is too short
#: for large models; Azure allows at most 180 s).
DEFAULT_REQUEST_TIMEOUT_S = 90
MAX_REQUEST_TIMEOUT_S = 180
#: Requests one instance works on at once (score.py runs one worker per instance).
DEFAULT_MAX_CONCURRENT = 1
#: Azure's rule for endpoint and deployment names.
_NAME_RULE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")


@dataclass
class Workspace:
    subscription_id: str
    resource_group: str
    workspace: str


def workspace_from(opts: dict[str, Any]) -> Workspace:
    """The workspace from ``--workspace-config``, the caller's ``ml_client``,
    or the three options (options win)."""
    found: dict[str, str] = {}
    client = opts.get("ml_client")
    if client is not None:  # an azure.ai.ml.MLClient the caller already has (Azure ML notebooks do)
        found = {
            "subscription_id": getattr(client, "subscription_id", "") or "",
            "resource_group": getattr(client, "resource_group_name", "") or "",
            "workspace": getattr(client, "workspace_name", "") or "",
        }
    cfg = opts.get("workspace_config")
    if cfg:
        try:
            data = json.loads(Path(cfg).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--workspace-config {cfg}: cannot read it as JSON: {exc}") from None
        found = {
            "subscription_id": data.get("subscription_id", ""),
            "resource_group": data.get("resource_group", ""),
            "workspace": data.get("workspace_name", ""),
        }
    for key in ("subscription_id", "resource_group", "workspace"):
        if opts.get(key):
            found[key] = str(opts[key])
    missing = [k for k in ("subscription_id", "resource_group", "workspace") if not found.get(k)]
    if missing:
        raise UsageError(
            "the azureml target needs a workspace: --workspace-config config.json or --subscription-id, "
            f"--resource-group and --workspace (missing: {', '.join(missing)})"
        )
    return Workspace(**{k: found[k] for k in ("subscription_id", "resource_group", "workspace")})


def check_name(kind: str, name: str) -> str:
    """Azure's rule for endpoint and deployment names, checked before anything is sent."""
    if not _NAME_RULE.match(name or ""):
        raise UsageError(
            f"{kind} name {name!r}: Azure needs 3-32 letters, digits or '-', starting with a letter "
            "and not ending with '-'"
        )
    return name


def endpoint_name(opts: dict[str, Any], model_name: str) -> str:
    if opts.get("endpoint"):
        name = str(opts["endpoint"])
    else:
        name = re.sub(r"[^A-Za-z0-9-]", "-", f"onnxgate-{model_name}").strip("-")[:32].rstrip("-")
    return check_name("endpoint", name)


def request_settings(opts: dict[str, Any]) -> dict[str, int]:
    """``--request-timeout`` (seconds) and ``--max-concurrent-requests``, checked."""
    timeout = opts.get("request_timeout")
    timeout = DEFAULT_REQUEST_TIMEOUT_S if timeout is None else timeout
    concurrent = opts.get("max_concurrent_requests")
    concurrent = DEFAULT_MAX_CONCURRENT if concurrent is None else concurrent
    if not 1 <= float(timeout) <= MAX_REQUEST_TIMEOUT_S:
        raise UsageError(f"--request-timeout {timeout}: Azure allows 1..{MAX_REQUEST_TIMEOUT_S} seconds")
    if int(concurrent) < 1:
        raise UsageError(f"--max-concurrent-requests {concurrent}: must be at least 1")
    return {"request_timeout_ms": int(float(timeout) * 1000), "max_concurrent_requests_per_instance": int(concurrent)}


def environment_identity(ort_version: str) -> tuple:
    conda = package_mod.conda_yaml(ort_version)
    digest = hashlib.sha256((BASE_IMAGE + "\n" + conda).encode()).hexdigest()[:16]
    return f"onnxgate-ort-{ort_version.replace('.', '-')}", digest, conda


def code_sha256(code_dir: Path) -> str:
    return sha256_path(code_dir)


def desired_traffic(
    current: dict[str, int], deployment: str, share: int | None, endpoint_is_new: bool
) -> dict[str, int]:
    """Blue/green: ``deployment`` gets ``share``; the rest goes to the others,
    in proportion to what they had. None keeps an existing split (a new
    endpoint sends everything to its first deployment)."""
    current = {k: int(v) for k, v in (current or {}).items()}
    if share is None:
        if endpoint_is_new or sum(current.values()) == 0:
            return {**dict.fromkeys(current, 0), deployment: 100}
        return {**current, deployment: current.get(deployment, 0)}
    others = {k: v for k, v in current.items() if k != deployment}
    rest = 100 - share
    if rest == 0:
        return {**dict.fromkeys(others, 0), deployment: 100}
    if not others:
        raise UsageError(f"--traffic {share}: the endpoint has no other deployment to take the remaining {rest}%")
    total = sum(others.values())
    if total == 0:
        if len(others) != 1:
            raise UsageError(f"--traffic {share}: cannot tell which of {sorted(others)} takes the remaining {rest}%")
        return {next(iter(others)): rest, deployment: share}
    split = {k: rest * v // total for k, v in others.items()}
    biggest = max(others, key=lambda k: others[k])
    split[biggest] += rest - sum(split.values())
    return {**split, deployment: share}


def _plan(request: DeployRequest, ws: Workspace, ep: str) -> list[str]:
    opts = request.options
    ort = package_mod.ort_version_of(request.gate)
    env_name, env_version, _ = environment_identity(ort)
    share = opts.get("traffic")
    tags = model_tags(request.gate)
    return [
        f"workspace: subscription {ws.subscription_id}, resource group {ws.resource_group}, workspace {ws.workspace}",
        f"model: {request.name}, type custom_model, reuse the version tagged onnxgate.model_sha256="
        f"{request.gate.sha256} or create the next version from model.onnx "
        f"(tags: {', '.join(f'{k}={v}' for k, v in sorted(tags.items()))})",
        f"environment: {env_name}:{env_version} (image {BASE_IMAGE}, conda: python {package_mod.serving_env.PYTHON_VERSION}, "
        f"{', '.join(package_mod.environment_pins(ort))}), created if missing",
        f"endpoint: {ep} (managed online, auth_mode key), created if missing",
        f"deployment: {opts.get('deployment') or 'blue'} on {ep}: model {request.name}, environment "
        f"{env_name}:{env_version}, code score.py, instance {opts.get('instance_type') or DEFAULT_INSTANCE_TYPE} x "
        f"{opts.get('instance_count') or 1}, request timeout {request_settings(opts)['request_timeout_ms'] // 1000} s, "
        f"{request_settings(opts)['max_concurrent_requests_per_instance']} concurrent request(s) per instance, "
        "created or updated if any of these differ",
        f"traffic: {'unchanged on an existing endpoint, 100% on a new one' if share is None else f'{share}% to this deployment, the rest to the others'}",
        "smoke test: invoke the deployment with the sample request, compare with the validated outputs",
    ]


def deploy(
    request: DeployRequest, credential: Any = None, client_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Deploy to Azure ML. ``credential``/``client_kwargs`` let tests and
    callers supply an ``azure.core`` TokenCredential and MLClient options."""
    opts = request.options
    ws = workspace_from(opts)
    ep = endpoint_name(opts, request.name)
    check_name("deployment", str(opts.get("deployment") or "blue"))
    request_settings(opts)
    if opts.get("traffic") is not None and not 0 <= int(opts["traffic"]) <= 100:
        raise UsageError(f"--traffic {opts['traffic']}: must be 0..100")
    if request.dry_run:
        plan = _plan(request, ws, ep)
        for line in plan:
            request.log(f"[dry-run] {line}")
        return {"dry_run": True, "plan": plan, "passed": True, "endpoint": ep, "name": request.name}
    if not (request.record or {}).get("smoke") and not request.gate.override:
        raise UsageError("the validation record has no smoke sample; validate the model again")
    with tempfile.TemporaryDirectory(prefix="onnxgate-azureml-") as tmp:
        pkg = package_mod.build(request.gate, Path(tmp) / "package")
        return _Deployer(request, ws, ep, pkg, credential, client_kwargs or {}).run()


class _Deployer:
    def __init__(self, request: DeployRequest, ws: Workspace, ep: str, pkg: Path, credential, client_kwargs):
        self.request, self.ws, self.ep, self.pkg = request, ws, ep, pkg
        self.opts = request.options
        self.log = request.log
        self.timeout = float(self.opts.get("timeout") or DEFAULT_TIMEOUT_S)
        self.deployment = self.opts.get("deployment") or "blue"
        self.credential = credential
        self.client_kwargs = client_kwargs
        self.changes: list[str] = []
        self.scoring_uri: str | None = None

    # -- plumbing -----------------------------------------------------------
    def client(self):
        import logging

        from azure.ai.ml import MLClient

        # no handler of our own: keeps the SDK's warnings (e.g. every credential
        # DefaultAzureCredential tried) from reaching stderr via logging's last
        # resort; the error itself is reported as one line
        logging.getLogger("azure").addHandler(logging.NullHandler())
        # azure.ai.ml wires its own stderr handlers at import (progress dots,
        # SKU hints); onnxgate prints its own progress, one line per step
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if name.startswith("azure.ai.ml") and isinstance(logger, logging.Logger) and logger.handlers:
                logger.setLevel(logging.ERROR)

        if self.opts.get("ml_client") is not None:
            return self.opts["ml_client"]
        credential = self.credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        kwargs = {"show_progress": False, "enable_telemetry": False, **self.client_kwargs}
        return MLClient(credential, self.ws.subscription_id, self.ws.resource_group, self.ws.workspace, **kwargs)

    def wait(self, poller, what: str):
        result = poller.result(timeout=self.timeout)
        if not poller.done():
            raise DeployError(
                f"{what}: still running after {self.timeout:.0f} s (--timeout); check it in Azure ML studio"
            )
        return result

    @staticmethod
    def _missing(call):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return call()
        except ResourceNotFoundError:
            return None

    def run(self) -> dict[str, Any]:
        from azure.ai.ml.exceptions import MlException
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        step = "connecting"
        try:
            self.ml = self.client()
            step = "reading the endpoint"
            endpoint = self._missing(lambda: self.ml.online_endpoints.get(self.ep))
            traffic = desired_traffic(
                dict(getattr(endpoint, "traffic", None) or {}),
                self.deployment,
                self.opts.get("traffic"),
                endpoint is None,
            )
            step = "registering the model"
            model = self.model()
            step = "creating the environment"
            env = self.environment()
            step = "creating the endpoint"
            if endpoint is None:
                endpoint = self.create_endpoint()
            step = "creating the deployment"
            self.create_deployment(model, env)
            step = "setting traffic"
            self.set_traffic(traffic)
            step = "invoking the deployment (smoke test)"
            smoke = self.smoke()
        except ClientAuthenticationError as exc:
            raise UsageError(
                f"Azure credentials ({step}): {one_line(exc)}; sign in with `az login`, or set "
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
            ) from None
        except HttpResponseError as exc:
            raise DeployError(f"Azure ML {step} failed: {_service_message(exc)}") from None
        except MlException as exc:
            raise UsageError(f"Azure ML {step}: {one_line(exc)}") from None
        return {
            "passed": True,
            "name": self.request.name,
            "version": model.version,
            "workspace": {
                "subscription_id": self.ws.subscription_id,
                "resource_group": self.ws.resource_group,
                "workspace": self.ws.workspace,
            },
            "endpoint": self.ep,
            "deployment": self.deployment,
            "environment": f"{env.name}:{env.version}",
            "scoring_uri": self.scoring_uri,
            "traffic": traffic,
            "changes": self.changes,
            "smoke_test": smoke,
        }

    # -- steps --------------------------------------------------------------
    def model(self):
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        sha = self.request.gate.sha256
        from azure.ai.ml.constants import ListViewType

        # archived versions too: the same bytes may sit in one, and its number is taken
        versions = (
            self._missing(lambda: list(self.ml.models.list(name=self.request.name, list_view_type=ListViewType.ALL)))
            or []
        )
        for m in versions:
            if (m.tags or {}).get("onnxgate.model_sha256") == sha:
                self.log(f"model {m.name}:{m.version} already holds these bytes")
                return m
        numbers = [int(m.version) for m in versions if str(m.version).isdigit()]
        version = str(max(numbers, default=0) + 1)
        rec = self.request.record or {}
        props = {
            "onnxgate.model_sha256": sha,
            "onnxgate.verdict": rec.get("verdict", "none"),
            "onnxgate.summary": json.dumps(rec.get("summary", {}), sort_keys=True)[:1000],
            "onnxgate.tolerance": json.dumps(rec.get("tolerance", {}), sort_keys=True),
            "onnxgate.validated_with": json.dumps(rec.get("validated_with", {}), sort_keys=True),
        }
        model = Model(
            path=str(self.model_path()),
            type=AssetTypes.CUSTOM_MODEL,
            name=self.request.name,
            version=version,
            tags=model_tags(self.request.gate),
            properties=props,
            description="ONNX model "
            + (
                "validated by onnxgate"
                if not self.request.gate.override
                else "deployed WITHOUT passing onnxgate's validation"
            ),
        )
        with _quiet_upload():
            created = self.ml.models.create_or_update(model)
        self.changes.append(f"model {created.name}:{created.version} registered")
        self.log(f"registered model {created.name}:{created.version}")
        return created

    def model_path(self) -> Path:
        """The file, or the folder when external-data files belong to the model
        (score.py finds model.onnx inside it, its external files beside it)."""
        from onnxgate.pipeline.deployment.record import external_locations

        single = package_mod.model_dir(self.pkg) / package_mod.MODEL_FILE
        return package_mod.model_dir(self.pkg) if external_locations(single) else single

    def environment(self):
        from azure.ai.ml.entities import Environment

        name, version, conda = environment_identity(package_mod.ort_version_of(self.request.gate))
        env = self._missing(lambda: self.ml.environments.get(name, version=version))
        if env is not None:
            self.log(f"environment {name}:{version} exists")
            return env
        conda_path = self.pkg / "environment" / "conda.yaml"
        conda_path.write_text(conda, "utf-8")
        env = self.ml.environments.create_or_update(
            Environment(
                name=name,
                version=version,
                image=BASE_IMAGE,
                conda_file=str(conda_path),
                description="onnxruntime pinned to the version that validated the model + Azure ML inference server",
            )
        )
        self.changes.append(f"environment {name}:{version} created")
        self.log(f"created environment {name}:{version}")
        return env

    def create_endpoint(self):
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        poller = self.ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(
                name=self.ep,
                auth_mode="key",
                description="served by onnxgate",
                tags={"onnxgate": "1"},
            )
        )
        endpoint = self.wait(poller, f"endpoint {self.ep}")
        self.changes.append(f"endpoint {self.ep} created")
        self.log(f"created endpoint {self.ep}")
        return endpoint

    def create_deployment(self, model, env) -> None:
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment, OnlineRequestSettings

        instance_type = self.opts.get("instance_type") or DEFAULT_INSTANCE_TYPE
        count = int(self.opts.get("instance_count") or 1)
        settings = request_settings(self.opts)
        want = {
            "onnxgate.request_settings": f"{settings['request_timeout_ms']}ms/"
            f"{settings['max_concurrent_requests_per_instance']}",
            "onnxgate.model": f"{model.name}:{model.version}",
            "onnxgate.environment": f"{env.name}:{env.version}",
            "onnxgate.code_sha256": code_sha256(package_mod.code_dir(self.pkg)),
            "onnxgate.model_sha256": self.request.gate.sha256,
        }
        current = self._missing(lambda: self.ml.online_deployments.get(self.deployment, self.ep))
        if current is not None:
            have = {k: (current.tags or {}).get(k) for k in want}
            if have == want and current.instance_type == instance_type and int(current.instance_count or 0) == count:
                self.log(f"deployment {self.deployment} already serves {want['onnxgate.model']}")
                return
        with _quiet_upload():  # uploads the code folder
            poller = self.ml.online_deployments.begin_create_or_update(
                ManagedOnlineDeployment(
                    name=self.deployment,
                    endpoint_name=self.ep,
                    model=f"azureml:{model.name}:{model.version}",
                    environment=f"azureml:{env.name}:{env.version}",
                    code_configuration=CodeConfiguration(
                        code=str(package_mod.code_dir(self.pkg)), scoring_script="score.py"
                    ),
                    instance_type=instance_type,
                    instance_count=count,
                    tags=want,
                    request_settings=OnlineRequestSettings(**settings),
                )
            )
        self.wait(poller, f"deployment {self.deployment}")
        self.changes.append(f"deployment {self.deployment} {'updated' if current is not None else 'created'}")
        self.log(f"{'updated' if current is not None else 'created'} deployment {self.deployment}")

    def set_traffic(self, traffic: dict[str, int]) -> None:
        endpoint = self.ml.online_endpoints.get(self.ep)
        self.scoring_uri = getattr(endpoint, "scoring_uri", None)
        current = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        if {k: v for k, v in current.items() if v} == {k: v for k, v in traffic.items() if v}:
            return
        endpoint.traffic = traffic
        self.wait(self.ml.online_endpoints.begin_create_or_update(endpoint), f"traffic on {self.ep}")
        self.changes.append(f"traffic on {self.ep} set to {traffic}")
        self.log(f"traffic on {self.ep}: {traffic}")

    def smoke(self) -> dict[str, Any]:
        rec = self.request.record or {}
        if not rec.get("smoke"):
            self.log("WARNING: no validated sample for this model: the smoke test could not run")
            return {"passed": None, "message": "not run: no validation record (override)"}
        raw = self.score((self.pkg / "sample-request.json").read_bytes())
        try:
            answer = json.loads(raw)
        except ValueError:
            raise SmokeTestFailed(f"smoke test: the endpoint's answer is not JSON: {str(raw)[:200]}") from None
        result = compare_response(answer, rec["smoke"], rec.get("tolerance", {}))
        if not result.passed:
            raise SmokeTestFailed(f"smoke test failed on {self.ep}/{self.deployment}: {result.message}")
        self.log(f"smoke test passed: {result.message}")
        return result.as_dict()

    def score(self, body: bytes) -> str:
        """POST to the deployment ourselves: the SDK's invoke() crashes mapping
        some statuses (408: TypeError), and hides which failure it was."""
        import requests

        endpoint = self.ml.online_endpoints.get(self.ep)
        key = self.ml.online_endpoints.get_keys(self.ep).primary_key
        timeout_s = request_settings(self.opts)["request_timeout_ms"] / 1000
        where = f"smoke test on {self.ep}/{self.deployment}"
        try:
            resp = requests.post(
                endpoint.scoring_uri,
                data=body,
                timeout=timeout_s + 30,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {key}",
                    "azureml-model-deployment": self.deployment,
                },
            )
        except requests.Timeout:
            raise DeployError(f"{where}: no answer within {timeout_s + 30:.0f} s") from None
        except requests.RequestException as exc:
            raise DeployError(f"{where}: cannot reach the endpoint: {one_line(exc)}") from None
        status = resp.status_code
        if status == 200:
            return resp.text
        detail = _answer_text(resp.text)
        if status in (401, 403):
            raise DeployError(f"{where}: the endpoint rejected the key (HTTP {status}): {detail}")
        if status in (408, 504):
            raise DeployError(
                f"{where}: the request timed out (HTTP {status}) within the deployment's "
                f"{timeout_s:.0f} s; raise it with --request-timeout (at most {MAX_REQUEST_TIMEOUT_S})"
            )
        if status >= 500:
            raise DeployError(f"{where}: the endpoint failed (HTTP {status}): {detail}")
        raise DeployError(f"{where}: the endpoint answered HTTP {status}: {detail}")


def _answer_text(text: str) -> str:
    """An error answer in one short line: its JSON message, or an HTML page's text."""
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("message"):
            return one_line(str(data["message"]))[:300]
    except ValueError:
        pass
    plain = re.sub(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", " ", text, flags=re.S | re.I)
    return " ".join(plain.split())[:300] or "(empty answer)"


def _quiet_upload():
    """The SDK's blob upload prints a colour-reset line to stderr whatever
    ``show_progress`` says; keep it out of onnxgate's one-line output."""
    import contextlib
    import io

    return contextlib.redirect_stderr(io.StringIO())


def _service_message(exc) -> str:
    """The service's own error code and message, without headers or tokens."""
    status = getattr(exc, "status_code", None)
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) if err is not None else None
    message = getattr(err, "message", None) if err is not None else None
    text = message or getattr(exc, "message", None) or str(exc)
    return " ".join(p for p in (f"HTTP {status}" if status else "", f"({code})" if code else "", one_line(text)) if p)
