"""Deploy from Python: ``deploy(path_or_result, target=...)`` with the CLI's
gate and refusal rules (it calls ``service.deploy``), returning a handle;
``register(path_or_result)`` registers in the local file registry only.

- ``local``: a ``LocalDeployment`` holding the running server: ``.url``,
  ``.predict(inputs)`` (a real HTTP call), ``.stop()``; a context manager.
- ``azureml``: an ``AzureMLDeployment`` with the endpoint name, scoring URI
  and deployment name; an ``MLClient`` the caller already has can be passed.
- other (plugin) targets: a ``Deployment`` holding the target's result.

A ``Result`` that was never saved is written to a temporary folder first
(model + validation record), so the gate reads exactly what deploy reads.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from onnxgate.plugins.errors import UsageError

if TYPE_CHECKING:
    from onnxgate.pipeline.deployment.registry import Version

PathLike = Union[str, Path]


@dataclass
class Deployment:
    """What a deploy target reported (``result``: its JSON-able dict)."""

    target: str
    name: str
    result: dict[str, Any]

    @property
    def dry_run(self) -> bool:
        return bool(self.result.get("dry_run"))

    @property
    def plan(self) -> list[str]:
        """The dry run's plan: every resource it would create or change."""
        return list(self.result.get("plan", []))

    @property
    def smoke_test(self) -> dict[str, Any] | None:
        return self.result.get("smoke_test")


@dataclass
class AzureMLDeployment(Deployment):
    """An Azure ML managed online endpoint serving the model."""

    endpoint: str = ""
    deployment: str = ""
    scoring_uri: str | None = None
    version: str | None = None

    def __repr__(self) -> str:
        if self.dry_run:
            return f"<AzureMLDeployment DRY RUN {self.name} -> endpoint {self.endpoint}: {len(self.plan)} steps>"
        return f"<AzureMLDeployment {self.name}:{self.version} -> {self.endpoint}/{self.deployment} {self.scoring_uri}>"


@dataclass
class LocalDeployment(Deployment):
    """A model served by Azure ML's inference server on 127.0.0.1."""

    version: int = 0
    #: The scoring URL: POST ``{"inputs": {name: nested lists}}`` here.
    url: str = ""
    input_names: list[str] = field(default_factory=list)
    input_dtypes: dict[str, str] = field(default_factory=dict)
    #: The model's inputs are named columns (one input per column, or a 2-D
    #: input whose columns the model names): a DataFrame is sent by column name.
    named_columns: bool = False
    server: Any = field(default=None, repr=False)  # serve.Server while running

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    @property
    def scoring_uri(self) -> str:
        return self.url

    def predict(self, inputs: Any, timeout: float = 60.0) -> dict[str, np.ndarray]:
        """Call the server with ``inputs`` (an array for a single-input model,
        a dict keyed by input name, tensors, lists or a DataFrame) and return
        its outputs by name."""
        from onnxgate.pipeline.conversion import samples
        from onnxgate.pipeline.conversion.inputs import bind_sample
        from onnxgate.pipeline.deployment.score_template import to_json_value
        from onnxgate.pipeline.deployment.serve import _array, post_json
        from onnxgate.pipeline.deployment.service import DeployError

        if not self.running:
            raise UsageError(f"{self.name}: the server is not running (stopped, or deployed without keep_running)")
        if self.named_columns and _is_dataframe(inputs) and all(isinstance(c, str) for c in inputs.columns):
            # row objects: the server matches the columns to the inputs by name, as for any client
            body: dict[str, Any] = {"inputs": json.loads(inputs.to_json(orient="records"))}
        else:
            arrays = bind_sample(samples.from_memory(inputs, self.input_names, what="inputs"), self.input_names)
            body = {"inputs": {k: to_json_value(self._cast(k, v)) for k, v in arrays.items()}}
        status, answer = post_json(self.url, body, timeout=timeout)
        message = answer.get("message", answer) if isinstance(answer, dict) else answer
        if 400 <= status < 500:
            raise UsageError(f"the server refused the request (HTTP {status}): {str(message)[:300]}")
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("outputs"), dict):
            raise DeployError(f"the server failed (HTTP {status}): {str(message)[:300]}")
        return {k: _array(v) for k, v in answer["outputs"].items()}

    def _cast(self, name: str, value: np.ndarray) -> np.ndarray:
        dtype = self.input_dtypes.get(name)
        if dtype and value.dtype.kind in "biuf" and np.dtype(dtype).kind in "biuf":
            return value.astype(dtype)
        return value

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.server is not None:
            self.server.stop()
            atexit.unregister(self.server.stop)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<LocalDeployment {self.name} v{self.version} {state}>"


