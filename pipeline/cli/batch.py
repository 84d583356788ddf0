"""``onnxgate batch MANIFEST``: convert and validate many models (docs/batch.md)."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

from onnxgate.plugins.errors import UsageError

#: Exit code of a batch stopped by SIGINT/SIGTERM (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


def add_parser(sub) -> None:
    from onnxgate.pipeline.cli.args import add_gate_options

    p = sub.add_parser(
        "batch",
        help="convert and validate every model in a manifest",
        description="Convert and validate every model of a TOML or JSON manifest; writes MODEL.onnx, "
        "MODEL.report.json and MODEL.html per model, and summary.json, junit.xml, "
        "summary.md and index.html (dashboard). A rerun skips models whose result is "
        "already there for the same content. Exit code: 0 if all passed, else the "
        "largest exit code among the models; 2 for a bad manifest (nothing runs); 130 "
        "when interrupted. See docs/batch.md.",
    )
    p.add_argument("manifest", type=Path, help="a .toml (or .json) manifest")
    p.add_argument("--out", type=Path, default=Path("onnxgate-out"), help="output folder (default onnxgate-out)")
    p.add_argument("--jobs", type=int, default=1, help="models converted in parallel (worker processes)")
    run_ = p.add_argument_group("execution")
    run_.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="per-model time limit (default 1800; an entry's 'timeout' wins)",
    )
    run_.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="per-worker memory cap, e.g. 4G or 512M: a model passing it is 'out-of-memory'",
    )
    run_.add_argument(
        "--max-models-per-worker",
        type=int,
        default=0,
        metavar="N",
        help="replace a worker after N models (bounds memory growth; default: never)",
    )
    run_.add_argument("--max-failures", type=int, metavar="N", help="stop scheduling after N failed models")
    run_.add_argument("--rerun-failed", action="store_true", help="redo models whose cached result failed")
    run_.add_argument("--force", action="store_true", help="redo every model, ignoring the cache")
    run_.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="local worker processes (default) or a Dask cluster",
    )
    run_.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="Dask: an existing cluster's scheduler")
    run_.add_argument(
        "--dask-workers",
        type=int,
        default=0,
        metavar="N",
        help="Dask: start a LocalCluster of N workers on this machine (threads of this process; each model converts in its worker's supervised child)",
    )
    run_.add_argument(
        "--ship",
        action="store_true",
        help="Dask: send model files to the workers and outputs back as bytes (no shared file system)",
    )
    shown = p.add_argument_group("display")
    shown.add_argument("--quiet", action="store_true", help="print only the summary")
    shown.add_argument("--json", action="store_true", help="print the summary as JSON")
    shown.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    add_gate_options(p)
    p.set_defaults(run=run)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text or "", re.IGNORECASE)
    if not match:
        raise UsageError(f"--max-memory {text!r}: expected a size like 4G, 512M or 1500000000")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def settings_from_args(args):
    from onnxgate.pipeline.batch.runner import DEFAULT_TIMEOUT, Settings
    from onnxgate.pipeline.cli.args import gate_from_args

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be > 0")
    for flag, value in (("--max-failures", args.max_failures), ("--max-models-per-worker", args.max_models_per_worker)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be >= 0")
    if args.executor == "dask" and not (args.scheduler or args.dask_workers > 0):
        raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT or --dask-workers N")
    if args.executor != "dask" and (args.scheduler or args.dask_workers or args.ship):
        raise UsageError("--scheduler, --dask-workers and --ship need --executor dask")
    if args.accept_baseline:
        raise UsageError("--accept-baseline is per model: run `onnxgate baseline accept MODEL.report.json`")
    return Settings(
        out=args.out,
        jobs=args.jobs,
        timeout=args.timeout or DEFAULT_TIMEOUT,
        max_memory=parse_size(args.max_memory) if args.max_memory else None,
        max_models_per_worker=args.max_models_per_worker,
        max_failures=args.max_failures,
        rerun_failed=args.rerun_failed,
        force=args.force,
        executor=args.executor,
        scheduler=args.scheduler,
        dask_workers=args.dask_workers,
        ship=args.ship,
        latency=not args.no_latency,
        # the batch-wide gate; each model's drift baseline is found next to its output
        gate=gate_from_args(args, None),
    )


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from onnxgate.pipeline.batch import progress as progress_mod
    from onnxgate.pipeline.batch import runner
    from onnxgate.pipeline.report.summary import table

    settings = settings_from_args(args)
    entries = runner.load(args.manifest)  # every manifest error at once, before any work
    display = progress_mod.for_terminal(args.quiet or args.json)
    previous = signal.signal(signal.SIGTERM, _terminate)
    rows = []
    try:
        for row in runner.iter_rows(entries, settings, display):
            rows.append(row)
    except KeyboardInterrupt:
        print(
            f"onnxgate: interrupted after {len(rows)} of {len(entries)} models; rerun the same command to "
            f"continue (summary in {args.out / 'summary.json'})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    doc = json.loads((args.out / "summary.json").read_text())
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc["exit_code"]
    if not args.quiet and len(rows) <= 60:
        print(
            table(
                {
                    "name": r["name"],
                    "framework": r["framework"],
                    "verdict": r["verdict"],
                    "max_abs_err": "" if r["max_abs_err"] is None else f"{r['max_abs_err']:.2g}",
                    "seconds": r["seconds"],
                    "message": (r["message"] or "")[:80],
                }
                for r in doc["models"]
            )
        )
        print()
    passed = sum(r["exit_code"] == 0 for r in doc["models"])
    counts = ", ".join(f"{n} {v}" for v, n in sorted(doc["counts"].items()))
    print(
        f"{passed}/{len(doc['models'])} models passed the gate ({counts}; {doc['cached']} cached) in "
        f"{doc['seconds']:.1f} s; dashboard: {args.out / 'index.html'}"
    )
    return doc["exit_code"]
