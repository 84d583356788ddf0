"""``onnxgate plugins check NAME``: what can be checked of an installed plugin
without pytest or its framework: that it loads, its specs, that detection
imports no framework (in a subprocess), its requirements, name clashes."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from onnxgate.plugins.errors import UsageError

_DETECT_SCRIPT = r"""
import json, sys
from pathlib import Path
from onnxgate.plugins import detect
from importlib import metadata
from onnxgate.plugins.manager import ENTRY_POINT_GROUP, call_hooks, get_plugin_manager
# this plugin alone: another plugin's module-level imports are not its fault
ep = next(e for e in metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name == sys.argv[2])
pm = get_plugin_manager([ep.load()], load_entry_points=False)
specs = [s for found in call_hooks(pm)["onnxgate_converters"].values() for s in found]
for p in json.loads(sys.argv[1]):
    try:
        detect.for_path(Path(p), specs)
    except detect.DetectionError:
        pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

#: onnxgate's own dependencies: importing them is not importing a framework.
_BASE = {"numpy", "onnx", "onnxruntime", "pluggy", "google"}


def check(name: str) -> dict[str, Any]:
    from onnxgate.plugins import versioning
    from onnxgate.plugins.manager import (
        call_hooks,
        get_plugin_manager,
        plugin_distribution,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # collected per plugin, shown below
        pm = get_plugin_manager()
        declared = call_hooks(pm)
    plugin = _find(name, pm, declared)
    dist, version = plugin_distribution(plugin)
    checks: list[dict[str, Any]] = []

    def add(ok: bool, message: str, level: str = "") -> None:
        checks.append({"ok": ok, "level": level or ("ok" if ok else "fail"), "message": message})

    obj = pm.get_plugin(plugin)
    api = getattr(obj, versioning.DECLARATION, None) if obj is not None else None
    broken = pm.broken.get(plugin)
    if broken is not None:
        add(False, f"broken: {broken.error}")
    else:
        add(True, "loads; hooks return specs")
    specs = {hook: declared[hook].get(plugin, []) for hook in declared}
    if broken is not None:
        specs["onnxgate_converters"] = [s for s in broken.specs if hasattr(s, "convert")]
    for message in dict.fromkeys(pm.deprecations.get(plugin, [])):  # works today, will not forever
        add(True, f"deprecated: {message}", level="warn")
    for spec in specs["onnxgate_converters"]:
        for problem in _converter_problems(spec, declared):
            add(False, f"converter {spec.name!r}: {problem}")
    for hook, per_plugin in declared.items():
        for spec in specs.get(hook, []):
            others = [p for p, found in per_plugin.items() if p != plugin and spec.name in {s.name for s in found}]
            if others:
                add(False, f"{hook}: name {spec.name!r} is also claimed by plugin {others[0]!r}")
    if not any("also claimed" in c["message"] for c in checks):
        add(True, "no name clashes with other plugins")
    requirement_problems = len(checks)
    for spec in specs["onnxgate_converters"]:
        for req in spec.requires:
            if any(ch in req for ch in "<>=!~[; "):
                add(
                    False,
                    f"converter {spec.name!r}: requires {req!r} is not a distribution name "
                    "(versions belong in the plugin's own dependencies)",
                )
            elif not _installed(req):
                add(False, f"converter {spec.name!r}: requires {req!r}, which is not installed here")
    needed = sorted({r for s in specs["onnxgate_converters"] for r in s.requires})
    if needed and len(checks) == requirement_problems:
        add(True, f"requirements installed: {', '.join(needed)}")
    if specs["onnxgate_converters"] and broken is None:
        checks.append(_detection_check(plugin, specs["onnxgate_converters"]))
    return {
        "plugin": plugin,
        "from": f"{dist} {version}".strip() or "local",
        "api": {"declared": api, "onnxgate": versioning.API_VERSION},
        "converters": [s.name for s in specs["onnxgate_converters"]],
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


def lines(findings: dict[str, Any]) -> list[str]:
    api = findings["api"]
    declared = f"declares API {api['declared']}" if api["declared"] else "declares no API range"
    out = [f"plugin {findings['plugin']!r} ({findings['from']}): {declared}; this onnxgate: API {api['onnxgate']}"]
    out += [f"  {c['level'].upper():4}  {c['message']}" for c in findings["checks"]]
    problems = sum(not c["ok"] for c in findings["checks"])
    out.append("result: ok" if not problems else f"result: {problems} problem{'s' if problems > 1 else ''}")
    return out


def _find(name: str, pm, declared) -> str:
    from onnxgate.plugins.spec import normalize_name

    key = normalize_name(name)
    plugins = {p for per in declared.values() for p in per} | set(pm.broken)
    plugins |= {n for n, _ in pm.list_name_plugin()}
    for plugin in sorted(plugins):
        if normalize_name(plugin) == key:
            return plugin
    for plugin, specs in declared["onnxgate_converters"].items():
        if key in {s.name for s in specs}:
            return plugin
    for plugin, broken in pm.broken.items():
        if key in {getattr(s, "name", "") for s in broken.specs}:
            return plugin
    raise UsageError(f"no installed plugin or converter named {name!r} (see: onnxgate plugins)")


def _converter_problems(spec, declared) -> list[str]:
    problems = []
    if not str(spec.framework).strip():
        problems.append("framework is empty")
    for field in ("convert", "run", "load", "inputs", "sniff", "intermediates"):
        value = getattr(spec, field, None)
        if field == "convert" and value is None or value is not None and not callable(value):
            problems.append(f"{field} is not callable")
    if not (spec.suffixes or spec.unsafe_suffixes or spec.object_types):
        problems.append("recognises nothing: give suffixes or object_types (or users must pass --framework)")
    bad = [s for s in spec.suffixes + spec.unsafe_suffixes if not (s.startswith(".") or s == "/")]
    if bad:
        problems.append(f"suffixes must start with '.': {bad}")
    if (spec.suffixes or spec.unsafe_suffixes) and spec.load is None:
        problems.append("reads files (suffixes) but has no load callable")
    undotted = [t for t in spec.object_types if "." not in t]
    if undotted:
        problems.append(f"object_types must be dotted class paths: {undotted}")
    if spec.tolerance.rtol < 0 or spec.tolerance.atol < 0:
        problems.append(f"negative tolerance {spec.tolerance}")
    if spec.environment:
        known = {s.name for per in declared["onnxgate_environments"].values() for s in per}
        if spec.environment not in known:
            problems.append(f"environment {spec.environment!r} is declared by no plugin")
    return problems


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _framework_modules(specs) -> set[str]:
    """Top-level modules of the specs' declared distributions, plus known frameworks."""
    from onnxgate.plugins.detect import HEAVY_MODULES

    dists = {d.lower().replace("_", "-") for s in specs for d in (*s.requires, s.framework_distribution or "") if d}
    modules = set(HEAVY_MODULES)
    for module, owners in metadata.packages_distributions().items():
        if any(o.lower().replace("_", "-") in dists for o in owners):
            modules.add(module)
    return modules - _BASE


def _detection_check(plugin: str, specs) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, suffix in enumerate(sorted({x for s in specs for x in s.suffixes + s.unsafe_suffixes})):
            path = Path(tmp) / (f"dir{i}" if suffix == "/" else f"probe{i}{suffix}")
            if suffix == "/":
                path.mkdir()
            else:
                path.write_bytes(b"\x00probe")
            paths.append(str(path))
        proc = subprocess.run(
            [sys.executable, "-c", _DETECT_SCRIPT, json.dumps(paths), plugin],
            capture_output=True,
            text=True,
            timeout=300,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return _finding(False, f"detection failed in a subprocess: {last}")
    heavy = sorted(set(json.loads(proc.stdout.strip().splitlines()[-1])) & _framework_modules(specs))
    if heavy:
        return _finding(
            False,
            f"detection imports {', '.join(heavy)}: import the framework inside the spec's "
            "callables, not at module level",
        )
    probes = f"{len(paths)} probe file{'s' if len(paths) != 1 else ''}"
    return _finding(True, f"detection imports no framework (the plugin alone in a subprocess, {probes})")


def _finding(ok: bool, message: str) -> dict[str, Any]:
    return {"ok": ok, "level": "ok" if ok else "fail", "message": message}
