"""Built-in deploy targets, registered through the same entry-point path a
third-party plugin uses (``targets = onnxgate.pipeline.deployment.targets``).

Nothing heavy is imported here: each ``deploy`` callable imports its module
(and, for Azure, the SDK) only when that target is used.
"""
from __future__ import annotations

from onnxgate.plugins.hookspecs import hookimpl
from onnxgate.plugins.spec import DeployTargetSpec


def _deploy_local(request):
    from onnxgate.pipeline.deployment import local as deploy_local

    return deploy_local.deploy(request)


def _deploy_azureml(request):
    from onnxgate.pipeline.deployment import azureml as deploy_azureml

    return deploy_azureml.deploy(request)


@hookimpl
def onnxgate_deploy_targets():
    yield DeployTargetSpec(
        name="local", deploy=_deploy_local,
        description="file registry + Azure ML's inference server on 127.0.0.1, smoke-tested",
    )
    yield DeployTargetSpec(
        name="azureml", deploy=_deploy_azureml, requires=("azure-ai-ml", "azure-identity"),
        description="Azure Machine Learning managed online endpoint (SDK v2), smoke-tested",
    )
