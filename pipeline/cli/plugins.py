"""``onnxgate plugins``: which converters exist and which can run here."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list converter plugins and whether they are usable")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


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
            "status": "ok" if r["usable"] else "missing: " + ", ".join(r["missing"]),
        }
        for r in data
    ))
    return 0
