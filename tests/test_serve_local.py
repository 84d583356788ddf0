"""The real Azure ML inference server (azureml-inference-server-http, from the
serving venv) on 127.0.0.1, answering real HTTP: the sample request, every
kind of bad request, a bounded concurrent load, and `onnxgate deploy` /
`onnxgate serve` end to end.

The serving venv is looked up under $ONNXGATE_HOME (conftest keeps it out of
the throwaway HOME); when missing it is created here (`onnxgate serve
--setup`, needs PyPI, ~30 s).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from signal_support import interruptible

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.deployment import package, record, serve
from onnxgate.pipeline.envs import serving as serving_env

LOAD_REQUESTS = 2000
LOAD_THREADS = 8


@pytest.fixture(scope="module")
def venv():
    return serving_env.create(quiet=True)  # no-op when ready


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    tmp = tmp_path_factory.mktemp("serve")
    X, y = load_iris(return_X_y=True)
    sample = tmp / "sample.npy"
    np.save(sample, X[:7].astype(np.float32))
    path = tmp / "iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample).save(path)
    return path


@pytest.fixture(scope="module")
def server(model, venv, tmp_path_factory):
    pkg = package.build(record.check(model), tmp_path_factory.mktemp("pkg") / "package")
    with serve.start(pkg, venv) as running:
        yield running
    assert running.process.poll() is not None  # stopped


def _post_raw(url, data: bytes, content_type="application/json"):
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _listening_addresses(port):
    """Local addresses with a LISTEN socket on ``port`` (from /proc/net/tcp*)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":
                found.append(addr)
    return found


def test_server_is_bound_to_loopback_only(server):
    assert _listening_addresses(server.port) == ["0100007F"]  # 127.0.0.1, and nothing else


def test_health_and_sample_request(server, model):
    with urllib.request.urlopen(server.url + "/", timeout=10) as resp:
        assert resp.read() == b"Healthy"
    result = serve.smoke_test(server.scoring_uri, record.load(model))
    assert result.passed and {o["name"] for o in result.outputs} == {"label", "probabilities"}


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not UTF-8"),
    (b"[1, 2]", 400, "expected a JSON object"),
    (b'{"inputs": {}}', 400, "missing ['X']"),
    (b'{"inputs": {"X": [[1, 2, 3, 4]], "Z": 1}}', 400, "unknown ['Z']"),
    (b'{"inputs": {"X": [1, 2, 3, 4]}}', 400, "expects rank 2"),
    (b'{"inputs": {"X": [[1, 2, 3]]}}', 400, "expects [None, 4]"),
    (b'{"inputs": {"X": [[1, 2], [3]]}}', 400, "not a rectangular array"),
    (b'{"inputs": {"X": [["a", "b", "c", "d"]]}}', 400, "must hold numbers"),
    (b'{"inputs": {"X": [[true, 1, 2, 3]]}}', 400, "booleans"),  # never silently 1.0
]


@pytest.mark.parametrize("body,status,message", BAD)
def test_bad_requests_get_4xx_with_a_message(server, body, status, message):
    got, raw = _post_raw(server.scoring_uri, body)
    assert got == status, raw[:300]
    if message:
        assert message in json.loads(raw)["message"]


def test_oversized_payload_is_413_not_a_broken_connection(server):
    big = b'{"inputs": {"X": [' + b",".join([b"[1.0, 2.0, 3.0, 4.0]"] * 900_000) + b"]}}"
    assert len(big) > 16 * 1024 * 1024
    got, raw = _post_raw(server.scoring_uri, big)
    assert got == 413 and "limit" in json.loads(raw)["message"]


def test_get_on_score_is_405(server):
    try:
        urllib.request.urlopen(server.scoring_uri, timeout=10)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 405


def test_bad_requests_never_crash_the_worker(server, model):
    for body, _status, _message in BAD * 3:
        _post_raw(server.scoring_uri, body)
    assert server.process.poll() is None
    assert serve.smoke_test(server.scoring_uri, record.load(model)).passed
    log = server.log_tail(10_000)
    for sign in ("Worker exiting", "WORKER TIMEOUT", "Booting worker with pid"):
        if sign == "Booting worker with pid":
            assert log.count(sign) == 1, "a worker was restarted"
        else:
            assert sign not in log


