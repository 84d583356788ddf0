"""The built-in report formats, registered through the same entry-point path
a third-party plugin uses (``formats = onnxgate.pipeline.report.formats``),
and writing the renderings a user asked for.

Each renderer imports its module only when that format is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxgate.pipeline.core import atomic
from onnxgate.plugins import ReportFormat, UsageError, hookimpl

if TYPE_CHECKING:
    from onnxgate.pipeline.report.model import Report


def _json(report: Mapping[str, Any]) -> str:
    from onnxgate.pipeline.report.document import dumps

    return dumps(dict(report))


def _junit(report: Mapping[str, Any]) -> bytes:
    from onnxgate.pipeline.report.junit import to_junit

    return to_junit([report])


def _html(report: Mapping[str, Any]) -> str:
    from onnxgate.pipeline.report.html import to_html

    return to_html(report)


def _markdown(report: Mapping[str, Any]) -> str:
    from onnxgate.pipeline.report.markdown import to_markdown

    return to_markdown(report)


@hookimpl
def onnxgate_report_formats():
    yield ReportFormat("json", ".json", _json, description="the report itself (report.schema.json)")
    yield ReportFormat("junit", ".xml", _junit, description="JUnit XML: one test per case x output, one per check")
    yield ReportFormat("html", ".html", _html, description="a self-contained HTML page")
    yield ReportFormat("markdown", ".md", _markdown, description="a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")


def resolve(requests: Iterable[tuple[str, Path]], registry=None) -> list:
    """(ReportFormat, path) per requested (name, path); an unknown name is a
    usage error naming the known formats."""
    if registry is None:
        from onnxgate.plugins.manager import Registry

        registry = Registry()
    resolved = []
    for name, path in requests:
        try:
            resolved.append((registry.report_format(name), Path(path)))
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    return resolved


def write(report: Report | dict[str, Any], resolved: Iterable[tuple[ReportFormat, Path]]) -> None:
    """Render and write each one atomically (a failing renderer leaves no file).
    ``report``: a typed ``Report`` or its JSON form; renderers get the JSON form."""
    from onnxgate.pipeline.report.model import as_dict

    report = as_dict(report)
    for fmt, path in resolved:
        content = fmt.render(report)
        if not isinstance(content, (str, bytes)):
            raise TypeError(f"report format {fmt.name!r} rendered {type(content).__name__}, not str or bytes")
        atomic.write_bytes(path, content)


def parse_request(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` (``--format html=report.html``)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UsageError(f"--format {text!r}: expected NAME=PATH (e.g. html=report.html)")
    return name.strip(), Path(path.strip())


def requested(
    junit: Path | None = None, html: Path | None = None, summary: Path | None = None, formats: Iterable[str] = ()
) -> list:
    """The (name, path) pairs of the classic flags plus ``--format`` ones."""
    pairs = [(name, path) for name, path in (("junit", junit), ("html", html), ("markdown", summary)) if path]
    return pairs + [parse_request(text) for text in formats]
