"""The batch's own reports: summary.json (schema: summary.schema.json),
junit.xml (one test case per model), summary.md, and index.html, a
self-contained dashboard linking to each model's HTML report."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.report.document import onnxgate_version

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")
FILES = {"summary": "summary.json", "junit": "junit.xml", "markdown": "summary.md", "dashboard": "index.html"}


def exit_code(rows: Sequence[dict[str, Any]]) -> int:
    """0 when every model passed, else the largest exit code among them."""
    return max((r["exit_code"] for r in rows), default=0)


def summary(rows: Sequence[dict[str, Any]], settings, seconds: float) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "onnxgate_version": onnxgate_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 3),
        "executor": settings.executor,
        "exit_code": exit_code(rows),
        "counts": dict(Counter(r["verdict"] for r in rows)),
        "cached": sum(bool(r.get("cached")) for r in rows),
        "models": list(rows),
    }


def write_all(out: Path, rows: Sequence[dict[str, Any]], settings, seconds: float) -> dict[str, Any]:
    doc = summary(rows, settings, seconds)
    atomic.write_bytes(out / FILES["summary"], json.dumps(doc, indent=2, default=str) + "\n")
    atomic.write_bytes(out / FILES["junit"], to_junit(doc))
    atomic.write_bytes(out / FILES["markdown"], to_markdown(doc))
    atomic.write_bytes(out / FILES["dashboard"], to_dashboard(doc))
    return doc


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _err(value) -> str:
    return "" if value is None else f"{value:.3g}"


def to_junit(doc: dict[str, Any]) -> bytes:
    rows = doc["models"]
    root = ET.Element("testsuites", name="onnxgate batch")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="onnxgate batch",
        tests=str(len(rows)),
        time=f"{doc['seconds']:.3f}",
        timestamp=doc["created"].rstrip("Z"),
    )
    failures = errors = skipped = 0
    for row in rows:
        tc = ET.SubElement(
            suite,
            "testcase",
            classname=row.get("framework") or "model",
            name=row["name"],
            time=f"{row.get('seconds') or 0:.3f}",
        )
        verdict, message = row["verdict"], row.get("message") or row["verdict"]
        if verdict == "not-run":
            ET.SubElement(tc, "skipped", message=message)
            skipped += 1
        elif verdict == "failed" or (verdict == "unverified" and row["exit_code"]):
            ET.SubElement(tc, "failure", message=message, type=verdict).text = message
            failures += 1
        elif row["exit_code"]:
            ET.SubElement(tc, "error", message=message, type=verdict).text = message
            errors += 1
        if row.get("files", {}).get("report"):
            ET.SubElement(tc, "system-out").text = f"report: {row['files']['report']}"
    for key, value in (("failures", failures), ("errors", errors), ("skipped", skipped)):
        suite.set(key, str(value))
        root.set(key, str(value))
    root.set("tests", str(len(rows)))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: dict[str, Any]) -> str:
    rows = doc["models"]
    passed = sum(r["exit_code"] == 0 for r in rows)
    counts = ", ".join(f"{n} {v}" for v, n in sorted(doc["counts"].items()))
    lines = [
        f"## onnxgate batch: {passed}/{len(rows)} passed",
        "",
        f"{counts}; {doc['cached']} from the cache; {doc['seconds']:.1f} s; exit code {doc['exit_code']}",
        "",
    ]
    bad = [r for r in rows if r["exit_code"]]
    if bad:
        lines += ["| model | framework | verdict | max abs err | message |", "|---|---|---|---|---|"]
        lines += [
            f"| {_cell(r['name'])} | {_cell(r['framework'])} | {r['verdict']} | {_err(r.get('max_abs_err'))} "
            f"| {_cell((r.get('message') or '')[:160])} |"
            for r in bad
        ]
        lines.append("")
    lines.append(f"<details><summary>all {len(rows)} models</summary>\n")
    lines += ["| model | framework | verdict | seconds |", "|---|---|---|---|"]
    lines += [
        f"| {_cell(r['name'])} | {_cell(r['framework'])} | {r['verdict']} | {r.get('seconds') or 0:.2f} |" for r in rows
    ]
    lines.append("\n</details>\n")
    return "\n".join(lines)


CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f4f6fa}main{max-width:1300px;margin:0 auto;padding:20px}h1{font-size:22px;margin:0 0 6px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:12px 0}.card{background:#fff;border-radius:8px;padding:8px 14px;
box-shadow:0 1px 2px rgba(0,0,0,.08);cursor:pointer}.card b{font-size:20px;display:block}
.controls{display:flex;gap:10px;margin:8px 0}.controls input,.controls select{font:inherit;padding:4px 8px}.controls input{min-width:340px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid #e6e9f0;vertical-align:top}th{background:#f7f8fb;cursor:pointer;user-select:none}
th[data-dir=asc]:after{content:" \\25B2"}th[data-dir=desc]:after{content:" \\25BC"}
td.num{font-variant-numeric:tabular-nums;text-align:right}.v{font-weight:600}.v-passed{color:#2e7d32}
.v-failed,.v-crashed,.v-timeout,.v-out-of-memory,.v-error{color:#c62828}.v-unverified{color:#b26a00}
.v-not-run{color:#5b6478}.msg{max-width:520px;color:#5b6478;font-size:12.5px}.muted{color:#5b6478}
"""

