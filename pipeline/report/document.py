"""The JSON report: one versioned document per model run, written atomically,
checked against ``report.schema.json``, and rendered (JUnit, HTML, Markdown).

The typed document is ``report.model.Report``, built by ``report.build``;
everything here takes it or its JSON form (a report read back from a file).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Union

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.report.model import SCHEMA_VERSION, Report, as_dict, dumps  # noqa: F401 (re-exported)

ReportLike = Union[Report, dict[str, Any]]
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


def onnxgate_version() -> str:
    try:
        return metadata.version("onnxgate")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def package_versions(*extra: str) -> dict[str, str]:
    versions = {"python": platform.python_version(), "onnxgate": onnxgate_version()}
    for dist in ("onnx", "onnxruntime", "numpy", *extra):
        if not dist:
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write(report: ReportLike, path: Path) -> None:
    atomic.write_bytes(Path(path), dumps(report))


def schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of reports."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_errors(report: ReportLike) -> list:
    """Messages for every place ``report`` (as written to JSON) breaks the schema."""
    import jsonschema  # test/CI dependency only

    validator = jsonschema.Draft202012Validator(schema())
    document = json.loads(dumps(report))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def validate_schema(report: ReportLike) -> None:
    """Raise ValueError listing the schema violations; tests call this on
    every report they produce."""
    errors = schema_errors(report)
    if errors:
        raise ValueError("report does not match report.schema.json:\n  " + "\n  ".join(errors[:20]))
