"""JUnit XML: one test case per model x input case x output, plus one per
check, so a CI system shows exactly which output of which case failed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from onnxgate.pipeline.core import text
from onnxgate.pipeline.report.model import as_dict


def model_name(report: dict[str, Any]) -> str:
    src = report.get("source", {})
    name = src.get("path") or src.get("reference") or report.get("onnx", {}).get("path") or "model"
    return str(name)


def _numbers(out: dict[str, Any]) -> str:
    keys = ("max_abs_err", "max_rel_err", "mismatch_fraction", "atol", "rtol", "shape", "expected_shape", "dtype")
    return "\n".join(f"{k} = {out[k]}" for k in keys if k in out)


def testcases(report: dict[str, Any]) -> list[ET.Element]:
    classname = model_name(report)
    elements = []
    for check in report.get("checks", []):
        tc = ET.Element("testcase", classname=classname, name=f"check/{check['name']}", time="0")
        if not check.get("passed", True):
            ET.SubElement(tc, "failure", message=check.get("message", ""), type="check").text = check.get("message", "")
        elements.append(tc)
    for case in report.get("cases", []):
        if case.get("error"):
            tc = ET.Element("testcase", classname=classname, name=f"{case['name']}/run", time="0")
            ET.SubElement(tc, "error", message=case["error"], type="onnxruntime").text = case["error"]
            elements.append(tc)
        for out in case.get("outputs", []):
            tc = ET.Element("testcase", classname=classname, name=f"{case['name']}/{out['name']}", time="0")
            if not out.get("passed", True):
                failure = ET.SubElement(tc, "failure", message=out.get("reason") or "mismatch", type="mismatch")
                failure.text = _numbers(out)
            else:
                ET.SubElement(tc, "system-out").text = _numbers(out)
            elements.append(tc)
    diagnosis = report.get("diagnosis")
    if diagnosis:
        tc = ET.Element("testcase", classname=classname, name="diagnosis", time="0")
        ET.SubElement(tc, "system-out").text = diagnosis.get("summary", "")
        elements.append(tc)
    return elements


def to_junit(reports: Iterable[Any]) -> bytes:
    """A ``<testsuites>`` document with one ``<testsuite>`` per report
    (``Report`` or its JSON form)."""
    reports = [as_dict(r) for r in reports]
    root = ET.Element("testsuites", name="onnxgate")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for report in reports:
        cases = testcases(report)
        failures = sum(1 for tc in cases if tc.find("failure") is not None)
        errors = sum(1 for tc in cases if tc.find("error") is not None)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=model_name(report),
            tests=str(len(cases)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time=f"{report.get('timings', {}).get('total_s', 0):.3f}",
            timestamp=str(report.get("created", "")).rstrip("Z"),
        )
        props = ET.SubElement(suite, "properties")
        conv = report.get("converter", {})
        for key, value in (
            ("verdict", report.get("verdict")),
            ("converter", conv.get("name")),
            ("exporter", conv.get("exporter")),
            ("opset", conv.get("opset")),
            ("seed", report.get("seed")),
        ):
            ET.SubElement(props, "property", name=key, value=str(value))
        suite.extend(cases)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["errors"] += errors
    for key, value in totals.items():
        root.set(key, str(value))
    _clean(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _clean(root: ET.Element) -> None:
    """Names and messages come from models: drop what XML 1.0 forbids."""
    for element in root.iter():
        for key, value in element.attrib.items():
            element.set(key, text.xml(value))
        if element.text:
            element.text = text.xml(element.text)
