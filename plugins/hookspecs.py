"""The hooks an onnxgate plugin can implement.

A plugin is a module (or object) registered under the ``onnxgate`` entry-point
group. Each hook takes no arguments and returns an iterable of small spec
dataclasses; onnxgate flattens them into registries keyed by name, and two
plugins claiming one name is an error naming both. Keep these hooks cheap:
import your framework inside the spec's callables, never at module level.
"""
from __future__ import annotations

from typing import Iterable

import pluggy

from .spec import ConverterSpec, DeployTargetSpec, EnvironmentSpec

PROJECT = "onnxgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def onnxgate_converters() -> Iterable[ConverterSpec]:
    """Declare the converters this plugin provides.

    Called once when onnxgate builds its converter registry (every CLI command
    and ``onnxgate.pipeline.convert`` do). Must not import the source
    framework: detection runs on the spec's ``suffixes``, ``sniff`` and
    ``object_types`` alone.

    :return: ConverterSpec objects. Their names must be unique across all
        plugins.

    Example::

        from onnxgate.plugins import ConverterSpec, hookimpl

        def _convert(model, example, options):
            import myfw, onnx
            return Conversion(myfw.to_onnx(model), exporter="myfw.to_onnx")

        @hookimpl
        def onnxgate_converters():
            yield ConverterSpec(
                name="myfw", framework="MyFW", convert=_convert,
                run=lambda model, inputs: [model.predict(inputs["x"])],
                object_types=("myfw.core.Model",), suffixes=(".myfw",),
                requires=("myfw",),
            )

    .. versionadded:: 0.1
    """


@hookspec
def onnxgate_environments() -> Iterable[EnvironmentSpec]:
    """Declare isolated Python environments that converters run in.

    Called when a converter whose ``ConverterSpec.environment`` names one of
    these is used, and by ``onnxgate env``. onnxgate creates the environment
    on request (``onnxgate env create NAME``) and talks to it through files.

    :return: EnvironmentSpec objects with unique names.

    Example::

        @hookimpl
        def onnxgate_environments():
            yield EnvironmentSpec(
                name="legacy",
                install_steps=(("numpy==1.23.5", "onnx<1.15"), ("mxnet==1.9.1",)),
            )

    .. versionadded:: 0.1
    """


@hookspec
def onnxgate_deploy_targets() -> Iterable[DeployTargetSpec]:
    """Declare places a validated model can be registered and deployed.

    Called by ``onnxgate deploy`` to resolve ``--target NAME``. The spec's
    ``deploy`` callable imports its SDK lazily.

    :return: DeployTargetSpec objects with unique names.

    Example::

        @hookimpl
        def onnxgate_deploy_targets():
            yield DeployTargetSpec(name="mycloud", deploy=_deploy,
                                   requires=("mycloud-sdk",))

    .. versionadded:: 0.1
    """
