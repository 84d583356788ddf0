"""Plugin manager and the registries built from hook results."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, cast

import pluggy

from . import hookspecs, versioning
from .helpers import distribution_version, installed_distribution, one_line  # noqa: F401 (re-exported)
from .spec import CompareRule, ConverterSpec, DeployTargetSpec, EnvironmentSpec, ReportFormat, normalize_name

ENTRY_POINT_GROUP = "onnxgate"
#: Comma-separated plugin (entry-point) names that are not loaded.
DISABLE_ENV = "ONNXGATE_DISABLE_PLUGINS"


class PluginError(Exception):
    """A plugin is broken or two plugins conflict."""


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be used: its import failed, a hook raised or
    returned something that is not a spec, or it declares another API version.
    The rest of onnxgate works without it."""

    plugin: str
    distribution: str
    version: str
    error: str
    #: Specs it did return before failing (for "selecting the broken one").
    specs: tuple[object, ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or "local"

    def describe(self) -> str:
        return f"plugin {self.plugin!r} ({self.origin}) is broken: {self.error}"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the entry-point plugins that failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.broken: dict[str, BrokenPlugin] = {}
        #: plugin -> DeprecationWarnings its hooks caused (``plugins check`` shows them).
        self.deprecations: dict[str, list[str]] = {}


def disabled_plugins() -> set:
    raw = os.environ.get(DISABLE_ENV, "")
    return {normalize_name(n) for n in raw.split(",") if n.strip()}


def get_plugin_manager(plugins: Iterable[object] = (), load_entry_points: bool = True) -> PluginManager:
    """A fresh manager: the given plugin objects, then every entry point.

    Built-in converters are entry points too, so they load through exactly the
    path a third-party plugin uses. An entry point that fails to import, has a
    hook implementation no hookspec knows, or declares an API range this
    onnxgate is not in is set aside in ``pm.broken`` (never raised): one bad
    install must not take every framework down. Plugins given as objects
    (tests, embedding) are checked strictly.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = disabled_plugins()
    for plugin in plugins:
        # readable names in conflict messages (pluggy would use the object id)
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        refused = versioning.check_declared(plugin)
        if refused:
            raise PluginError(f"plugin {name!r} {refused}")
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} has an unknown hook implementation: {exc}") from exc
    if load_entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if normalize_name(ep.name) in blocked or pm.has_plugin(ep.name) or ep.name in pm.broken:
                continue
            dist = getattr(ep, "dist", None)
            if dist is not None:
                _PLUGIN_DISTS[ep.name] = (dist.metadata["Name"], dist.version)
            error = _load_entry_point(pm, ep)
            if error:
                pm.broken[ep.name] = BrokenPlugin(ep.name, *plugin_distribution(ep.name), error)
    return pm


def _load_entry_point(pm: PluginManager, ep) -> str:
    """Register one entry point; the one-line reason it is unusable, or ""."""
    try:
        module = ep.load()
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end onnxgate
        return f"import of {ep.value} failed: {one_line(exc, with_type=True)}"
    refused = versioning.check_declared(module)
    if refused:
        return refused
    try:
        pm.register(module, name=ep.name)
    except Exception as exc:  # pluggy.PluginValidationError: a hook's arguments are wrong
        return one_line(exc, with_type=True)
    unknown = sorted(hc.name for hc in pm.get_hookcallers(module) or () if not hc.has_spec())
    if unknown:
        pm.unregister(module)
        return f"unknown hook implementation {', '.join(unknown)} (misspelled?)"
    return ""


_PLUGIN_DISTS: dict[str, tuple[str, str]] = {}


def plugin_distribution(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) a plugin came from, or ("", "") when local."""
    return _PLUGIN_DISTS.get(plugin_name, ("", ""))


def plugin_origin(plugin_name: str) -> str:
    """``"plugin 'x' from dist 1.0"``: whom to tell when the plugin fails."""
    dist, version = plugin_distribution(plugin_name)
    where = f" from {dist} {version}".rstrip() if dist else ""
    return f"plugin {plugin_name!r}{where}"


@dataclass(frozen=True)
class Registered:
    spec: Any  # an instance of its hook's HOOK_TYPES entry (call_hooks checks)
    plugin: str


#: hook -> the spec type each of its results must be.
HOOK_TYPES = {
    "onnxgate_converters": ConverterSpec,
    "onnxgate_environments": EnvironmentSpec,
    "onnxgate_deploy_targets": DeployTargetSpec,
    "onnxgate_compare_rules": CompareRule,
    "onnxgate_report_formats": ReportFormat,
}


def call_hooks(pm: PluginManager) -> dict[str, dict[str, list]]:
    """hook -> plugin -> its specs. A plugin whose hook raises or returns
    anything but specs joins ``pm.broken`` and contributes nothing.

    Each declaring plugin is called through ``pm.subset_hook_caller`` (every
    other declaring plugin left out), so wrappers, blocking and tracing apply
    as for any hook call, while one plugin's failure stays its own and each
    spec stays attributed to its plugin."""
    if not isinstance(pm, PluginManager):  # a bare pluggy manager built by the caller
        pm.broken, pm.deprecations = getattr(pm, "broken", {}), getattr(pm, "deprecations", {})
    results: dict[str, dict[str, list]] = {hook: {} for hook in HOOK_TYPES}
    for hook_name, kind in HOOK_TYPES.items():
        declaring = [
            impl for impl in getattr(pm.hook, hook_name).get_hookimpls() if not (impl.hookwrapper or impl.wrapper)
        ]
        for impl in declaring:
            if impl.plugin_name in pm.broken:
                continue
            others = [i.plugin for i in declaring if i.plugin_name != impl.plugin_name]
            call = pm.subset_hook_caller(hook_name, remove_plugins=others)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DeprecationWarning)
                specs, error = _call_one(call, hook_name, kind)
            _replay(caught, pm.deprecations.setdefault(impl.plugin_name, []))
            if error:
                pm.broken[impl.plugin_name] = BrokenPlugin(
                    impl.plugin_name, *plugin_distribution(impl.plugin_name), error, tuple(specs)
                )
            else:
                results[hook_name][impl.plugin_name] = specs
    for per_plugin in results.values():  # a plugin broken in one hook is out of all of them
        for name in list(per_plugin):
            if name in pm.broken:
                del per_plugin[name]
    return results


