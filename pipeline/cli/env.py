"""``onnxgate env``: the isolated environments some converters run in."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "env",
        help="create, list and remove the environments some converters run in",
        description="Some converters (mxnet, chainer) need a Python environment of their own. "
        "Environments live under $ONNXGATE_HOME/envs (default "
        "${XDG_DATA_HOME:-~/.local/share}/onnxgate/envs).",
    )
    actions = p.add_subparsers(dest="env_action", metavar="ACTION")
    ls = actions.add_parser("list", help="each declared environment, its state and converters")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    create = actions.add_parser("create", help="build an environment (a no-op when it is ready)")
    create.add_argument("name")
    create.add_argument("--force", action="store_true", help="rebuild even when it is ready")
    path = actions.add_parser("path", help="print an environment's folder (exit 2 when not created)")
    path.add_argument("name")
    path.add_argument("--python", action="store_true", help="print its interpreter instead")
    remove = actions.add_parser("remove", help="delete an environment")
    remove.add_argument("name")
    p.set_defaults(run=run)


def _spec(registry, name):
    from onnxgate.plugins.errors import UsageError

    try:
        return registry.environment(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def rows(registry=None) -> list:
    from onnxgate.pipeline.envs import isolated as environments
    from onnxgate.plugins.manager import Registry

    registry = registry or Registry()
    users: dict[str, list[str]] = {}
    for conv in registry.converters():
        if conv.environment:
            users.setdefault(conv.environment, []).append(conv.name)
    out = []
    for spec in sorted(registry.environments(), key=lambda s: s.name):
        st = environments.status(spec)
        out.append(
            {
                "name": spec.name,
                "state": st.state,
                "path": str(st.path),
                "converters": sorted(users.get(spec.name, [])),
                "description": spec.description,
            }
        )
    return out


def run(args) -> int:
    from onnxgate.pipeline.envs import isolated as environments
    from onnxgate.plugins.errors import EXIT_USAGE
    from onnxgate.plugins.manager import Registry

    action = getattr(args, "env_action", None)
    if not action:
        print("usage: onnxgate env {list,create,path,remove} ...", file=sys.stderr)
        return EXIT_USAGE
    registry = Registry()
    if action == "list":
        data = rows(registry)
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        from onnxgate.pipeline.report.summary import table

        print(
            table(
                {
                    "name": r["name"],
                    "state": r["state"],
                    "converters": ", ".join(r["converters"]) or "-",
                    "path": r["path"],
                }
                for r in data
            )
        )
        return 0
    spec = _spec(registry, args.name)
    if action == "create":
        st = environments.create(spec, force=args.force, log=lambda line: print(line, file=sys.stderr))
        print(st.path)
        return 0
    if action == "path":
        st = environments.status(spec)
        if not st.ready:
            print(f"onnxgate: error: {st.hint()}", file=sys.stderr)
            return EXIT_USAGE
        print(environments.python_of(st.path) if args.python else st.path)
        return 0
    removed = environments.remove(spec)
    print(f"removed {environments.env_path(spec.name)}" if removed else f"environment {spec.name!r} does not exist")
    return 0
