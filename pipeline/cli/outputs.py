"""Report options that convert, validate and diagnose share (``--junit``,
``--html``, ``--summary``, ``--diagnose``, ``--no-latency``), and writing them."""
from __future__ import annotations

import argparse
from pathlib import Path


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
    from onnxgate.pipeline.core.atomic import check_writable

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
    from onnxgate.pipeline.gate import diagnose

    try:
        found = diagnose.for_result(result, args.source, framework=args.framework,
                                    trust_source=args.trust_source)
    except Exception as exc:  # a diagnosis failure must not hide the gate's verdict
        reason = diagnose._one_line(exc)
        part = {"status": "error", "message": reason}
        found = {"runtime": part, "source": dict(part), "summary": f"diagnosis failed: {reason}"}
    result.report["diagnosis"] = found
    from onnxgate.pipeline.core.text import terminal

    for line in diagnose.print_lines(found):
        print(terminal(line))


def write_renderings(report, args) -> None:
    from onnxgate.pipeline.report.document import write_outputs

    write_outputs(report, junit=getattr(args, "junit", None), html=getattr(args, "html", None),
                  summary=getattr(args, "summary", None))