def _replay(caught, deprecations: list[str]) -> None:
    """Keep the plugin's deprecations, and warn them again as they were."""
    for w in caught:
        if issubclass(w.category, DeprecationWarning):
            deprecations.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _call_one(call, hook_name: str, kind: type) -> tuple[list, str]:
    try:
        results = call()  # one plugin's implementation: a list of at most one result
        returned = results[0] if results else None
        if returned is None:
            return [], ""
        if isinstance(returned, kind) or not hasattr(returned, "__iter__"):
            return [], f"{hook_name}() returned {type(returned).__name__}, not an iterable of {kind.__name__}"
        specs = list(returned)  # generators run here
    except Exception as exc:
        return [], f"{hook_name}() raised {one_line(exc, with_type=True)}"
    good = [s for s in specs if isinstance(s, kind)]
    bad = [s for s in specs if not isinstance(s, kind)]
    if bad:
        return good, f"{hook_name}() returned a {type(bad[0]).__name__}, not a {kind.__name__}"
    return specs, ""


def _collect(results: dict[str, list], hook_name: str) -> dict[str, Registered]:
    """One hook's specs keyed by name; two plugins claiming a name is an error."""
    found: dict[str, Registered] = {}
    for plugin, specs in results.items():
        for spec in specs:
            previous = found.get(spec.name)
            if previous is not None:
                raise PluginError(
                    f"{hook_name}: name {spec.name!r} is claimed by both plugin "
                    f"{previous.plugin!r} and plugin {plugin!r}"
                )
            found[spec.name] = Registered(spec, plugin)
    return found


