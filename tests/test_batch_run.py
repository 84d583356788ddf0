"""The batch runner on a mixed manifest: good models, a gate failure, an
untrusted pickle, a model that exits, one that segfaults, one that hangs and
one that eats memory. Each gets its own verdict and the batch goes on; the
reports, the cache, resuming after SIGTERM/SIGKILL and --max-failures."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from batch_support import env_with_path, evil_pickle, models, toml_entry

from onnxgate.plugins.testing import run_cli

pytest.importorskip("skops")

EXPECTED = {  # name -> (verdict, exit code)
    "logreg": ("passed", 0),
    "ridge": ("passed", 0),
    "ridge-strict": ("failed", 1),
    "evil": ("error", 2),
    "exits": ("crashed", 3),
    "segfaults": ("crashed", 3),
    "hangs": ("timeout", 3),
    "hog": ("out-of-memory", 3),
}


def mixed_manifest(folder: Path) -> Path:
    built = models(folder)
    evil_pickle(folder, folder / "PWNED")
    text = '[defaults]\ntags = ["test"]\n\n'
    text += toml_entry(name="logreg", **built["logreg"])
    text += toml_entry(name="ridge", **built["ridge"])
    text += toml_entry(name="ridge-strict", **built["ridge"]) + "[models.outputs.variable]\natol = 0\nrtol = 0\n"
    text += toml_entry(name="evil", source="evil.pkl", trust_source=False)
    text += toml_entry(name="exits", source="badmodels:exits")
    text += toml_entry(name="segfaults", source="badmodels:segfaults")
    text += toml_entry(name="hangs", source="badmodels:hangs", timeout=4)
    text += toml_entry(name="hog", source="badmodels:eats_memory")
    manifest = folder / "batch.toml"
    manifest.write_text(text)
    return manifest


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    manifest = mixed_manifest(folder)
    out = folder / "out"
    started = time.perf_counter()
    proc = run_cli(
        "batch",
        str(manifest),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--max-memory",
        "1G",
        "--no-latency",
        env=env_with_path(folder),
        timeout=300,
    )
    return {"folder": folder, "manifest": manifest, "out": out, "proc": proc, "seconds": time.perf_counter() - started}


def rows_of(out: Path) -> dict:
    return {r["name"]: r for r in json.loads((out / "summary.json").read_text())["models"]}


def test_every_model_gets_its_own_verdict(mixed):
    proc, out = mixed["proc"], mixed["out"]
    assert proc.returncode == 3, proc.stderr  # the largest model code
    assert "Traceback" not in proc.stderr
    rows = rows_of(out)
    assert {n: (r["verdict"], r["exit_code"]) for n, r in rows.items()} == EXPECTED, proc.stdout
    assert rows["exits"]["exit_status"] == 3 and "status 3" in rows["exits"]["message"]
    assert rows["segfaults"]["exit_status"] == -signal.SIGSEGV and "SIGSEGV" in rows["segfaults"]["message"]
    assert "within 4 s" in rows["hangs"]["message"]
    assert "untrusted" in rows["evil"]["message"].lower() or "trust-source" in rows["evil"]["message"]
    assert not (mixed["folder"] / "PWNED").exists()  # trust_source = false: the pickle was not loaded
    # not a TTY: one plain line per model
    assert sum(1 for ln in proc.stdout.splitlines() if ln.startswith("[")) == len(EXPECTED)


def test_outputs_are_complete_and_valid(mixed):
    import jsonschema
    import onnx

    from onnxgate.pipeline.batch.outputs import schema

    out = mixed["out"]
    doc = json.loads((out / "summary.json").read_text())
    jsonschema.validate(doc, schema())
    assert doc["exit_code"] == 3 and doc["counts"]["crashed"] == 2
    for name in ("logreg", "ridge", "ridge-strict"):  # a gate failure still writes model and report
        onnx.checker.check_model(onnx.load(str(out / f"{name}.onnx")))
        assert json.loads((out / f"{name}.report.json").read_text())["verdict"] in ("passed", "failed")
        assert (out / f"{name}.html").read_text().startswith("<!DOCTYPE html>")
    for name in ("exits", "segfaults", "hangs", "hog", "evil"):
        assert not list(out.glob(f"{name}.*"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    assert set(cases) == set(EXPECTED)
    assert cases["ridge-strict"].find("failure") is not None and cases["hangs"].find("error") is not None
    assert cases["logreg"].find("failure") is None and cases["logreg"].find("error") is None
    markdown = (out / "summary.md").read_text()
    assert "2/8 passed" in markdown and "| segfaults | python | crashed |" in markdown


def test_dashboard_sorts_filters_and_links_in_chromium(mixed, tmp_path):
    from test_html_chromium import CHROMIUM, render

    if CHROMIUM is None:
        pytest.skip("Debian's chromium package is not installed")
    page = (mixed["out"] / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    # as a user would: sort by verdict, then filter on "crash"
    driver = """<script>window.addEventListener('load', function(){
      var th = document.querySelectorAll('#models th')[2]; th.click();
      var order = Array.prototype.map.call(document.querySelectorAll('#models tbody tr'), function(r){
        return r.dataset.verdict; });
      var f = document.getElementById('filter'); f.value = 'crash'; f.dispatchEvent(new Event('input'));
      var shown = Array.prototype.filter.call(document.querySelectorAll('#models tbody tr'), function(r){
        return !r.hidden; }).map(function(r){ return r.cells[0].textContent; });
      document.body.setAttribute('data-order', order.join(','));
      document.body.setAttribute('data-shown', shown.join(','));
    });</script>"""
    errors, console, dom = render(page.replace("</body>", driver + "</body>"), tmp_path)
    assert errors == [] and console == [], (errors, console)
    order = dom.split('data-order="')[1].split('"')[0].split(",")
    assert order == sorted(order) and len(order) == len(EXPECTED)
    shown = dom.split('data-shown="')[1].split('"')[0].split(",")
    assert sorted(shown) == ["exits", "segfaults"]
    for name in ("logreg", "ridge-strict"):  # each model links to its own HTML report
        assert f'<a href="{name}.html">{name}</a>' in dom or f"<a href='{name}.html'>" in page


def test_rerun_skips_finished_models_and_rerun_failed_redoes_them(mixed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed["out"], out)
    env = env_with_path(mixed["folder"])
    args = ("batch", str(mixed["manifest"]), "--out", str(out), "--jobs", "2", "--max-memory", "1G", "--no-latency")
    again = run_cli(*args, "--quiet", env=env)
    assert again.returncode == 3
    doc = json.loads((out / "summary.json").read_text())
    assert doc["cached"] == len(EXPECTED) and all(r["cached"] for r in doc["models"])
    assert {n: r["verdict"] for n, r in rows_of(out).items()} == {n: v for n, (v, _) in EXPECTED.items()}
    redo = run_cli(*args, "--rerun-failed", "--quiet", env=env)
    assert redo.returncode == 3
    cached = {n for n, r in rows_of(out).items() if r["cached"]}
    assert cached == {"logreg", "ridge"}  # every failure ran again, the passes did not


def _copies(folder: Path, n: int) -> Path:
    built = models(folder)
    text = "".join(toml_entry(name=f"model-{i:02d}", **built["logreg" if i % 2 else "ridge"]) for i in range(n))
    manifest = folder / "many.toml"
    manifest.write_text(text)
    return manifest


def _start(manifest: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onnxgate.pipeline.cli",
            "batch",
            str(manifest),
            "--out",
            str(out),
            "--jobs",
            "1",
            "--no-latency",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _records(out: Path) -> int:
    return len(list((out / ".onnxgate-batch").glob("*.json"))) if (out / ".onnxgate-batch").is_dir() else 0


def _wait_for_records(proc: subprocess.Popen, out: Path, count: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while _records(out) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no results in time"
        time.sleep(0.05)


def _complete_outputs(out: Path) -> None:
    import onnx

    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for model in out.glob("*.onnx"):
        onnx.load(str(model))  # a complete file, never a partial one
    for report in out.glob("*.report.json"):
        json.loads(report.read_text())


def test_killed_batch_resumes_without_partial_outputs(tmp_path):
    manifest, out, total = _copies(tmp_path, 6), tmp_path / "out", 6
    # SIGTERM: a clean stop, the summary says what did not run
    proc = _start(manifest, out)
    _wait_for_records(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    doc = json.loads((out / "summary.json").read_text())
    assert doc["counts"].get("not-run", 0) >= 1 and len(doc["models"]) == total
    # SIGKILL: no chance to clean up; the rerun must cope
    done = _records(out)
    proc = _start(manifest, out)
    _wait_for_records(proc, out, done + 1)
    proc.kill()
    proc.wait(timeout=30)
    killed_at = _records(out)
    assert killed_at < total
    final = _start(manifest, out)
    stdout, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    doc = json.loads((out / "summary.json").read_text())
    assert doc["cached"] >= killed_at and doc["counts"] == {"passed": total}
    assert f"{doc['cached']} of {total} models already done" in stdout
    _complete_outputs(out)


def test_max_failures_stops_scheduling(tmp_path, monkeypatch):
    models(tmp_path)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        toml_entry(name="crash-0", source="badmodels:killed")
        + "".join(toml_entry(name=f"crash-{i}", source="badmodels:exits") for i in (1, 2))
        + toml_entry(name="logreg", source="logreg.skops", sample="logreg.sample.npz")
    )
    proc = run_cli(
        "batch",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--max-failures",
        "1",
        "--quiet",
        env=env_with_path(tmp_path),
    )
    assert proc.returncode == 3
    rows = rows_of(tmp_path / "out")
    assert rows["crash-0"]["verdict"] == "crashed" and rows["crash-0"]["exit_status"] == -signal.SIGKILL
    assert "SIGKILL" in rows["crash-0"]["message"] and "OOM" in rows["crash-0"]["message"]
    not_run = [n for n, r in rows.items() if r["verdict"] == "not-run"]
    assert len(not_run) == 3 and "logreg" in not_run
    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite")
    assert suite.get("skipped") == "3"


def test_version_change_reruns_exactly_the_models_it_affects(tmp_path, monkeypatch):
    """The "converter upgrade" workflow, from Python: a new scikit-learn reruns
    the scikit-learn models only; a new onnxgate reruns everything."""
    import onnxgate.pipeline.batch.cache as cache
    from onnxgate.pipeline import batch

    built = models(tmp_path)
    ready = tmp_path / "ready.onnx"
    from onnxgate.pipeline import convert

    convert(str(tmp_path / "logreg.skops"), sample=str(tmp_path / "logreg.sample.npz"), latency=False).save(ready)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        toml_entry(name="logreg", **built["logreg"])
        + toml_entry(name="ready", source="ready.onnx", accept_unverified=True)
    )
    out = tmp_path / "out"

    def fresh(**kw):
        rows = batch.run(manifest, out, stream=True, latency=False, **kw)
        assert not isinstance(rows, list)  # an iterator: rows as models finish
        return {r["name"] for r in rows if not r["cached"]}

    assert fresh() == {"logreg", "ready"}
    real = cache.distribution_version
    monkeypatch.setattr(cache, "distribution_version", lambda dist: "999.0" if dist == "scikit-learn" else real(dist))
    assert fresh() == {"logreg"}
    monkeypatch.setattr(cache, "onnxgate_version", lambda: "999.0")
    assert fresh() == {"logreg", "ready"}
    assert {r["verdict"] for r in batch.run(manifest, out, latency=False)} == {
        "passed"
    }  # the ready-made model is checked against onnx.reference


def test_live_progress_on_a_terminal(tmp_path):
    """On a TTY: rich's live display with done/total, ETA, counts per verdict
    and the models running now."""
    import os
    import pty

    models(tmp_path)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        toml_entry(name="slow", source="badmodels:hangs", timeout=2)
        + toml_entry(name="quick", source="badmodels:exits")
    )
    leader, follower = pty.openpty()
    env = {**env_with_path(tmp_path), "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "batch", str(manifest), "--out", str(tmp_path / "out")],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 3
    screen = b"".join(chunks).decode("utf-8", "replace")
    for text in ("onnxgate batch", "/2", "ETA", "running: slow", "crashed 1", "timeout 1"):
        assert text in screen, (text, screen[-2000:])


def test_workers_recycled_after_n_models_and_force_redoes_all(tmp_path):
    models(tmp_path)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        "".join(toml_entry(name=f"tiny-{i}", source="badmodels:tiny_onnx", accept_unverified=True) for i in range(4))
    )
    args = (
        "batch",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--max-models-per-worker",
        "2",
        "--no-latency",
        "--quiet",
    )
    proc = run_cli(*args, env=env_with_path(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [rows_of(tmp_path / "out")[f"tiny-{i}"] for i in range(4)]
    assert {r["verdict"] for r in rows} == {"passed"}  # checked against onnx.reference
    pids = [r["worker_pid"] for r in rows]
    assert pids[0] == pids[1] != pids[2] == pids[3]  # warm for two models, then a fresh worker
    forced = run_cli(*args, "--force", env=env_with_path(tmp_path))
    assert forced.returncode == 0
    assert not any(r["cached"] for r in rows_of(tmp_path / "out").values())