def deploy(
    model: Any,
    target: str = "local",
    *,
    name: str | None = None,
    dry_run: bool = False,
    allow_unvalidated: bool = False,
    registry: PathLike | None = None,
    keep_running: bool = True,
    port: int | None = None,
    ml_client: Any = None,
    workspace_config: PathLike | None = None,
    subscription_id: str | None = None,
    resource_group: str | None = None,
    workspace: str | None = None,
    endpoint: str | None = None,
    deployment: str | None = None,
    instance_type: str | None = None,
    instance_count: int | None = None,
    traffic: int | None = None,
    timeout: float | None = None,
    log: Callable[[str], None] | None = None,
    options: dict[str, Any] | None = None,
) -> Deployment:
    """Register and deploy a validated model, as ``onnxgate deploy`` does.

    ``model``: an ONNX file with its validation record beside it (what
    ``Result.save`` and ``onnxgate convert`` write), or a ``Result``.
    A model without a passing record bound to its bytes is refused
    (``DeployRefused``, a ``UsageError``) unless ``allow_unvalidated=True``
    (the CLI's ``--deploy-unvalidated-i-know-what-im-doing``).

    ``local``: ``registry`` (folder; default ``$ONNXGATE_REGISTRY``),
    ``port``, ``keep_running`` (default True here: the handle serves until
    ``.stop()``, the end of its ``with`` block, or the end of the process).
    ``azureml``: ``ml_client`` (an ``azure.ai.ml.MLClient``) or the workspace
    (``workspace_config`` or ``subscription_id``/``resource_group``/
    ``workspace``), ``endpoint``, ``deployment``, ``instance_type``,
    ``instance_count``, ``traffic``, ``timeout``. ``options``: any other
    target's settings. ``log``: where progress lines go (default: print).
    """
    from onnxgate.pipeline.deployment import service

    given = {
        "registry": registry,
        "keep_running": keep_running,
        "port": port,
        "ml_client": ml_client,
        "workspace_config": workspace_config,
        "subscription_id": subscription_id,
        "resource_group": resource_group,
        "workspace": workspace,
        "endpoint": endpoint,
        "deployment": deployment,
        "instance_type": instance_type,
        "instance_count": instance_count,
        "traffic": traffic,
        "timeout": timeout,
    }
    opts = {k: v for k, v in given.items() if v is not None}
    _check_target_options(target, opts)
    opts.update(options or {})
    if traffic is not None and not 0 <= traffic <= 100:
        raise UsageError(f"traffic={traffic}: must be 0..100")
    servers: list[Any] = []
    say = log or print

    def progress(line: str) -> None:  # the handle, not `kill PID`, stops a server started from Python
        say(line.split(" (stop it with:")[0] + " (until .stop())" if line.startswith("left running:") else line)

    with _model_file(model, name) as path:
        result = service.deploy(
            path,
            target,
            name=name,
            dry_run=dry_run,
            allow_unvalidated=allow_unvalidated,
            options=opts,
            log=progress,
            keep_server=servers.append,
        )
    deployed_name = str(result.get("name") or name or service.default_name(path))
    if result.get("target") == "local" or target == "local":
        return _local_handle(result, deployed_name, servers[0] if servers else None)
    if target == "azureml":
        return AzureMLDeployment(
            target,
            deployed_name,
            result,
            endpoint=str(result.get("endpoint", "")),
            deployment=str(result.get("deployment") or deployment or "blue"),
            scoring_uri=result.get("scoring_uri"),
            version=result.get("version"),
        )
    return Deployment(str(result.get("target", target)), deployed_name, result)


