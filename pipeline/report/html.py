"""One self-contained HTML page per report: inline CSS, inline SVG charts
drawn here, a few lines of inline JS, and a Content-Security-Policy that
forbids every network fetch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from onnxgate.pipeline.report.markdown import worst_outputs
from onnxgate.pipeline.report.model import as_dict

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
COLORS = {"original": "#7c8db5", "onnxruntime": "#e07b39", "bar": "#4a7fc1", "bad": "#c62828", "tol": "#2e7d32"}

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f4f6fa}main{max-width:1100px;margin:0 auto;padding:20px}
.banner{border-radius:10px;padding:18px 22px;color:#fff;display:flex;align-items:center;gap:18px}
.banner.passed{background:#2e7d32}.banner.failed{background:#c62828}.banner.unverified{background:#b26a00}
.banner .verdict{font-size:30px;font-weight:700;letter-spacing:.04em}.banner .what{font-size:15px;opacity:.95}
.banner code{color:#fff;background:rgba(255,255,255,.18)}
section{background:#fff;border-radius:10px;padding:14px 18px;margin-top:16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:0 0 4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e9f0;
vertical-align:top}th{background:#f7f8fb;font-weight:600;cursor:pointer;user-select:none}td.num{font-variant-numeric:tabular-nums}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f2f6;padding:1px 4px;border-radius:4px}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:4px 18px}.meta div span{color:#5b6478}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
.chart{border:1px solid #e6e9f0;border-radius:8px;padding:8px}.chart svg{width:100%;height:auto;display:block}
ul.fail li{color:#c62828;margin:2px 0}.diag{border-left:4px solid #c62828;padding-left:12px}
.diag.agree{border-left-color:#2e7d32}.muted{color:#5b6478}.legend span{display:inline-block;width:11px;height:11px;
border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}details summary{cursor:pointer;color:#2f5ea8}
"""

SCRIPT = """
(function(){
  document.querySelectorAll('table.sortable th').forEach(function(th, col){
    th.title = 'sort';
    th.addEventListener('click', function(){
      var body = th.closest('table').tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        return dir * ((isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
  document.body.dataset.ready = '1';
})();
"""


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return escape(str(value))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


# ---------------------------------------------------------------- charts


def histogram_svg(name: str, hist: dict[str, Any], atol: float | None = None) -> str:
    """Bars of log10 |error| per bin, set apart: an 'exact' bar on the left,
    'too large' and 'NaN/inf on one side' bars on the right."""
    edges, counts = hist["edges"], hist["counts"]
    # slot layout: exact, gap, bins..., gap, above, nonfinite
    slots: list[Any] = [(f"exact or < 1e{edges[0]:g}", hist.get("below", 0), "#9aa5b8"), None]
    slots += [(f"1e{edges[i]:g} .. 1e{edges[i + 1]:g}", c, COLORS["bar"]) for i, c in enumerate(counts)]
    slots += [
        None,
        (f"> 1e{edges[-1]:g}", hist.get("above", 0), COLORS["bad"]),
        ("NaN/inf on one side only", hist.get("nonfinite", 0), COLORS["bad"]),
    ]
    W, H, left, right, top, bottom = 460, 200, 44, 10, 16, 38
    pw, ph = W - left - right, H - top - bottom
    bw = pw / len(slots)
    peak = max([s[1] for s in slots if s] + [1])
    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="error histogram of {escape(name)}">']
    for frac in (0, 0.5, 1):  # y grid
        y = top + ph * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9f0"/>')
        parts.append(
            f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5b6478">'
            f"{round(peak * frac):d}</text>"
        )
    for i, slot in enumerate(slots):
        if slot is None:
            continue
        label, count, color = slot
        h = ph * count / peak
        parts.append(
            f'<rect x="{left + i * bw + 1:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{escape(label)}: {count}</title></rect>'
        )
    first_bin = 2  # slot index where the log bins start

    def x_at(log10_value: float) -> float:
        return left + bw * (first_bin + (log10_value - edges[0]) / (edges[1] - edges[0]))

    axis_y = top + ph
    parts.append(f'<line x1="{left}" x2="{W - right}" y1="{axis_y}" y2="{axis_y}" stroke="#5b6478"/>')
    labels = [(left + bw / 2, "0", "#5b6478")]
    labels += [(x_at(edges[i]), f"1e{edges[i]:g}", "#5b6478") for i in range(0, len(edges), 4)]
    labels += [(left + bw * (len(slots) - 0.5), "NaN", COLORS["bad"])]
    for x, text, color in labels:
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 13}" font-size="9.5" text-anchor="middle" fill="{color}">{text}</text>'
        )
    if atol and atol > 0:  # where the absolute tolerance sits on the axis
        lg = math.log10(atol)
        if edges[0] <= lg <= edges[-1]:
            x = x_at(lg)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{axis_y}" stroke="{COLORS["tol"]}" '
                f'stroke-dasharray="4 3" stroke-width="1.5"><title>atol {atol:g}</title></line>'
            )
            parts.append(
                f'<text x="{x - 3:.1f}" y="{top - 7 + 9}" font-size="10" text-anchor="end" '
                f'fill="{COLORS["tol"]}">atol</text>'
            )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{H - 4}" font-size="10.5" text-anchor="middle" fill="#1d2330">'
        f"|onnxruntime − original| per element</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(top: float) -> list[float]:
    step = 10 ** math.floor(math.log10(top / 4)) if top > 0 else 1
    for mult in (1, 2, 2.5, 5, 10):
        if top / (step * mult) <= 5:
            step *= mult
            break
    return [step * i for i in range(int(math.ceil(top / step)) + 1)]