def test_bounded_concurrent_load_has_no_5xx_and_loses_nothing(server, model):
    body = json.dumps(record.load(model)["smoke"]["request"]).encode()
    statuses = Counter()
    lock = threading.Lock()
    per_thread = LOAD_REQUESTS // LOAD_THREADS

    def worker():
        for _ in range(per_thread):
            try:
                status, _raw = _post_raw(server.scoring_uri, body)
            except OSError as exc:
                status = f"error {type(exc).__name__}"
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=worker) for _ in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert sum(statuses.values()) == per_thread * LOAD_THREADS  # nothing lost
    assert statuses == Counter({200: per_thread * LOAD_THREADS}), statuses


# ---- onnxgate deploy --target local / onnxgate serve, end to end ----------------------------
def test_deploy_local_registers_serves_smoke_tests_and_stops(model, venv, tmp_path, capsys):
    reg, report = tmp_path / "reg", tmp_path / "deploy.json"
    assert cli.main(["deploy", str(model), "--registry", str(reg), "--report", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["version"] == 1 and result["registered"] is True
    assert result["smoke_test"]["passed"] is True and result["running"] is False
    assert result["scoring_uri"].startswith("http://127.0.0.1:")
    with pytest.raises(OSError):  # stopped: nothing answers any more
        urllib.request.urlopen(result["scoring_uri"].replace("/score", "/"), timeout=2)
    # same bytes again: same version, still smoke-tested
    assert cli.main(["deploy", str(model), "--registry", str(reg), "--report", str(report)]) == 0
    again = json.loads(report.read_text())
    assert again["version"] == 1 and again["registered"] is False and again["smoke_test"]["passed"]
    assert "DEPLOYED" in capsys.readouterr().out


def test_deploy_local_keep_running_leaves_a_healthy_server(model, venv, tmp_path):
    report = tmp_path / "deploy.json"
    assert (
        cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg"), "--keep-running", "--report", str(report)])
        == 0
    )
    result = json.loads(report.read_text())
    try:
        assert result["running"] is True
        with urllib.request.urlopen(result["scoring_uri"].replace("/score", "/"), timeout=10) as resp:
            assert resp.read() == b"Healthy"
    finally:
        os.killpg(result["pid"], signal.SIGTERM)  # the server we started, by its id


def test_failed_smoke_test_fails_the_deploy_with_exit_1(model, venv, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy.onnx"
    shutil.copyfile(model, copy)
    rec = record.load(model)
    for row in rec["smoke"]["response"]["outputs"]["probabilities"]:
        row[0] += 0.5  # the record says the model answers something else
    record.path_for(copy).write_text(json.dumps(rec))
    code = cli.main(["deploy", str(copy), "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 1 and "smoke test failed" in err and "probabilities" in err


def test_deploy_local_dry_run_writes_nothing(model, tmp_path, capsys):
    reg = tmp_path / "reg"
    assert cli.main(["deploy", str(model), "--registry", str(reg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[dry-run] register iris" in out and "127.0.0.1" in out
    assert not reg.exists()


def test_onnxgate_serve_command_serves_until_interrupted(model, venv, tmp_path):
    """The real CLI in a subprocess: prints the URL after its smoke test, stops on SIGINT."""
    env = {**os.environ, "ONNXGATE_REGISTRY": str(tmp_path / "reg")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "serve", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=interruptible,
    )
    try:
        line = proc.stdout.readline()
        assert "smoke test passed" in line, line + proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ")[1].split()[0]
        status, raw = _post_raw(url, json.dumps(record.load(model)["smoke"]["request"]).encode())
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(url.replace("/score", "/"), timeout=2)


def test_serve_a_registered_name(model, venv, tmp_path, capsys):
    reg = tmp_path / "reg"
    assert cli.main(["deploy", str(model), "--registry", str(reg)]) == 0
    args = cli.build_parser().parse_args(["serve", "iris:1", "--registry", str(reg)])
    from onnxgate.pipeline.cli.deploy import _start_for

    server, rec = _start_for(args)
    try:
        assert serve.smoke_test(server.scoring_uri, rec).passed
    finally:
        server.stop()
    assert cli.main(["serve", "nosuch", "--registry", str(reg)]) == 2


def test_missing_serving_env_is_exit_2_naming_the_setup_command(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ONNXGATE_SERVING_HOME", str(tmp_path / "empty"))
    rec_path = record.path_for(model)
    rec = json.loads(rec_path.read_text())
    with pytest.raises(Exception, match=r"onnxgate serve --setup --onnxruntime 9\.9\.9"):
        serving_env.find("9.9.9")
    code = cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and f"onnxgate serve --setup --onnxruntime {rec['validated_with']['onnxruntime']}" in err
    assert not (tmp_path / "reg").exists()  # refused before registering anything
