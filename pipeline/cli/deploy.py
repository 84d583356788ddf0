"""``onnxgate deploy``, ``onnxgate serve`` and ``onnxgate package``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxgate.pipeline.cli.parser import defer
from onnxgate.pipeline.deployment.record import OVERRIDE_FLAG
from onnxgate.plugins.errors import EXIT_OK, OnnxgateError, UsageError
from onnxgate.plugins.spec import normalize_name

if TYPE_CHECKING:
    from onnxgate.plugins.options import OptionSpec

EXIT_CODES = """\
exit codes:
  0  deployed and the smoke test passed (dry run: plan printed)
  1  the endpoint answered, but not like the validated model (smoke test failed)
  2  usage error, or a refused deploy: no validation record, a failed record,
     or model bytes that no longer match the record; missing Azure credentials
  3  the service or the server failed (its own message is printed)
"""


def _override(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        OVERRIDE_FLAG,
        dest="allow_unvalidated",
        action="store_true",
        help="ship a model the gate refuses (no/failed/stale record); recorded in the model's tags",
    )


def add_parser(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser(
        "deploy",
        help="register and deploy a validated model, then smoke-test the endpoint",
        description="Register MODEL.onnx, serve it, and check the endpoint answers like the "
        "validated model. Refuses a model without a passing validation record.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    d.add_argument("model", type=Path, help="the ONNX model (its MODEL.onnx.onnxgate.json record must be beside it)")
    d.add_argument("--target", default="local", help="local (default) or azureml, or a plugin's target")
    d.add_argument("--name", help="registered model name (default: the file name's stem)")
    d.add_argument(
        "--dry-run", action="store_true", help="print every resource it would create or change; send nothing"
    )
    d.add_argument("--report", type=Path, help="write the deploy report (JSON) here")
    _override(d)
    defer(d, add_target_options)  # each target declares its own flags (DeployTargetSpec.options)
    d.set_defaults(run=run_deploy)

    s = sub.add_parser(
        "serve",
        help="serve a validated model on 127.0.0.1 with Azure ML's inference server",
        description="Serve MODEL.onnx (or a model registered in the local registry, NAME or "
        "NAME:VERSION) until interrupted, after a smoke test.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    s.add_argument("model", nargs="?", help="MODEL.onnx, NAME or NAME:VERSION")
    s.add_argument("--registry", type=Path, help="file registry folder")
    s.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    s.add_argument(
        "--setup",
        action="store_true",
        help="create the serving venv (inference server + the onnxruntime that validates here) and exit",
    )
    s.add_argument("--onnxruntime", metavar="VERSION", help="with --setup: the onnxruntime version to pin")
    _override(s)
    s.set_defaults(run=run_serve)

    p = sub.add_parser(
        "package",
        help="write a deployable folder (model, score.py, environment, sample)",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to create (must not exist or be empty)")
    _override(p)
    p.set_defaults(run=run_package)


#: Destinations ``onnxgate deploy`` itself uses: no target option may take them.
RESERVED = frozenset(
    {
        "model",
        "target",
        "name",
        "dry_run",
        "report",
        "allow_unvalidated",
        "run",
        "command",
        "debug",
        "help",
        "target_options",
    }
)


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """One flag per option a deploy target declares, grouped by target; a
    flag two targets declare (of one type) is shared."""
    from onnxgate.plugins.manager import PluginError, Registry

    declared = {}
    owners: dict[str, tuple[OptionSpec, argparse.Action]] = {}
    for spec in sorted(Registry().deploy_targets(), key=lambda s: s.name):
        declared[spec.name] = {o.name: o for o in spec.options}
        group = None
        for option in spec.options:
            if option.name in owners:
                first, action = owners[option.name]
                if first.type is not option.type:
                    raise PluginError(
                        f"deploy targets declare {option.flag} with two types "
                        f"({first.type.__name__}, {option.type.__name__})"
                    )
                action.help = f"{action.help or ''} (also --target {spec.name})".strip()
                continue
            if option.name in RESERVED:
                raise PluginError(
                    f"deploy target {spec.name!r}: option {option.name!r} clashes with onnxgate "
                    f"deploy's own {option.flag if option.name != 'model' else 'MODEL'} argument"
                )
            group = group or parser.add_argument_group(f"{spec.name} target")
            kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": option.help}
            if option.type is bool:
                kwargs["action"] = "store_true"
            else:
                kwargs.update(type=option.type, metavar=option.name.upper())
                if option.default is not None:
                    kwargs["help"] = f"{option.help} (default: {option.default})".strip()
            owners[option.name] = (option, group.add_argument(option.flag, **kwargs))
    parser.set_defaults(target_options=declared)


def _target_options(args) -> dict:
    """The chosen target's options: the flags given, then its defaults. A flag
    of another target is a mistake, not something to ignore silently."""
    declared = getattr(args, "target_options", {})
    every = {name for options in declared.values() for name in options}
    given = {name: getattr(args, name) for name in sorted(every) if getattr(args, name, None) is not None}
    target = normalize_name(args.target)
    if target not in declared:
        return given  # an unknown target: deploy() says so
    mine = declared[target]
    misplaced = [name for name in given if name not in mine]
    if misplaced:
        flags = ", ".join("--" + n.replace("_", "-") for n in misplaced)
        raise UsageError(f"{flags}: not an option of --target {args.target}")
    values = {name: o.default for name, o in mine.items() if o.default is not None}
    values.update(given)
    return values


def _check_port(port) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 1 and 65535")


def run_deploy(args) -> int:
    from onnxgate.pipeline.deployment import service as deploy
    from onnxgate.pipeline.report import document as report

    if args.report:
        from onnxgate.pipeline.core.atomic import check_writable

        check_writable(args.report)
    _check_port(getattr(args, "port", None))
    try:
        result = deploy.deploy(
            args.model,
            args.target,
            name=args.name,
            dry_run=args.dry_run,
            allow_unvalidated=args.allow_unvalidated,
            options=_target_options(args),
        )
    except OnnxgateError as exc:
        if args.report:
            report.write(
                {
                    "passed": False,
                    "target": args.target,
                    "model": str(args.model),
                    "error": str(exc),
                    "exit_code": exc.exit_code,
                },
                args.report,
            )
        raise
    if args.report:
        report.write(result, args.report)
    print(summary_line(args.model, result, args.dry_run))
    return EXIT_OK


def summary_line(model: Path, result: dict, dry_run: bool) -> str:
    head = f"{'DRY RUN' if dry_run else 'DEPLOYED'} {model} -> {result.get('target')} {result.get('name', '')}"
    if result.get("version"):
        head += f" v{result['version']}"
    if dry_run:
        return head
    parts = []
    if result.get("endpoint"):
        parts.append(f"endpoint {result['endpoint']}/{result.get('deployment', '')}")
    smoke = result.get("smoke_test") or {}
    parts.append(
        "smoke test "
        + {True: "passed", None: "NOT RUN"}.get(smoke.get("passed"), "failed")
        + (f" ({smoke['message']})" if smoke.get("message") else "")
    )
    if result.get("running"):
        parts.append(f"serving at {result['scoring_uri']} (pid {result['pid']})")
    elif result.get("scoring_uri"):
        parts.append("server stopped")
    return head + ": " + "; ".join(parts)


def run_serve(args) -> int:
    from onnxgate.pipeline.envs import serving as serving_env

    if args.setup:
        venv = serving_env.create(args.onnxruntime)
        print(f"serving environment: {venv}")
        return EXIT_OK
    if not args.model:
        raise UsageError("serve: give MODEL.onnx, NAME or NAME:VERSION (or --setup)")
    _check_port(args.port)
    from onnxgate.pipeline.deployment import serve as serve_mod

    server, record = _start_for(args)
    try:
        smoke = serve_mod.smoke_test(server.scoring_uri, record) if (record or {}).get("smoke") else None
        print(
            f"serving {args.model} at {server.scoring_uri} (pid {server.pid})"
            + (f"; smoke test passed: {smoke.message}" if smoke else "; NOT smoke-tested (no record)")
        )
        print("press Ctrl-C to stop", file=sys.stderr)
        sys.stdout.flush()
        code = server.process.wait()
        raise serve_mod.ServeError(f"the server exited with code {code}; log:\n{server.log_tail()}")
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return EXIT_OK
    finally:
        server.stop()


def _start_for(args):
    """Start a server for a model file (packaged into a temp folder) or a registered version."""
    import atexit
    import os
    import shutil
    import tempfile

    from onnxgate.pipeline.deployment import package
    from onnxgate.pipeline.deployment import serve as serve_mod
    from onnxgate.pipeline.deployment import service as deploy
    from onnxgate.pipeline.deployment.registry import LocalRegistry

    path = Path(args.model)
    if path.is_file():
        gate = deploy.check(path, args.allow_unvalidated)
        from onnxgate.pipeline.core import atomic

        # the pid in the name lets the next run remove it when this one is killed
        atomic.clean_stale(Path(tempfile.gettempdir()), "onnxgate-serve-", "-")
        tmp = Path(tempfile.mkdtemp(prefix=f"onnxgate-serve-{os.getpid()}-"))
        atexit.register(shutil.rmtree, tmp, True)
        pkg = package.build(gate, tmp / "package")
    else:
        name, _, version = args.model.partition(":")
        if version and not version.isdigit():
            raise UsageError(f"{args.model}: expected NAME or NAME:VERSION (a number), or an existing file")
        reg = LocalRegistry(args.registry)
        if not (reg.root / name).is_dir() and ("/" in name or name.endswith(".onnx")):
            raise UsageError(f"{args.model}: no such file")
        ver = reg.get(name, int(version) if version else None)
        from onnxgate.pipeline.deployment import local as deploy_local

        # registered bytes are re-checked against their record: the registry is files a user can touch
        gate = deploy_local.gate_for_version(ver, args.allow_unvalidated)
        pkg = deploy_local.ensure_package(ver, gate)
    venv = serve_mod.ensure_venv_for(package.ort_version_of(gate))
    return serve_mod.start(pkg, venv, port=args.port, workers=args.workers, expected_sha256=gate.sha256), gate.record


def run_package(args) -> int:
    from onnxgate.pipeline.deployment import package
    from onnxgate.pipeline.deployment import service as deploy

    gate = deploy.check(args.model, args.allow_unvalidated)
    out = package.build(gate, args.output)
    print(f"PACKAGED {args.model} -> {out} (sha256 {gate.sha256[:12]}, onnxruntime {package.ort_version_of(gate)})")
    return EXIT_OK
