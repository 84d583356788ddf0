"""The HTML report in a real headless Chromium: no JS exceptions, no console
errors, no blocked fetches (the page's CSP forbids every network request, so
a fetch shows up as a policy violation). Screenshots go to artifacts/.

Needs Debian's ``chromium`` package (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest

from onnxgate.pipeline import api
from onnxgate.pipeline.gate import diagnose
from onnxgate.pipeline.report.html import to_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")

#: Injected first into <head>: records errors in an attribute --dump-dom shows.
PROBE = """<script>
(function(){
  var errs = [], root = document.documentElement;
  function rec(m){ errs.push(String(m)); root.setAttribute('data-errors', JSON.stringify(errs)); }
  root.setAttribute('data-errors', '[]');
  window.addEventListener('error', function(e){ rec('error: ' + (e.message || (e.target && (e.target.src || e.target.href)))); }, true);
  window.addEventListener('unhandledrejection', function(e){ rec('rejection: ' + e.reason); });
  document.addEventListener('securitypolicyviolation', function(e){ rec('csp: ' + e.violatedDirective + ' ' + e.blockedURI); });
  ['error', 'warn'].forEach(function(k){ var f = console[k]; console[k] = function(){
    rec('console.' + k + ': ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; });
})();
</script>"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


def render(page: str, tmp_path: Path):
    """(errors recorded in the page, console lines from chromium's log, DOM)."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    run = _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", probed.as_uri())
    dom = run.stdout
    match = re.search(r'data-errors="([^"]*)"', dom)
    assert match, f"the probe did not run; chromium said: {run.stderr[-500:]}"
    recorded = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    return recorded, console, dom


def screenshot(page: str, tmp_path: Path, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    html = tmp_path / f"{name}.html"
    html.write_text(page, encoding="utf-8")
    out = ARTIFACTS / f"{name}.png"
    run = _chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={out}", html.as_uri())
    assert out.is_file() and out.stat().st_size > 10_000, run.stderr[-500:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(html, ARTIFACTS / f"{name}.html")
    return out


@pytest.fixture(scope="module")
def reports():
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scaler", StandardScaler()), ("norm", Normalizer()), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    good = api.convert(pipe)
    broken = onnx.ModelProto()
    broken.CopyFrom(good.model)
    (scaler,) = [n for n in broken.graph.node if n.op_type == "Scaler"]
    for attr in scaler.attribute:
        if attr.name == "scale":
            attr.floats[2] *= 1.01
    bad = api.validate(pipe, broken)
    bad.report.diagnosis = diagnose.for_result(bad, pipe)
    return good.report.to_dict(), bad.report.to_dict()  # the JSON form, as read back from a file


@pytest.mark.parametrize("which", ["passed", "failed"])
def test_report_renders_without_errors(reports, tmp_path, which):
    report = reports[0] if which == "passed" else reports[1]
    assert report["verdict"] == which
    page = to_html(report)
    recorded, console, dom = render(page, tmp_path)
    assert recorded == [] and console == [], (recorded, console)
    assert 'data-ready="1"' in dom  # the page's own script ran to the end
    assert dom.count("<svg") == len(report["error_histograms"]) + 1
    screenshot(page, tmp_path, f"report_{which}")


def test_probe_catches_errors_and_fetches(tmp_path):
    # The same check on a page that throws, logs and fetches must fail.
    page = (
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'\"></head><body><img src='http://example.invalid/x.png'>"
        "<script>console.error('boom'); null.f();</script></body></html>"
    )
    recorded, console, _ = render(page, tmp_path)
    text = "\n".join(recorded)
    assert "console.error: boom" in text
    assert "TypeError" in text or "null" in text
    assert "csp: img-src" in text
