"""``onnxgate deploy``, ``onnxgate serve`` and ``onnxgate package``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnxgate.plugins.errors import EXIT_OK, OnnxgateError, UsageError

OVERRIDE = "--deploy-unvalidated-i-know-what-im-doing"

EXIT_CODES = """\
exit codes:
  0  deployed and the smoke test passed (dry run: plan printed)
  1  the endpoint answered, but not like the validated model (smoke test failed)
  2  usage error, or a refused deploy: no validation record, a failed record,
     or model bytes that no longer match the record; missing Azure credentials
  3  the service or the server failed (its own message is printed)
"""


def _override(p: argparse.ArgumentParser) -> None:
    p.add_argument(OVERRIDE, dest="allow_unvalidated", action="store_true",
                   help="ship a model the gate refuses (no/failed/stale record); recorded in the model's tags")


def add_parser(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser("deploy", help="register and deploy a validated model, then smoke-test the endpoint",
                       description="Register MODEL.onnx, serve it, and check the endpoint answers like the "
                                   "validated model. Refuses a model without a passing validation record.",
                       epilog=EXIT_CODES, formatter_class=fmt)
    d.add_argument("model", type=Path, help="the ONNX model (its MODEL.onnx.onnxgate.json record must be beside it)")
    d.add_argument("--target", default="local", help="local (default) or azureml, or a plugin's target")
    d.add_argument("--name", help="registered model name (default: the file name's stem)")
    d.add_argument("--dry-run", action="store_true", help="print every resource it would create or change; send nothing")
    d.add_argument("--report", type=Path, help="write the deploy report (JSON) here")
    _override(d)
    loc = d.add_argument_group("local target")
    loc.add_argument("--registry", type=Path, help="file registry folder (default: $ONNXGATE_REGISTRY or "
                                                   "~/.local/share/onnxgate/registry)")
    loc.add_argument("--keep-running", action="store_true", help="leave the server running after the smoke test")
    loc.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    az = d.add_argument_group("azureml target")
    az.add_argument("--workspace-config", type=Path, help="Azure ML config.json (subscription_id, resource_group, "
                                                          "workspace_name)")
    az.add_argument("--subscription-id")
    az.add_argument("--resource-group")
    az.add_argument("--workspace")
    az.add_argument("--endpoint", help="online endpoint name (default: onnxgate-NAME)")
    az.add_argument("--deployment", default="blue", help="deployment name (default: blue)")
    az.add_argument("--instance-type", help="VM size (default: Standard_DS3_v2, the smallest Azure recommends)")
    az.add_argument("--instance-count", type=int, default=1)
    az.add_argument("--traffic", type=int, metavar="PERCENT",
                    help="traffic share for this deployment; the rest goes to the endpoint's other deployment "
                         "(default: 100 on a new endpoint, unchanged otherwise)")
    az.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each long-running operation")
    az.add_argument("--request-timeout", type=float, metavar="SECONDS",
                    help="scoring request timeout of the deployment (default 90, at most 180; Azure's own is 5)")
    az.add_argument("--max-concurrent-requests", type=int, metavar="N",
                    help="requests one instance works on at once (default 1)")
    d.set_defaults(run=run_deploy)

    s = sub.add_parser("serve", help="serve a validated model on 127.0.0.1 with Azure ML's inference server",
                       description="Serve MODEL.onnx (or a model registered in the local registry, NAME or "
                                   "NAME:VERSION) until interrupted, after a smoke test.",
                       epilog=EXIT_CODES, formatter_class=fmt)
    s.add_argument("model", nargs="?", help="MODEL.onnx, NAME or NAME:VERSION")
    s.add_argument("--registry", type=Path, help="file registry folder")
    s.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    s.add_argument("--setup", action="store_true",
                   help="create the serving venv (inference server + the onnxruntime that validates here) and exit")
    s.add_argument("--onnxruntime", metavar="VERSION", help="with --setup: the onnxruntime version to pin")
    _override(s)
    s.set_defaults(run=run_serve)

    p = sub.add_parser("package", help="write a deployable folder (model, score.py, environment, sample)",
                       epilog=EXIT_CODES, formatter_class=fmt)
    p.add_argument("model", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to create (must not exist or be empty)")
    _override(p)
    p.set_defaults(run=run_package)


LOCAL_ONLY = ("registry", "keep_running", "port")
AZUREML_ONLY = ("workspace_config", "subscription_id", "resource_group", "workspace", "endpoint",
                "instance_type", "traffic", "request_timeout", "max_concurrent_requests")


def _target_options(args) -> dict:
    keys = LOCAL_ONLY + AZUREML_ONLY + ("deployment", "instance_count", "timeout")
    # `is not`: a 0 given on the command line is a value to check, not "unset"
    given = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None and getattr(args, k) is not False}
    # an option of the other built-in target is a mistake, not something to ignore silently
    wrong = {"local": AZUREML_ONLY, "azureml": LOCAL_ONLY}.get(args.target, ())
    misplaced = [k for k in wrong if k in given]
    if misplaced:
        flags = ", ".join("--" + k.replace("_", "-") for k in misplaced)
        raise UsageError(f"{flags}: not an option of --target {args.target}")
    return given


def _check_port(port) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 1 and 65535")


def run_deploy(args) -> int:
    from onnxgate.pipeline.deployment import service as deploy
    from onnxgate.pipeline.report import document as report

    if args.report:
        from onnxgate.pipeline.core.atomic import check_writable

        check_writable(args.report)
    if args.traffic is not None and not 0 <= args.traffic <= 100:
        raise UsageError(f"--traffic {args.traffic}: must be 0..100")
    _check_port(args.port)
    try:
        result = deploy.deploy(args.model, args.target, name=args.name, dry_run=args.dry_run,
                               allow_unvalidated=args.allow_unvalidated, options=_target_options(args))
    except OnnxgateError as exc:
        if args.report:
            report.write({"passed": False, "target": args.target, "model": str(args.model),
                          "error": str(exc), "exit_code": exc.exit_code}, args.report)
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
    parts.append("smoke test " + {True: "passed", None: "NOT RUN"}.get(smoke.get("passed"), "failed")
                 + (f" ({smoke['message']})" if smoke.get("message") else ""))
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
        print(f"serving {args.model} at {server.scoring_uri} (pid {server.pid})"
              + (f"; smoke test passed: {smoke.message}" if smoke else "; NOT smoke-tested (no record)"))
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

    from onnxgate.pipeline.deployment import service as deploy
    from onnxgate.pipeline.deployment import package
    from onnxgate.pipeline.deployment import serve as serve_mod
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
    from onnxgate.pipeline.deployment import service as deploy
    from onnxgate.pipeline.deployment import package

    gate = deploy.check(args.model, args.allow_unvalidated)
    out = package.build(gate, args.output)
    print(f"PACKAGED {args.model} -> {out} (sha256 {gate.sha256[:12]}, onnxruntime "
          f"{package.ort_version_of(gate)})")
    return EXIT_OK