class Registry:
    """Everything plugins declared, keyed by normalised name."""

    def __init__(self, pm: pluggy.PluginManager | None = None):
        # call_hooks gives a bare pluggy manager our manager's broken/deprecations attributes
        self.pm = cast(PluginManager, pm or get_plugin_manager())
        results = call_hooks(self.pm)
        self._converters = _collect(results["onnxgate_converters"], "onnxgate_converters")
        self._environments = _collect(results["onnxgate_environments"], "onnxgate_environments")
        self._targets = _collect(results["onnxgate_deploy_targets"], "onnxgate_deploy_targets")
        self._rules = _collect(results["onnxgate_compare_rules"], "onnxgate_compare_rules")
        self._formats = _collect(results["onnxgate_report_formats"], "onnxgate_report_formats")

    # broken plugins ---------------------------------------------------------
    def broken(self) -> list[BrokenPlugin]:
        return [self.pm.broken[name] for name in sorted(self.pm.broken)]

    def broken_for(self, name: str) -> BrokenPlugin | None:
        """The broken plugin a converter name most likely belongs to: one that
        returned a spec of that name, or whose plugin name it is."""
        key = normalize_name(name)
        for broken in self.broken():
            if key == normalize_name(broken.plugin) or key in {getattr(s, "name", "") for s in broken.specs}:
                return broken
        return None

    def broken_converters(self) -> list[ConverterSpec]:
        """Converter specs broken plugins did return: detection consults them
        only to say why a source cannot be converted."""
        return [s for b in self.broken() for s in b.specs if isinstance(s, ConverterSpec)]

    # converters -----------------------------------------------------------
    def converters(self) -> list[ConverterSpec]:
        return [r.spec for r in self._converters.values()]

    def converter(self, name: str) -> ConverterSpec:
        key = normalize_name(name)
        if key not in self._converters:
            broken = self.broken_for(name)
            if broken is not None:
                raise KeyError(f"framework {name!r}: {broken.describe()}")
            known = ", ".join(sorted(self._converters)) or "none"
            raise KeyError(f"unknown framework {name!r} (known: {known})")
        return self._converters[key].spec

    def plugin_of(self, name: str) -> str:
        return self._converters[normalize_name(name)].plugin

    # environments and targets --------------------------------------------
    def environments(self) -> list[EnvironmentSpec]:
        return [r.spec for r in self._environments.values()]

    def environment(self, name: str) -> EnvironmentSpec:
        key = normalize_name(name)
        if key not in self._environments:
            raise KeyError(f"unknown environment {name!r} (known: {', '.join(sorted(self._environments)) or 'none'})")
        return self._environments[key].spec

    def deploy_targets(self) -> list[DeployTargetSpec]:
        return [r.spec for r in self._targets.values()]

    def deploy_target(self, name: str) -> DeployTargetSpec:
        key = normalize_name(name)
        if key not in self._targets:
            raise KeyError(f"unknown deploy target {name!r} (known: {', '.join(sorted(self._targets)) or 'none'})")
        return self._targets[key].spec

    # comparison rules and report formats ---------------------------------
    def compare_rules(self) -> list[CompareRule]:
        """Every rule, highest priority first (ties: by name)."""
        return sorted((r.spec for r in self._rules.values()), key=lambda rule: (-rule.priority, rule.name))

    def report_formats(self) -> list[ReportFormat]:
        return [r.spec for r in self._formats.values()]

    def report_format(self, name: str) -> ReportFormat:
        key = normalize_name(name)
        if key not in self._formats:
            raise KeyError(f"unknown report format {name!r} (known: {', '.join(sorted(self._formats)) or 'none'})")
        return self._formats[key].spec


def missing_requirements(requires: Iterable[str]) -> list[str]:
    """Distributions from ``requires`` that are not installed (no import)."""
    missing = []
    for req in requires:
        try:
            metadata.version(req)
        except metadata.PackageNotFoundError:
            missing.append(req)
    return missing
