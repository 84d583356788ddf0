"""Plugin manager and the registries built from hook results."""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import Dict, Iterable, List, Optional, Tuple

import pluggy

from . import hookspecs
from .helpers import distribution_version, installed_distribution  # noqa: F401 (re-exported)
from .spec import CompareRule, ConverterSpec, DeployTargetSpec, EnvironmentSpec, ReportFormat, normalize_name

ENTRY_POINT_GROUP = "onnxgate"
#: Comma-separated plugin (entry-point) names that are not loaded.
DISABLE_ENV = "ONNXGATE_DISABLE_PLUGINS"


class PluginError(Exception):
    """A plugin is broken or two plugins conflict."""


def disabled_plugins() -> set:
    raw = os.environ.get(DISABLE_ENV, "")
    return {normalize_name(n) for n in raw.split(",") if n.strip()}


def get_plugin_manager(plugins: Iterable[object] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager: the given plugin objects, then every entry point.

    Built-in converters are entry points too, so they load through exactly the
    path a third-party plugin uses.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = disabled_plugins()
    for plugin in plugins:
        # readable names in conflict messages (pluggy would use the object id)
        pm.register(plugin, name=getattr(plugin, "__name__", None) or type(plugin).__name__)
    if load_entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if normalize_name(ep.name) in blocked or pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not kill the CLI
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            pm.register(module, name=ep.name)
            dist = getattr(ep, "dist", None)
            if dist is not None:
                _PLUGIN_DISTS[ep.name] = (dist.metadata["Name"], dist.version)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} has an unknown hook implementation: {exc}") from exc
    return pm


_PLUGIN_DISTS: Dict[str, Tuple[str, str]] = {}


def plugin_distribution(plugin_name: str) -> Tuple[str, str]:
    """(distribution, version) a plugin came from, or ("", "") when local."""
    return _PLUGIN_DISTS.get(plugin_name, ("", ""))


@dataclass(frozen=True)
class Registered:
    spec: object
    plugin: str


def _collect(pm: pluggy.PluginManager, hook_name: str) -> Dict[str, Registered]:
    """Call one hook through pluggy, keep who said what, refuse duplicates.

    Each declaring plugin is called through ``pm.subset_hook_caller`` (every
    other declaring plugin left out), so wrappers, blocking and tracing apply
    as for any hook call while each spec stays attributed to its plugin.
    """
    caller = getattr(pm.hook, hook_name)
    declaring = [impl for impl in caller.get_hookimpls() if not (impl.hookwrapper or impl.wrapper)]
    others = {impl.plugin_name: impl.plugin for impl in declaring}
    found: Dict[str, Registered] = {}
    for impl in declaring:
        removed = [plugin for name, plugin in others.items() if name != impl.plugin_name]
        for result in pm.subset_hook_caller(hook_name, remove_plugins=removed)():
            for spec in result or ():
                previous = found.get(spec.name)
                if previous is not None:
                    raise PluginError(
                        f"{hook_name}: name {spec.name!r} is claimed by both plugin "
                        f"{previous.plugin!r} and plugin {impl.plugin_name!r}"
                    )
                found[spec.name] = Registered(spec, impl.plugin_name)
    return found


class Registry:
    """Everything plugins declared, keyed by normalised name."""

    def __init__(self, pm: Optional[pluggy.PluginManager] = None):
        self.pm = pm or get_plugin_manager()
        self._converters = _collect(self.pm, "onnxgate_converters")
        self._environments = _collect(self.pm, "onnxgate_environments")
        self._targets = _collect(self.pm, "onnxgate_deploy_targets")
        self._rules = _collect(self.pm, "onnxgate_compare_rules")
        self._formats = _collect(self.pm, "onnxgate_report_formats")

    # converters -----------------------------------------------------------
    def converters(self) -> List[ConverterSpec]:
        return [r.spec for r in self._converters.values()]

    def converter(self, name: str) -> ConverterSpec:
        key = normalize_name(name)
        if key not in self._converters:
            known = ", ".join(sorted(self._converters)) or "none"
            raise KeyError(f"unknown framework {name!r} (known: {known})")
        return self._converters[key].spec

    def plugin_of(self, name: str) -> str:
        return self._converters[normalize_name(name)].plugin

    # environments and targets --------------------------------------------
    def environments(self) -> List[EnvironmentSpec]:
        return [r.spec for r in self._environments.values()]

    def environment(self, name: str) -> EnvironmentSpec:
        key = normalize_name(name)
        if key not in self._environments:
            raise KeyError(f"unknown environment {name!r} (known: {', '.join(sorted(self._environments)) or 'none'})")
        return self._environments[key].spec

    def deploy_targets(self) -> List[DeployTargetSpec]:
        return [r.spec for r in self._targets.values()]

    def deploy_target(self, name: str) -> DeployTargetSpec:
        key = normalize_name(name)
        if key not in self._targets:
            raise KeyError(f"unknown deploy target {name!r} (known: {', '.join(sorted(self._targets)) or 'none'})")
        return self._targets[key].spec

    # comparison rules and report formats ---------------------------------
    def compare_rules(self) -> List[CompareRule]:
        """Every rule, highest priority first (ties: by name)."""
        return sorted((r.spec for r in self._rules.values()), key=lambda rule: (-rule.priority, rule.name))

    def report_formats(self) -> List[ReportFormat]:
        return [r.spec for r in self._formats.values()]

    def report_format(self, name: str) -> ReportFormat:
        key = normalize_name(name)
        if key not in self._formats:
            raise KeyError(f"unknown report format {name!r} (known: {', '.join(sorted(self._formats)) or 'none'})")
        return self._formats[key].spec


def missing_requirements(requires: Iterable[str]) -> List[str]:
    """Distributions from ``requires`` that are not installed (no import)."""
    missing = []
    for req in requires:
        try:
            metadata.version(req)
        except metadata.PackageNotFoundError:
            missing.append(req)
    return missing
