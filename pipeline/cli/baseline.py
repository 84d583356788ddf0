"""``onnxgate baseline``: accept a report as a model's baseline, or compare one with it."""

from __future__ import annotations

import json
from pathlib import Path

from onnxgate.pipeline.gate import drift
from onnxgate.pipeline.report.summary import table
from onnxgate.plugins.errors import EXIT_OK, EXIT_VALIDATION_FAILED, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help="accept a validation report as the model's error baseline (drift)",
        description="A baseline records each output's max error; later runs of convert/validate "
        "load MODEL.onnx.baseline.json and fail when an error grows beyond "
        "--drift-factor. Commit the baseline next to the model.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    a = verbs.add_parser("accept", help="write REPORT.json's errors as the baseline")
    a.add_argument("report", type=Path, help="a JSON report of a passing run")
    a.add_argument("-o", "--output", type=Path, help="baseline file (default: the report's ONNX path + .baseline.json)")
    a.add_argument("--force", action="store_true", help="accept a failed report too")
    a.set_defaults(run=run)
    c = verbs.add_parser("compare", help="compare REPORT.json with a baseline, print per-output drift")
    c.add_argument("report", type=Path)
    c.add_argument("baseline", type=Path)
    c.add_argument("--drift-factor", type=float, default=10.0)
    c.add_argument("--drift-floor", type=float, default=1e-6)
    c.set_defaults(run=run)
    p.set_defaults(run=run)


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"report {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"report {path}: not a JSON report: {exc}") from exc
    if not isinstance(report, dict) or "cases" not in report:
        raise UsageError(f"report {path}: not an onnxgate report (no 'cases')")
    return report


def run(args) -> int:
    if getattr(args, "verb", None) == "accept":
        report = _read_report(args.report)
        output = args.output
        if output is None:
            model = report.get("onnx", {}).get("path")
            if not model:
                raise UsageError("the report names no ONNX path; pass -o FILE")
            output = drift.default_path(Path(model))
        drift.accept(report, output, force=args.force)
        print(f"baseline written: {output}")
        return EXIT_OK
    if getattr(args, "verb", None) == "compare":
        report = _read_report(args.report)
        section = drift.compare(report, drift.load(args.baseline), args.drift_factor, args.drift_floor)

        print(
            table(
                {
                    "output": r["name"],
                    "baseline": f"{r.get('baseline_max_abs_err', float('nan')):.3g}",
                    "now": f"{r.get('max_abs_err', float('nan')):.3g}",
                    "growth": f"x{r.get('growth', 0):.3g}",
                    "verdict": "ok" if r["passed"] else "DRIFT",
                }
                for r in section["outputs"]
            )
        )
        return EXIT_OK if section["passed"] else EXIT_VALIDATION_FAILED
    raise UsageError("onnxgate baseline: choose a verb: accept REPORT.json, or compare REPORT.json BASELINE")
