"""``onnxgate plugins [NAME]``: which converters exist and which can run
here; with NAME, what one converter reads, accepts and needs."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plugins",
        help="list converter plugins and whether they are usable; describe one "
        "(onnxgate plugins NAME); check one (onnxgate plugins check NAME)",
    )
    p.add_argument(
        "what",
        nargs="*",
        metavar="NAME | check NAME",
        help="a converter to describe, or 'check NAME' to check an installed plugin without pytest "
        "(specs, detection cost, requirements, clashes)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def rows(registry=None) -> list:
    from onnxgate.plugins.manager import Registry, distribution_version, missing_requirements, plugin_distribution

    registry = registry or Registry()
    out = []
    for spec in sorted(registry.converters(), key=lambda s: s.name):
        plugin = registry.plugin_of(spec.name)
        dist, version = plugin_distribution(plugin)
        missing = missing_requirements(spec.requires)
        framework_version = distribution_version(spec.framework_distribution)
        if spec.environment:  # its requirements live in that environment (marker file, no import)
            from onnxgate.pipeline.envs.isolated import converter_status

            missing, framework_version = converter_status(registry, spec)
        out.append(
            {
                "name": spec.name,
                "framework": spec.framework,
                "framework_version": framework_version,
                "plugin": plugin,
                "from": f"{dist} {version}".strip() or "local",
                "environment": spec.environment or "",
                "usable": not missing,
                "missing": missing,
            }
        )
    for broken in registry.broken():
        out.append(
            {
                "name": broken.plugin,
                "framework": "",
                "framework_version": "",
                "plugin": broken.plugin,
                "from": broken.origin,
                "environment": "",
                "usable": False,
                "missing": [],
                "broken": broken.error,
            }
        )
    return out


def describe(name: str) -> dict:
    """One converter, everything a user needs before ``--option``/``--framework``."""
    from onnxgate.plugins.errors import UsageError
    from onnxgate.plugins.manager import Registry

    registry = Registry()
    try:
        spec = registry.converter(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    row = next(r for r in rows(registry) if r["name"] == spec.name)
    return {
        **row,
        "description": spec.description,
        "suffixes": list(spec.suffixes),
        "unsafe_suffixes": list(spec.unsafe_suffixes),
        "object_types": list(spec.object_types),
        "options": [
            {"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help} for o in spec.options
        ],
        "tolerance": {"rtol": spec.tolerance.rtol, "atol": spec.tolerance.atol},
        "default_opset": spec.default_opset,
        "requires": list(spec.requires),
        "runs_original": spec.run is not None,
    }


def _print_description(d: dict) -> None:
    def line(label, value):
        print(f"{label + ':':<14}{value}")

    line("converter", d["name"] + (f" - {d['description']}" if d["description"] else ""))
    line("framework", f"{d['framework']} {d['framework_version'] or '(not installed)'}".strip())
    line("plugin", f"{d['plugin']} ({d['from']})")
    line("files", ", ".join(d["suffixes"]) or "-")
    if d["unsafe_suffixes"]:
        line("pickled", ", ".join(d["unsafe_suffixes"]) + " (need --trust-source)")
    line("objects", ", ".join(d["object_types"]) or "-")
    line("tolerance", f"rtol={d['tolerance']['rtol']:g} atol={d['tolerance']['atol']:g}")
    if d["default_opset"]:
        line("opset", d["default_opset"])
    if d["environment"]:
        line("environment", d["environment"] + f" (onnxgate env create {d['environment']})")
    line("requires", ", ".join(d["requires"]) or "-")
    line("status", "ok" if d["usable"] else "missing: " + ", ".join(d["missing"]))
    if not d["options"]:
        line("options", "none")
        return
    print("options (--option KEY=VALUE):")
    for o in d["options"]:
        default = "" if o["default"] is None else f", default {o['default']!r}"
        print(f"  {o['name']} ({o['type']}{default})" + (f": {o['help']}" if o["help"] else ""))


def run(args) -> int:
    from onnxgate.plugins.errors import UsageError

    what = list(args.what)
    if what[:1] == ["check"]:
        if len(what) != 2:
            raise UsageError("usage: onnxgate plugins check NAME")
        return run_check(what[1], args.json)
    if len(what) > 1:
        raise UsageError("usage: onnxgate plugins [NAME | check NAME]")
    if what:
        described = describe(what[0])
        if args.json:
            print(json.dumps(described, indent=2))
        else:
            _print_description(described)
        return 0
    from onnxgate.plugins.manager import Registry

    registry = Registry()
    data = rows(registry)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from onnxgate.pipeline.report.summary import table

    print(
        table(
            {
                "name": r["name"],
                "framework": r["framework"],
                "version": r["framework_version"] or "-",
                "from": r["from"],
                "status": _status(r),
            }
            for r in data
        )
    )
    # the other registries plugins extend, by name (details: plugins/hookspecs.py)
    print("\ncomparison rules: " + ", ".join(rule.name for rule in registry.compare_rules()))
    print("report formats:   " + ", ".join(sorted(f.name for f in registry.report_formats())))
    print("deploy targets:   " + ", ".join(sorted(t.name for t in registry.deploy_targets())))
    return 0


def _status(row: dict) -> str:
    if row.get("broken"):
        return "broken: " + row["broken"]
    return "ok" if row["usable"] else "missing: " + ", ".join(row["missing"])


def run_check(name: str, as_json: bool) -> int:
    from onnxgate.pipeline.cli import plugin_check

    findings = plugin_check.check(name)
    if as_json:
        print(json.dumps(findings, indent=2))
    else:
        for line in plugin_check.lines(findings):
            print(line)
    return 0 if findings["ok"] else 1
