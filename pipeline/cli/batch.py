"""``onnxgate batch MANIFEST``: convert and validate many models."""
from __future__ import annotations

import json
from pathlib import Path

from onnxgate.pipeline.gate import config as gate_config


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="convert and validate every model in a manifest",
                       description="Convert and validate every model of a JSON manifest; writes MODEL.onnx and "
                                   "MODEL.report.json per model and a summary. Exit code: 0 if all passed, else the "
                                   "largest exit code among the models.")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, default=Path("onnxgate-out"), help="output folder (default onnxgate-out)")
    p.add_argument("--jobs", type=int, default=1, help="models converted in parallel (processes)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--ci", action="store_true",
                   help="CI mode: edge values on (also when the CI environment variable is true)")
    p.add_argument("--gate-config", type=Path, metavar="FILE",
                   help="per-output rules from a .toml/.json file ([outputs.NAME] tables), for every model")
    p.set_defaults(run=run)


def run(args) -> int:
    from onnxgate.pipeline.core import atomic
    from onnxgate.pipeline.batch import runner as batch
    from onnxgate.pipeline.report.summary import table

    models = batch.load_manifest(args.manifest)
    if args.gate_config:
        gate_config.load_file(args.gate_config)  # a bad file is exit 2 before any model runs
    gate = {"ci": args.ci or None, "gate_config": args.gate_config}
    rows = batch.run_batch(models, args.out, jobs=max(1, args.jobs), gate=gate)
    atomic.write_bytes(args.out / "summary.json", json.dumps({"models": rows}, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table({k: r[k] for k in ("name", "framework", "verdict", "max_abs_err", "seconds", "message")} for r in rows))
        passed = sum(r["exit_code"] == 0 for r in rows)
        print(f"\n{passed}/{len(rows)} models passed the gate; reports in {args.out}")
    return batch.exit_code(rows)
