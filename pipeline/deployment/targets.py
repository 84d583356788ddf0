"""Built-in deploy targets, registered through the same entry-point path a
third-party plugin uses (``targets = onnxgate.pipeline.deployment.targets``).

Nothing heavy is imported here: each ``deploy`` callable imports its module
(and, for Azure, the SDK) only when that target is used.
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import DeployTargetSpec, OptionSpec, hookimpl

LOCAL_OPTIONS = (
    OptionSpec(
        "registry", Path, help="file registry folder (default: $ONNXGATE_REGISTRY or ~/.local/share/onnxgate/registry)"
    ),
    OptionSpec("keep_running", bool, help="leave the server running after the smoke test"),
    OptionSpec("port", int, help="port on 127.0.0.1 (default: a free one)"),
)
AZUREML_OPTIONS = (
    OptionSpec("workspace_config", Path, help="Azure ML config.json (subscription_id, resource_group, workspace_name)"),
    OptionSpec("subscription_id", str, help="Azure subscription (default: from --workspace-config)"),
    OptionSpec("resource_group", str, help="resource group (default: from --workspace-config)"),
    OptionSpec("workspace", str, help="workspace name (default: from --workspace-config)"),
    OptionSpec("endpoint", str, help="online endpoint name (default: onnxgate-NAME)"),
    OptionSpec("deployment", str, "blue", help="deployment name"),
    OptionSpec("instance_type", str, help="VM size (default: Standard_DS3_v2, the smallest Azure recommends)"),
    OptionSpec("instance_count", int, 1, help="instances"),
    OptionSpec(
        "traffic",
        int,
        help="traffic share (percent) for this deployment; the rest goes to the "
        "endpoint's other deployment (default: 100 on a new endpoint, unchanged otherwise)",
    ),
    OptionSpec("timeout", float, 1800.0, help="seconds to wait for each long-running operation"),
    OptionSpec(
        "request_timeout",
        float,
        help="scoring request timeout of the deployment in seconds (default 90, at most 180; Azure's own is 5)",
    ),
    OptionSpec("max_concurrent_requests", int, help="requests one instance works on at once (default 1)"),
)


def _deploy_local(request):
    from onnxgate.pipeline.deployment import local as deploy_local

    return deploy_local.deploy(request)


def _deploy_azureml(request):
    from onnxgate.pipeline.deployment import azureml as deploy_azureml

    return deploy_azureml.deploy(request)


@hookimpl
def onnxgate_deploy_targets():
    yield DeployTargetSpec(
        name="local",
        deploy=_deploy_local,
        options=LOCAL_OPTIONS,
        description="file registry + Azure ML's inference server on 127.0.0.1, smoke-tested",
    )
    yield DeployTargetSpec(
        name="azureml",
        deploy=_deploy_azureml,
        requires=("azure-ai-ml", "azure-identity"),
        options=AZUREML_OPTIONS,
        description="Azure Machine Learning managed online endpoint (SDK v2), smoke-tested",
    )