def latency_svg(batches: Sequence[dict[str, Any]]) -> str:
    """Grouped bars of p50 per batch size, original vs onnxruntime, with p95
    whiskers; a log axis when the two differ by more than 30x."""
    series = ("original", "onnxruntime")
    values = [b[s][k] for b in batches for s in series if b.get(s) for k in ("p50_ms", "p95_ms")]
    if not values:
        return ""
    W, H, left, right, top, bottom = 620, 240, 56, 12, 14, 42
    pw, ph = W - left - right, H - top - bottom
    lo, hi = max(min(values), 1e-6), max(values)
    log = hi / lo > 30
    if log:
        lo_d, hi_d = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        hi_d = hi_d if hi_d > lo_d else lo_d + 1
        ticks = [10.0**d for d in range(lo_d, hi_d + 1)]

        def y_of(v: float) -> float:
            return top + ph * (1 - (math.log10(max(v, 10.0**lo_d)) - lo_d) / (hi_d - lo_d))

        base: float = top + ph
    else:
        ticks = _nice_ticks(hi * 1.05)

        def y_of(v: float) -> float:
            return top + ph * (1 - v / ticks[-1])

        base = y_of(0)
    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="latency per batch size">']
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9f0"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5b6478">{tick:g}</text>'
        )
    group = pw / len(batches)
    bw = min(group * 0.34, 48)
    for gi, b in enumerate(batches):
        cx = left + group * (gi + 0.5)
        for si, s in enumerate(series):
            t = b.get(s)
            if not t:
                continue
            x = cx + (si - 1) * bw + (si * 2 - 1) * 2
            y50, y95 = y_of(t["p50_ms"]), y_of(t["p95_ms"])
            parts.append(
                f'<rect x="{x:.1f}" y="{y50:.1f}" width="{bw:.1f}" height="{max(base - y50, 0.5):.1f}" '
                f'fill="{COLORS[s]}"><title>{s}, batch {b["batch"]}: p50 {t["p50_ms"]:.3g} ms, '
                f"p95 {t['p95_ms']:.3g} ms ({t['runs']} runs)</title></rect>"
            )
            mid = x + bw / 2
            parts.append(
                f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{y50:.1f}" y2="{y95:.1f}" stroke="#1d2330"/>'
                f'<line x1="{mid - 5:.1f}" x2="{mid + 5:.1f}" y1="{y95:.1f}" y2="{y95:.1f}" stroke="#1d2330"/>'
            )
            parts.append(
                f'<text x="{mid:.1f}" y="{min(y95, y50) - 4:.1f}" font-size="9.5" text-anchor="middle" '
                f'fill="#1d2330">{t["p50_ms"]:.3g}</text>'
            )
        parts.append(
            f'<text x="{cx:.1f}" y="{top + ph + 15}" font-size="11" text-anchor="middle" fill="#1d2330">'
            f"batch {b['batch']}</text>"
        )
    parts.append(f'<line x1="{left}" x2="{W - right}" y1="{top + ph}" y2="{top + ph}" stroke="#5b6478"/>')
    parts.append(
        f'<text x="14" y="{top + ph / 2:.1f}" font-size="10.5" text-anchor="middle" fill="#1d2330" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">ms{" (log scale)" if log else ""}</text>'
    )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{H - 6}" font-size="10.5" text-anchor="middle" fill="#5b6478">'
        f"bar: p50, whisker: p95</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- page