def register(
    model: Any, *, name: str | None = None, registry: PathLike | None = None, allow_unvalidated: bool = False
) -> Version:
    """Register a validated model in the local file registry without serving it.

    The same gate as ``deploy``; the same bytes under the same name give back
    the existing version (``version.created`` is False then). Returns the
    ``registry.Version`` (``name``, ``version``, ``path``, ``model_path``).
    """
    from onnxgate.pipeline.deployment import service
    from onnxgate.pipeline.deployment.registry import LocalRegistry

    with _model_file(model, name) as path:
        gate = service.check(path, allow_unvalidated)
        return LocalRegistry(Path(registry) if registry is not None else None).register(
            gate, name or service.default_name(path)
        )


_LOCAL_ONLY = ("registry", "port")
_AZUREML_ONLY = (
    "ml_client",
    "workspace_config",
    "subscription_id",
    "resource_group",
    "workspace",
    "endpoint",
    "instance_type",
    "traffic",
)


def _check_target_options(target: str, opts: dict[str, Any]) -> None:
    """As the CLI: another built-in target's option is a mistake, not ignored."""
    wrong = {"local": _AZUREML_ONLY, "azureml": _LOCAL_ONLY}.get(target, ())
    misplaced = [k for k in wrong if k in opts]
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)}: not an option of target {target!r}")
    if target != "local":
        opts.pop("keep_running", None)


def _local_handle(result: dict[str, Any], name: str, server: Any) -> LocalDeployment:
    signature = _signature(result)
    if server is not None:
        atexit.register(server.stop)  # a handle's server does not outlive the Python process
    return LocalDeployment(
        "local",
        name,
        result,
        version=int(result.get("version") or 0),
        url=str(result.get("scoring_uri", "")),
        input_names=[i["name"] for i in signature],
        input_dtypes={i["name"]: i["dtype"] for i in signature},
        named_columns=_named_columns(result, signature),
        server=server,
    )


def _signature(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The registered version's input signature (from its validation record)."""
    import json

    if not result.get("registry") or not result.get("version"):
        return []
    path = Path(result["registry"]) / str(result["name"]) / str(result["version"]) / "validation-record.json"
    try:
        return list(json.loads(path.read_text("utf-8")).get("signature", {}).get("inputs", []))
    except (OSError, ValueError):
        return []


def _named_columns(result: dict[str, Any], signature: list[dict[str, Any]]) -> bool:
    """One input per column ([None, 1] each), or column names in the model's metadata."""
    if len(signature) > 1 and all(list(i.get("shape") or [])[1:] == [1] for i in signature):
        return True
    if not result.get("registry") or not result.get("version"):
        return False
    from onnxgate.pipeline.deployment.registry import MODEL_FILE
    from onnxgate.pipeline.deployment.score_template import COLUMNS_METADATA

    path = Path(result["registry"]) / str(result["name"]) / str(result["version"]) / MODEL_FILE
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # no readable model: send arrays as before
        return False
    return any(prop.key == COLUMNS_METADATA for prop in model.metadata_props)


class _model_file:
    """The model as a file: a path as given, or a Result written to a temporary folder."""

    def __init__(self, model: Any, name: str | None):
        self.model, self.name = model, name
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        if isinstance(self.model, (str, Path)):
            return Path(self.model)
        if not (hasattr(self.model, "save") and hasattr(self.model, "report")):
            raise UsageError(
                f"deploy: a {type(self.model).__name__} is not deployable; give an ONNX file path "
                "(validated, with its record beside it) or a Result from convert/validate"
            )
        from onnxgate.pipeline.deployment import registry

        tmp = self.tmp = Path(tempfile.mkdtemp(prefix="onnxgate-deploy-"))
        stem = registry.check_name(self.name) if self.name else _default_name(self.model)
        path = tmp / f"{stem}.onnx"
        self.model.save(path)
        return path

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _default_name(result: Any) -> str:
    """The source file's stem, else ``FRAMEWORK-model``."""
    import re

    report = result._report_dict() if hasattr(result, "_report_dict") else result.report
    source = report.get("source", {})
    stem = Path(source.get("path") or "").name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem or f"{source.get('framework') or 'onnx'}-model").strip(".-")
    return name[:100] or "model"


def _is_dataframe(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_json")