SCRIPT = """
(function(){
  var table = document.getElementById('models'), body = table.tBodies[0];
  var text = document.getElementById('filter'), verdict = document.getElementById('verdict');
  var shown = document.getElementById('shown');
  function apply(){
    var q = text.value.toLowerCase(), v = verdict.value, n = 0;
    Array.prototype.forEach.call(body.rows, function(r){
      var ok = (!v || r.dataset.verdict === v) && (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok; n += ok ? 1 : 0;
    });
    shown.textContent = n;
  }
  text.addEventListener('input', apply); verdict.addEventListener('change', apply);
  document.querySelectorAll('.card').forEach(function(c){
    c.addEventListener('click', function(){ verdict.value = c.dataset.verdict; apply(); });
  });
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var dir = th.dataset.dir === 'asc' ? -1 : 1;
      table.querySelectorAll('th').forEach(function(o){ delete o.dataset.dir; });
      th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        return dir * ((isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
  apply();
  document.body.dataset.ready = '1';
})();
"""

_COLUMNS = ("model", "framework", "verdict", "max abs err", "seconds", "tags", "message")


def _row_html(row: dict[str, Any]) -> str:
    html_report = (row.get("files") or {}).get("html")
    name = escape(row["name"])
    link = f"<a href='{escape(html_report, quote=True)}'>{name}</a>" if html_report else name
    err = row.get("max_abs_err")
    cells = [
        (row["name"], link, ""),
        (row.get("framework") or "", escape(row.get("framework") or ""), ""),
        (row["verdict"], f"<span class='v v-{escape(row['verdict'])}'>{escape(row['verdict'])}</span>", ""),
        ("" if err is None else repr(float(err)), _err(err), "num"),
        (repr(float(row.get("seconds") or 0)), f"{row.get('seconds') or 0:.2f}", "num"),
        (" ".join(row.get("tags") or []), escape(", ".join(row.get("tags") or [])), ""),
        (row.get("message") or "", escape(row.get("message") or ""), "msg"),
    ]
    tds = "".join(f"<td class='{cls}' data-v=\"{escape(str(v), quote=True)}\">{html}</td>" for v, html, cls in cells)
    cached = " data-cached='1'" if row.get("cached") else ""
    return f'<tr data-verdict="{escape(row["verdict"], quote=True)}"{cached}>{tds}</tr>'


def to_dashboard(doc: dict[str, Any]) -> str:
    from onnxgate.pipeline.report.html import CSP

    rows: list[dict[str, Any]] = doc["models"]
    passed = sum(r["exit_code"] == 0 for r in rows)
    cards = "".join(
        f"<div class='card' data-verdict=\"{escape(v, quote=True)}\"><b class='v v-{escape(v)}'>{n}</b>{escape(v)}</div>"
        for v, n in sorted(doc["counts"].items())
    )
    cards = f"<div class='card' data-verdict=''><b>{len(rows)}</b>all</div>" + cards
    options = "".join(f"<option>{escape(v)}</option>" for v in sorted(doc["counts"]))
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "".join(_row_html(r) for r in rows)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>onnxgate batch: {passed}/{len(rows)} passed</title><style>{CSS}</style></head><body><main>"
        f"<h1>onnxgate batch: {passed}/{len(rows)} passed</h1>"
        f"<div class='muted'>{escape(doc['created'])} · {doc['seconds']:.1f} s · {doc['cached']} from the cache · "
        f"exit code {doc['exit_code']} · onnxgate {escape(doc['onnxgate_version'])}</div>"
        f"<div class='cards'>{cards}</div>"
        "<div class='controls'><input id='filter' type='search' placeholder='filter: name, framework, error, tag'>"
        f"<select id='verdict'><option value=''>every verdict</option>{options}</select>"
        f"<span class='muted'><span id='shown'>{len(rows)}</span> shown</span></div>"
        f"<table id='models'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"</main><script>{SCRIPT}</script></body></html>\n"
    )