def _banner(report: dict[str, Any]) -> str:
    verdict = report.get("verdict", "failed")
    conv, src = report.get("converter", {}), report.get("source", {})
    model = report.get("onnx", {}).get("path") or "(in memory)"
    n_fail = len(report.get("failures", []))
    what = (
        f"<code>{escape(model)}</code> from {escape(src.get('framework', '?'))} via {escape(str(conv.get('name')))} "
        f"({escape(str(conv.get('exporter')))}, opset {escape(str(conv.get('opset')))})<br>"
        f"{len(report.get('cases', []))} cases · "
        f"{sum(len(c.get('outputs', [])) for c in report.get('cases', []))} outputs compared · "
        f"{n_fail} failure{'s' if n_fail != 1 else ''}"
    )
    return f'<div class="banner {escape(verdict)}"><div class="verdict">{escape(verdict.upper())}</div><div class="what">{what}</div></div>'


def _meta(report: dict[str, Any]) -> str:
    src, onnx, tol = report.get("source", {}), report.get("onnx", {}), report.get("tolerance", {})
    versions = report.get("versions", {})
    items = [
        ("source", src.get("path") or src.get("reference") or "(object)"),
        ("framework", f"{src.get('framework', '')} {src.get('framework_version', '')}"),
        ("tolerance", f"rtol {tol.get('rtol')} · atol {tol.get('atol')}"),
        ("seed", report.get("seed")),
        ("ONNX sha256", str(onnx.get("sha256", ""))[:16] + "…"),
        (
            "IR / opsets",
            f"{onnx.get('ir_version')} / " + ", ".join(f"{k} {v}" for k, v in onnx.get("opsets", {}).items()),
        ),
        ("onnxruntime", versions.get("onnxruntime", "")),
        ("created", report.get("created", "")),
    ]
    cells = "".join(f"<div><span>{escape(k)}:</span> {escape(str(v))}</div>" for k, v in items)
    return f'<section><h2>Run</h2><div class="meta">{cells}</div></section>'


def _failures(report: dict[str, Any]) -> str:
    failures = report.get("failures", [])
    if not failures:
        return ""
    items = "".join(f"<li>{escape(f)}</li>" for f in failures[:50])
    more = f"<p class='muted'>… {len(failures) - 50} more in the JSON report</p>" if len(failures) > 50 else ""
    return f'<section><h2>Failures ({len(failures)})</h2><ul class="fail">{items}</ul>{more}</section>'


def _diagnosis(report: dict[str, Any]) -> str:
    diag = report.get("diagnosis")
    if not diag:
        return ""
    located = any(diag.get(k, {}).get("status") == "mismatch" for k in ("source", "runtime"))
    rows = []
    for key, title in (
        ("source", "original vs ONNX, layer by layer"),
        ("runtime", "onnxruntime vs onnx.reference, node by node"),
    ):
        part = diag.get(key, {})
        where = ""
        if part.get("status") == "mismatch":
            where = (
                f"<code>{escape(part.get('layer', '') or part.get('node', ''))}</code>"
                + (f" ({escape(part.get('kind', ''))})" if part.get("kind") else "")
                + (f" → node <code>{escape(part.get('node', ''))}</code>" if part.get("layer") else "")
                + f" <code>{escape(part.get('op_type', ''))}</code>"
            )
        err = fmt(part["max_abs_err"]) if "max_abs_err" in part else ""
        cls = "bad" if part.get("status") == "mismatch" else ("ok" if part.get("status") == "agree" else "muted")
        rows.append(
            f"<tr><td>{escape(title)}</td><td class='{cls}'>{escape(str(part.get('status')))}</td>"
            f"<td>{where}</td><td class='num'>{err}</td><td>{escape(part.get('message', ''))}</td></tr>"
        )
    return (
        f'<section><h2>Diagnosis</h2><div class="diag {"" if located else "agree"}"><p><b>{escape(diag.get("summary", ""))}</b>'
        f' <span class="muted">(case {escape(diag.get("case", ""))})</span></p>'
        "<table><thead><tr><th>search</th><th>status</th><th>where</th><th>max abs err</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _outputs(report: dict[str, Any]) -> str:
    rows = worst_outputs(report)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td><code>{escape(r['output'])}</code></td><td>{escape(r['case'])}</td>"
        f"<td class='num' data-v='{r['max_abs_err']}'>{fmt(r['max_abs_err'])}</td>"
        f"<td class='num' data-v='{_num(r['noise_floor'])}'>{fmt(r['noise_floor']) or '–'}</td>"
        f"<td class='num' data-v='{_num(r['bound'])}'>{fmt(r['bound'])}</td>"
        f"<td class='num' data-v='{_num(r['max_rel_err'])}'>{fmt(r['max_rel_err'])}</td>"
        f"<td class='num' data-v='{r['mismatch']}'>{r['mismatch']:.2%}</td>"
        f"<td class='{'ok' if r['passed'] else 'bad'}'>{'pass' if r['passed'] else 'FAIL'}</td></tr>"
        for r in rows
    )
    cases = "".join(
        f"<tr><td>{escape(c['name'])}</td><td><code>{escape(o['name'])}</code></td>"
        f"<td>{escape(' '.join(f'{k}{v}' for k, v in c.get('input_shapes', {}).items()))}</td>"
        f"<td class='num'>{fmt(o.get('max_abs_err', ''))}</td><td class='num'>{fmt(o.get('noise_floor', '')) or '–'}</td>"
        f"<td class='num'>{fmt(o.get('bound', ''))}</td><td class='num'>{fmt(o.get('max_rel_err', ''))}</td>"
        f"<td class='{'ok' if o.get('passed') else 'bad'}'>{'pass' if o.get('passed') else escape(o.get('reason', 'FAIL'))}</td></tr>"
        for c in report.get("cases", [])
        for o in c.get("outputs", [])
    )
    return (
        '<section><h2>Outputs (worst case of each)</h2><table class="sortable"><thead><tr><th>output</th>'
        "<th>worst case</th><th>max abs err</th><th>float32 noise floor</th><th>bound</th><th>max rel err</th>"
        "<th>mismatched</th><th>verdict</th></tr></thead>"
        f'<tbody>{body}</tbody></table><details><summary>every case × output</summary><table class="sortable">'
        "<thead><tr><th>case</th><th>output</th><th>inputs</th><th>max abs err</th><th>float32 noise floor</th><th>bound</th>"
        "<th>max rel err</th><th>verdict</th>"
        f"</tr></thead><tbody>{cases}</tbody></table></details></section>"
    )


