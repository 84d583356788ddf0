"""``onnxgate plugins``: which converters exist and which can run here."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list converter plugins and whether they are usable; check one")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="plugins_action", metavar="ACTION")
    check = actions.add_parser(
        "check", help="check an installed plugin without pytest: specs, detection cost, requirements, clashes")
    check.add_argument("name", help="plugin (entry-point) name, or the name of a converter it declares")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=run_check)


def rows() -> list:
    from onnxgate.plugins.manager import Registry, distribution_version, missing_requirements, plugin_distribution

    registry = Registry()
    out = []
    for spec in sorted(registry.converters(), key=lambda s: s.name):
        plugin = registry.plugin_of(spec.name)
        dist, version = plugin_distribution(plugin)
        missing = missing_requirements(spec.requires)
        framework_version = distribution_version(spec.framework_distribution)
        if spec.environment:  # its requirements live in that environment (marker file, no import)
            from onnxgate.pipeline.envs.isolated import converter_status

            missing, framework_version = converter_status(registry, spec)
        out.append({
            "name": spec.name,
            "framework": spec.framework,
            "framework_version": framework_version,
            "plugin": plugin,
            "from": f"{dist} {version}".strip() or "local",
            "environment": spec.environment or "",
            "usable": not missing,
            "missing": missing,
        })
    for broken in registry.broken():
        out.append({
            "name": broken.plugin,
            "framework": "",
            "framework_version": "",
            "plugin": broken.plugin,
            "from": broken.origin,
            "environment": "",
            "usable": False,
            "missing": [],
            "broken": broken.error,
        })
    return out


def run(args) -> int:
    data = rows()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from onnxgate.pipeline.report.summary import table

    print(table(
        {
            "name": r["name"],
            "framework": r["framework"],
            "version": r["framework_version"] or "-",
            "from": r["from"],
            "status": _status(r),
        }
        for r in data
    ))
    return 0


def _status(row: dict) -> str:
    if row.get("broken"):
        return "broken: " + row["broken"]
    return "ok" if row["usable"] else "missing: " + ", ".join(row["missing"])


def run_check(args) -> int:
    from onnxgate.pipeline.cli import plugin_check

    findings = plugin_check.check(args.name)
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        for line in plugin_check.lines(findings):
            print(line)
    return 0 if findings["ok"] else 1
