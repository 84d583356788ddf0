"""The hooks an onnxgate plugin can implement.

A plugin is a module (or object) registered under the ``onnxgate`` entry-point
group. Each hook takes no arguments and returns an iterable of small specs
(dataclasses; comparison rules are CompareRule instances); onnxgate calls
it through ``pm.hook`` (so hook wrappers and blocked plugins apply), flattens
the results into registries keyed by name, and two plugins claiming one name
is an error naming both. Keep these hooks cheap: import your framework inside
the spec's callables, never at module level.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from .spec import CompareRule, ConverterSpec, DeployTargetSpec, EnvironmentSpec, ReportFormat

PROJECT = "onnxgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def onnxgate_converters() -> Iterable[ConverterSpec]:  # type: ignore[empty-body]  # a pluggy hookspec: never called
    """Declare the converters this plugin provides.

    Called once when onnxgate builds its converter registry (every CLI command
    and ``onnxgate.pipeline.convert`` do). Must not import the source
    framework: detection runs on the spec's ``suffixes``, ``sniff`` and
    ``object_types`` alone.

    :return: ConverterSpec objects. Their names must be unique across all
        plugins. ``options`` declares what ``convert``/``load`` read from
        ``options.extra``: any other ``--option`` is refused (exit 2).

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
                options=(OptionSpec("fuse", bool, True, help="fuse batch norms"),),
            )

    .. versionadded:: 0.1
    """


@hookspec
def onnxgate_environments() -> Iterable[EnvironmentSpec]:  # type: ignore[empty-body]  # a pluggy hookspec: never called
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
def onnxgate_deploy_targets() -> Iterable[DeployTargetSpec]:  # type: ignore[empty-body]  # a pluggy hookspec: never called
    """Declare places a validated model can be registered and deployed.

    Called by ``onnxgate deploy`` to resolve ``--target NAME`` and to add
    each target's ``options`` as flags (``OptionSpec("endpoint")`` is
    ``--endpoint``); ``deploy(request)`` gets their values, defaults filled
    in, as ``request.options``. The spec's ``deploy`` callable imports its
    SDK lazily.

    :return: DeployTargetSpec objects with unique names.

    Example::

        @hookimpl
        def onnxgate_deploy_targets():
            yield DeployTargetSpec(name="mycloud", deploy=_deploy,
                                   requires=("mycloud-sdk",),
                                   options=(OptionSpec("region", str, "eu-west"),))

    .. versionadded:: 0.1
    """


@hookspec
def onnxgate_compare_rules() -> Iterable[CompareRule]:  # type: ignore[empty-body]  # a pluggy hookspec: never called
    """Declare how kinds of outputs are compared (task-aware comparison).

    Called when the gate runs (``convert``, ``validate``, the Python API,
    ``batch``) and when ``--tolerance``/``--gate-config`` keys are parsed.
    For each output, the rule named by the user (``OUT:rule=NAME``) judges
    it, else the highest-``priority`` rule whose ``matches`` is true. The
    built-ins (``classifier-label`` 40, ``classifier-probabilities`` 30,
    ``embedding`` 20, ``regression`` 10, ``tensor`` 0) come through this hook
    too, from ``onnxgate.pipeline.gate.rules``.

    :return: CompareRule instances. Their names must be unique across all
        plugins; a key two rules declare must have one type in both.

    Example::

        import numpy as np
        from onnxgate.plugins import CompareRule, OptionSpec, hookimpl

        class Ranking(CompareRule):
            name = "ranking"
            priority = 50
            keys = (OptionSpec("min_spearman", float, help="worst row's rank correlation"),)

            def matches(self, actual, expected):
                return np.asarray(expected).dtype.kind == "f" and np.asarray(expected).ndim == 2

            def metrics(self, actual, expected, result, settings):
                return {"spearman_min": my_spearman(actual, expected)}

            def check(self, metrics, settings):
                floor = settings.get("min_spearman")
                if floor is not None and metrics["spearman_min"] < floor:
                    return [f"rank correlation {metrics['spearman_min']:.4f} < {floor:g}"]
                return []

        @hookimpl
        def onnxgate_compare_rules():
            yield Ranking()

    .. versionadded:: 0.2
    """


@hookspec
def onnxgate_report_formats() -> Iterable[ReportFormat]:  # type: ignore[empty-body]  # a pluggy hookspec: never called
    """Declare renderings of the report besides its JSON.

    Called by ``convert``, ``validate`` and ``diagnose`` to resolve
    ``--format NAME=PATH`` (and ``--junit``/``--html``/``--summary``, which
    are the built-in ``junit``/``html``/``markdown`` formats, registered
    through this hook by ``onnxgate.pipeline.report.formats``). ``render``
    gets the finished report dict and returns text or bytes; import heavy
    modules inside it.

    :return: ReportFormat objects with unique names.

    Example::

        from onnxgate.plugins import ReportFormat, hookimpl

        def _csv(report):
            rows = [f"{o['name']},{o['max_abs_err']}" for c in report["cases"] for o in c["outputs"]]
            return "output,max_abs_err\n" + "\n".join(rows) + "\n"

        @hookimpl
        def onnxgate_report_formats():
            yield ReportFormat(name="csv", suffix=".csv", render=_csv)

    .. versionadded:: 0.2
    """