def _histograms(report: dict[str, Any]) -> str:
    hists = report.get("error_histograms") or {}
    if not hists:
        return ""
    atol = report.get("tolerance", {}).get("atol")
    charts = "".join(
        f'<div class="chart"><h3><code>{escape(name)}</code> <span class="muted">{h.get("total", 0)} elements, '
        f"{h.get('cases', 0)} cases</span></h3>{histogram_svg(name, h, atol)}</div>"
        for name, h in hists.items()
    )
    return f'<section><h2>Error distribution per output</h2><div class="charts">{charts}</div></section>'


def _latency(report: dict[str, Any]) -> str:
    batches = [b for b in (report.get("latency") or {}).get("batches", []) if b.get("original") or b.get("onnxruntime")]
    if not batches:
        return ""
    legend = "".join(f'<span style="background:{COLORS[s]}"></span>{s}' for s in ("original", "onnxruntime"))
    rows = "".join(
        f"<tr><td>{b['batch']}</td>"
        + "".join(
            f"<td class='num'>{fmt(b[s]['p50_ms']) if b.get(s) else '–'}</td>"
            f"<td class='num'>{fmt(b[s]['p95_ms']) if b.get(s) else '–'}</td>"
            for s in ("original", "onnxruntime")
        )
        + "</tr>"
        for b in batches
    )
    return (
        f'<section><h2>Latency per batch size</h2><div class="legend">{legend}</div>'
        f'<div class="chart" style="margin-top:8px">{latency_svg(batches)}</div>'
        '<table style="margin-top:8px"><thead><tr><th>batch</th><th>original p50 ms</th><th>original p95 ms</th>'
        f"<th>onnxruntime p50 ms</th><th>onnxruntime p95 ms</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _checks(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(c['name'])}</code></td><td class='{'ok' if c.get('passed') else 'bad'}'>"
        f"{'pass' if c.get('passed') else 'FAIL'}</td><td>{escape(c.get('message', ''))}</td></tr>"
        for c in report.get("checks", [])
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.get("notes", []))
    return (
        f"<section><h2>Checks</h2><table><tbody>{rows}</tbody></table>"
        + (f'<h3 style="margin-top:10px">Notes</h3><ul>{notes}</ul>' if notes else "")
        + "</section>"
    )


def to_html(report) -> str:
    report = as_dict(report)  # a Report, or its JSON form read back from a file
    title = f"onnxgate {report.get('verdict', '')}: {report.get('onnx', {}).get('path') or 'model'}"
    body = "".join(
        (
            _banner(report),
            _failures(report),
            _diagnosis(report),
            _outputs(report),
            _histograms(report),
            _latency(report),
            _checks(report),
            _meta(report),
        )
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<p class='muted' style='margin-top:14px'>onnxgate {escape(report.get('versions', {}).get('onnxgate', ''))}"
        f" · report schema {escape(str(report.get('schema_version')))}</p></main><script>{SCRIPT}</script></body></html>\n"
    )
