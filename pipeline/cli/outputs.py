"""Report options that convert, validate and diagnose share (``--junit``,
``--html``, ``--summary``, ``--format NAME=PATH``, ``--diagnose``,
``--no-latency``), and writing them. The formats are a registry
(``onnxgate_report_formats``); the classic flags name the built-in ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxgate.pipeline.core.atomic import check_writable
from onnxgate.plugins.helpers import one_line


def add_report_options(p: argparse.ArgumentParser, diagnose_flag: bool = True) -> None:
    p.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report (one test per case x output)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    p.add_argument(
        "--summary", type=Path, metavar="FILE", help="write a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)"
    )
    p.add_argument(
        "--format",
        dest="formats",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="write the report in format NAME (json, junit, html, markdown, or a plugin's) to PATH; repeatable",
    )
    p.add_argument("--no-latency", action="store_true", help="do not time the original and onnxruntime")
    if diagnose_flag:
        p.add_argument(
            "--diagnose",
            action="store_true",
            help="when validation fails, locate where the mismatch begins (report key 'diagnosis')",
        )


def _renderings(args) -> list:
    from onnxgate.pipeline.report import formats

    return formats.resolve(
        formats.requested(
            junit=getattr(args, "junit", None),
            html=getattr(args, "html", None),
            summary=getattr(args, "summary", None),
            formats=getattr(args, "formats", ()),
        )
    )


def check_outputs(args) -> None:
    """Fail before any costly work when an output cannot be written or its
    format is unknown."""

    for _, path in _renderings(args):
        check_writable(path)


def diagnose_if_asked(result, args, always: bool = False) -> None:
    """Attach ``diagnosis`` to the report when asked and validation failed."""
    if not (always or (getattr(args, "diagnose", False) and not result.passed)):
        return
    if result.artifact is None or not result.artifact.cases:
        return
    from onnxgate.pipeline.gate import diagnose

    try:
        found = diagnose.for_result(result, args.source, framework=args.framework, trust_source=args.trust_source)
    except Exception as exc:  # a diagnosis failure must not hide the gate's verdict
        reason = one_line(exc, with_type=True)
        part = {"status": "error", "message": reason}
        found = {"runtime": part, "source": dict(part), "summary": f"diagnosis failed: {reason}"}
    result.report.diagnosis = found
    from onnxgate.pipeline.core.text import terminal

    for line in diagnose.print_lines(found):
        print(terminal(line))


def write_renderings(report, args, json_path=None) -> None:
    """Every rendering the user asked for; ``json_path``: the JSON report too."""
    from onnxgate.pipeline.report import formats
    from onnxgate.pipeline.report.document import as_dict

    requests = _renderings(args)
    if json_path is not None:
        requests = formats.resolve([("json", json_path)]) + requests
    formats.write(as_dict(report), requests)
