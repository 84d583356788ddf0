"""``onnxgate diagnose``, and the report options convert/validate share
(``--junit``, ``--html``, ``--summary``, ``--diagnose``, ``--no-latency``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EXIT_OK, EXIT_VALIDATION_FAILED, UsageError


def add_report_options(p: argparse.ArgumentParser, diagnose_flag: bool = True) -> None:
    p.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report (one test per case x output)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--summary", type=Path, metavar="FILE",
                   help="write a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--no-latency", action="store_true", help="do not time the original and onnxruntime")
    if diagnose_flag:
        p.add_argument("--diagnose", action="store_true",
                       help="when validation fails, locate where the mismatch begins (report key 'diagnosis')")


def check_outputs(args) -> None:
    """Fail before any costly work when an output cannot be written."""
    from .atomic import check_writable

    for name in ("junit", "html", "summary"):
        path = getattr(args, name, None)
        if path is not None:
            check_writable(path)


def diagnose_if_asked(result, args, always: bool = False) -> None:
    """Attach ``diagnosis`` to the report when asked and validation failed."""
    if not (always or (getattr(args, "diagnose", False) and not result.passed)):
        return
    if result.artifact is None or not result.artifact.cases:
        return
    from . import diagnose

    try:
        found = diagnose.for_result(result, args.source, framework=args.framework,
                                    trust_source=args.trust_source)
    except Exception as exc:  # a diagnosis failure must not hide the gate's verdict
        reason = diagnose._one_line(exc)
        part = {"status": "error", "message": reason}
        found = {"runtime": part, "source": dict(part), "summary": f"diagnosis failed: {reason}"}
    result.report["diagnosis"] = found
    for line in diagnose.print_lines(found):
        print(line)


def write_renderings(report, args) -> None:
    from .report import write_outputs

    write_outputs(report, junit=getattr(args, "junit", None), html=getattr(args, "html", None),
                  summary=getattr(args, "summary", None))


def add_parser(sub) -> None:
    from .cli_convert import _common

    d = sub.add_parser(
        "diagnose", help="find where an ONNX model starts to differ from its source",
        description="Validate MODEL.onnx against SOURCE, then locate where a mismatch begins: the first "
                    "layer/step of the original whose ONNX tensor differs (PyTorch modules, scikit-learn "
                    "pipeline steps), and the first node where onnxruntime differs from onnx.reference. "
                    "Exit 1 when validation fails, 0 otherwise.")
    d.add_argument("source", help="model file, folder, or package.module:attribute")
    d.add_argument("model", type=Path, help="the ONNX model to diagnose")
    _common(d)
    d.set_defaults(run=run)


def run(args) -> int:
    from . import api
    from .atomic import check_writable
    from .cli_convert import _kwargs
    from .summary import one_line

    if not args.model.is_file():  # before api.validate hashes it
        raise UsageError(f"{args.model}: no such ONNX file")
    if args.report:
        check_writable(args.report)
    check_outputs(args)
    from . import cli_gate

    result = api.validate(args.source, args.model, gate=cli_gate.gate_from_args(args, args.model), **_kwargs(args))
    result.report["onnx"]["path"] = str(args.model)
    print(one_line(result.report, args.model))
    diagnose_if_asked(result, args, always=True)
    if args.report:
        from . import report

        report.write(result.report, args.report)
    write_renderings(result.report, args)
    if not result.passed:
        for failure in result.report["failures"]:
            print(f"  FAIL {failure}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
