"""Hostile names in reports and on the terminal (issue 12, items 10-11):
control characters, ANSI/OSC escapes and HTML from model, input and output
names must not break JUnit XML, inject HTML into Markdown, or reach the terminal."""

from __future__ import annotations

import copy
import types
import xml.etree.ElementTree as ET

import onnx
from onnx import TensorProto, helper

from onnxgate.pipeline.cli import main
from onnxgate.pipeline.report.junit import to_junit
from onnxgate.pipeline.report.markdown import to_markdown

EVIL = "out\x1b[31m\x07\x00\x0b<b>\ud800\ufffe"
OSC = "\x1b]0;owned\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"


def _report():
    return {
        "passed": False,
        "verdict": "failed",
        "seed": 0,
        "created": "2026-01-01T00:00:00Z",
        "source": {"path": "model\x1b[2J\x07.pkl", "framework": "sklearn"},
        "converter": {"name": "skl2onnx\x08", "exporter": "x", "opset": 17},
        "onnx": {"path": "m.onnx"},
        "tolerance": {"rtol": 1e-4, "atol": 1e-5},
        "checks": [{"name": "opset\x1b", "passed": False, "message": "bad \x00 thing"}],
        "cases": [
            {
                "name": "case\x07",
                "error": "boom \x1b[0m",
                "outputs": [{"name": EVIL, "passed": False, "reason": "differ \x0c", "max_abs_err": 1.0}],
            }
        ],
        "failures": ["<script>alert(1)</script> in <img src=x onerror=alert(2)>", "`a` | b"],
        "diagnosis": {"case": "<img src=x onerror=alert(3)>", "summary": "starts at <script>x</script>\x1b"},
    }


def test_junit_is_well_formed_with_control_characters_in_names():
    xml = to_junit([_report()])
    root = ET.fromstring(xml)  # raises on a character XML 1.0 forbids
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert any(n.startswith("case") and "out" in n for n in names)
    for ch in ("\x1b", "\x07", "\x00", "\x0b", "\x08", "\x0c", "\ufffe"):
        assert ch not in xml.decode("utf-8", "replace")
    assert root.get("failures") == "2"


def test_markdown_escapes_html_from_names_and_failures():
    md = to_markdown(_report())
    for raw in ("<script>", "<img", "<b>"):
        assert raw not in md
    assert "&lt;script&gt;" in md and "&lt;img" in md
    assert "\x1b" not in md and "\x07" not in md


def _model_with_names(path, name):
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y" + OSC, TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Identity", [name], ["y" + OSC])], "g\x1b[5m", [x], [y])
    model = helper.make_model(
        graph, producer_name="evil\x1b]0;title\x07\nFAKE LINE", opset_imports=[helper.make_opsetid("", 17)]
    )
    onnx.save(model, path)


def test_inspect_strips_escapes_and_newlines_from_model_names(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    _model_with_names(path, "in\x1b[31mput\r\nINJECTED: yes")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert not any(line.startswith("INJECTED") or line.startswith("FAKE LINE") for line in out.splitlines())
    assert "input" in out.replace("[31m", "")


def test_convert_terminal_lines_strip_escapes(capsys):
    from onnxgate.pipeline.cli.convert import _finish

    report = copy.deepcopy(_report())
    report.update(failures=[f"{OSC}output y\x1b[31m differs\nFAKE: PASSED"], cases=[], onnx={"path": "m\x1b.onnx"})
    result = types.SimpleNamespace(report=report, passed=False, failures=report["failures"])
    assert _finish(result, "m\x1b[1m.onnx") == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())


def test_error_messages_strip_escapes(tmp_path, capsys):
    bad = tmp_path / "nope\x1b]0;x\x07.onnx"
    assert main(["inspect", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
