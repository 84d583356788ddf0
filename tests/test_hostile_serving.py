"""The real inference server (serving venv, 127.0.0.1 only) under hostile and
unlucky conditions (issue 12, items 1, 6, 8, 9, 15): a busy port, a server
that must prove its identity, SIGTERM/SIGKILL to `onnxgate serve`, stale
temporary files, unwritable places, and a bounded load of good and hostile
requests from several threads."""

from __future__ import annotations

import errno
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from signal_support import interruptible

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.deployment import package, record, serve
from onnxgate.pipeline.envs import serving as serving_env

#: Load test: requests per thread, threads; the worker may grow at most this much.
LOAD_ROUNDS = 12
LOAD_THREADS = 6
MAX_WORKER_GROWTH_MB = 64
BIG_CHUNKED_BYTES = 150 * 1024 * 1024  # once, among the load: buffered whole, it would show in the worker's peak
LIMIT = 1024 * 1024  # max_request_bytes of the load-test package: hostile bodies stay small


@pytest.fixture(scope="module")
def venv():
    return serving_env.create(quiet=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    tmp = tmp_path_factory.mktemp("hserve")
    X, y = load_iris(return_X_y=True)
    sample = tmp / "sample.npy"
    np.save(sample, X[:7].astype(np.float32))
    path = tmp / "iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample, latency=False).save(path)
    return path


@pytest.fixture(scope="module")
def server(model, venv, tmp_path_factory):
    gate = record.check(model)
    pkg = package.build(gate, tmp_path_factory.mktemp("hpkg") / "package", max_request_bytes=LIMIT)
    with serve.start(pkg, venv, expected_sha256=gate.sha256) as running:
        yield running


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Another program on the port: healthy, and answers any POST with 200."""

    def do_GET(self):
        self._answer(b"Healthy")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(b'{"outputs": {}}')

    def _answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def impostor():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _gunicorns_on(port):
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "gunicorn" in line and f"127.0.0.1:{port}" in line]


# ---- item 1: a busy port, and a server that proves its identity -------------------------------
def test_deploy_on_a_busy_port_is_exit_2_naming_the_port(model, venv, impostor, tmp_path, capsys):
    code = cli.main(
        ["deploy", str(model), "--registry", str(tmp_path / "reg"), "--port", str(impostor), "--keep-running"]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{impostor}" in err and "in use" in err and "DEPLOYED" not in err
    assert _gunicorns_on(impostor) == []  # nothing left behind


def test_identity_check_rejects_a_server_that_is_not_ours(model, venv, impostor, tmp_path):
    """Even when the port looked free at first (a race), the health answer alone proves nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake = serve.Server(proc, impostor, tmp_path / "log", nonce="ours")
        with pytest.raises(serve.PortInUse, match=str(impostor)):
            serve.check_identity(fake)
    finally:
        proc.kill()
        proc.wait()


def test_server_identity_names_the_validated_model_and_our_nonce(server, model):
    found = serve.check_identity(server, record.load(model)["model"]["sha256"])
    assert found["nonce"] == server.nonce and found["model_sha256"] == record.sha256_model(model)
    with pytest.raises(record.DeployRefused, match="not the validated"):
        serve.check_identity(server, "0" * 64)


def test_port_out_of_range_is_exit_2_one_line(model, tmp_path, capsys):
    for port in ("70000", "0", "-1"):
        code = cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg"), "--port", port])
        err = capsys.readouterr().err
        assert code == 2 and "between 1 and 65535" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "reg").exists()


# ---- item 15: unwritable places ----------------------------------------------------------------
def test_read_only_registry_is_exit_2_one_line(model, tmp_path, capsys, monkeypatch):
    import tempfile as tempfile_mod

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile_mod, "mkdtemp", read_only)
    code = cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and len(err.strip().splitlines()) == 1, err


def test_full_disk_while_registering_is_exit_2_and_leaves_nothing(model, tmp_path, capsys, monkeypatch):
    import shutil as shutil_mod

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil_mod, "copyfile", full)
    code = cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in (tmp_path / "reg" / "iris").iterdir()] == [".lock"]


def test_full_disk_while_writing_a_report_is_exit_2(tmp_path, monkeypatch):
    from onnxgate.pipeline.core import atomic
    from onnxgate.plugins.errors import UsageError

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UsageError, match="No space left"):
        atomic.write_bytes(tmp_path / "r.json", b"{}")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []


# ---- item 8: signals, orphans and stale temporary files ----------------------------------------
def _serve_subprocess(model, tmp_path):
    env = {**os.environ, "ONNXGATE_REGISTRY": str(tmp_path / "reg")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "serve", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=interruptible,
    )
    line = proc.stdout.readline()
    assert "smoke test passed" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    pid = int(line.split("(pid ")[1].split(")")[0])
    return proc, pid, line.split(" at ")[1].split()[0]


def _gone(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not serve._alive(pid) or serve._zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _serve_dirs(pid):
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f"onnxgate-serve-{pid}-*"))


def test_sigterm_stops_onnxgate_serve_and_its_server(model, venv, tmp_path):
    proc, server_pid, url = _serve_subprocess(model, tmp_path)
    assert _serve_dirs(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert _gone(server_pid), "gunicorn still running after SIGTERM to onnxgate serve"
    assert not _serve_dirs(proc.pid)


def test_after_sigkill_the_next_start_stops_the_orphan_and_cleans_up(model, venv, tmp_path):
    proc, server_pid, url = _serve_subprocess(model, tmp_path)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait(timeout=10)
    try:
        assert serve._alive(server_pid) and not serve._zombie(server_pid)  # the orphan still serves
        assert _serve_dirs(proc.pid)
        # the next onnxgate serve finds the orphan through its pid file and stops it
        proc2, server2, _ = _serve_subprocess(model, tmp_path)
        proc2.send_signal(signal.SIGINT)
        proc2.wait(timeout=30)
        assert _gone(server_pid), "the orphaned server was not stopped"
        assert not _serve_dirs(proc.pid), "the killed run's temp folder was not removed"
    finally:
        if serve._alive(server_pid) and not serve._zombie(server_pid):
            os.killpg(server_pid, signal.SIGKILL)  # the server this test started, by its id


def test_keep_running_server_is_not_taken_for_an_orphan(model, venv, tmp_path):
    report = tmp_path / "d.json"
    assert (
        cli.main(["deploy", str(model), "--registry", str(tmp_path / "reg"), "--keep-running", "--report", str(report)])
        == 0
    )
    pid = json.loads(report.read_text())["pid"]
    try:
        assert serve.reap_orphans() == [] and serve._alive(pid)
    finally:
        os.killpg(pid, signal.SIGTERM)  # the server this test started, by its id


def test_stale_temp_files_of_killed_runs_are_removed_on_the_next_run(model, tmp_path):
    from onnxgate.pipeline.core import atomic
    from onnxgate.pipeline.deployment.registry import LocalRegistry

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_tmp = tmp_path / f".out.json.{dead.pid}.abc123.tmp"
    live_tmp = tmp_path / f".out.json.{os.getppid()}.abc123.tmp"  # a live process's: kept
    stale_tmp.write_text("half")
    live_tmp.write_text("half")
    atomic.write_bytes(tmp_path / "out.json", b"{}")
    assert not stale_tmp.exists() and live_tmp.exists()

    reg = LocalRegistry(tmp_path / "reg")
    (tmp_path / "reg" / "iris" / f".register.{dead.pid}.xyz").mkdir(parents=True)
    reg.register(record.check(model), "iris")
    assert not (tmp_path / "reg" / "iris" / f".register.{dead.pid}.xyz").exists()

    (tmp_path / f".pkg.{dead.pid}.xyz" / "model").mkdir(parents=True)
    package.build(record.check(model), tmp_path / "pkg")
    assert not (tmp_path / f".pkg.{dead.pid}.xyz").exists()


# ---- item 9: a bounded load of good and hostile requests ---------------------------------------
def _raw_request(port, head: bytes, body_chunks=(), timeout=30):
    """One HTTP exchange on a fresh connection; (status or None, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: read its answer
        data = b""
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
        except (TimeoutError, ConnectionResetError):
            pass
    if not data.startswith(b"HTTP/1."):
        return None, data
    head_end = data.find(b"\r\n\r\n")
    return int(data.split(b" ", 2)[1]), data[head_end + 4 :]


def _post(port, body: bytes, extra=b""):
    head = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\n" + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return _raw_request(port, head, [body])


def _chunked(port, total: int):
    head = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"[" + b"1.0," * 16383 + b"1]"  # ~64 KiB of JSON-ish bytes
    chunks = []
    sent = 0
    while sent < total:
        chunks.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent += len(piece)
    chunks.append(b"0\r\n\r\n")
    return _raw_request(port, head, chunks)


def _huge_content_length(port):
    head = (
        b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 10000000000\r\n\r\n"
    )
    return _raw_request(port, head)  # declares 10 GB, sends nothing: answered at once, not awaited


def _peak_rss_mb(pid):
    """The process's peak resident memory (a buffered body shows here even after it is freed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_bounded_load_of_good_and_hostile_requests(server, model):
    rec = record.load(model)
    good = json.dumps(rec["smoke"]["request"]).encode()
    worker = serve.identity(server)["pid"]
    before = _peak_rss_mb(worker)
    hostile = {
        "deep nesting": lambda p: _post(p, b'{"inputs": {"X": ' + b"[" * 1000 + b"]" * 1000 + b"}}"),
        "deeper nesting": lambda p: _post(p, b"[" * 50_000 + b"]" * 50_000),
        "huge Content-Length": _huge_content_length,
        "chunked over the limit": lambda p: _chunked(p, 2 * LIMIT),
        "chunked within the limit": lambda p: _chunked(p, LIMIT // 4),
        "wrong types": lambda p: _post(p, b'{"inputs": {"X": [["a", true, null, {}]]}}'),
        "booleans": lambda p: _post(p, b'{"inputs": {"X": [[true, false, true, false]]}}'),
        "NaN literals": lambda p: _post(p, b'{"inputs": {"X": [[NaN, Infinity, -Infinity, 1]]}}'),
        "non-UTF-8": lambda p: _post(p, b'{"inputs": {"X": [[1, 2, 3, "\xff\xfe"]]}}'),
    }
    kinds = ["good"] + sorted(hostile)
    statuses = {k: Counter() for k in kinds}
    wrong_answers = []
    lock = threading.Lock()

    def worker_thread(offset):
        for i in range(LOAD_ROUNDS):
            kind = kinds[(offset + i) % len(kinds)]
            if kind == "good":
                status, raw = _post(server.port, good)
                if status == 200:
                    answer = json.loads(raw)
                    if not serve.compare_response(answer, rec["smoke"], rec["tolerance"]).passed:
                        with lock:
                            wrong_answers.append(raw[:200])
            else:
                status, raw = hostile[kind](server.port)
                if kind == "NaN literals" and status == 200:
                    json.loads(raw, parse_constant=lambda c: wrong_answers.append(f"bare {c}"))
            with lock:
                statuses[kind][status] += 1

    threads = [threading.Thread(target=worker_thread, args=(n,)) for n in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    big_status, _ = _chunked(server.port, BIG_CHUNKED_BYTES)
    for t in threads:
        t.join(timeout=300)
    assert big_status == 413
    assert not any(t.is_alive() for t in threads), "the load test did not finish"
    assert sum(sum(c.values()) for c in statuses.values()) == LOAD_ROUNDS * LOAD_THREADS
    fivexx = {k: c for k, c in statuses.items() if any(s is None or s >= 500 for s in c)}
    assert not fivexx, statuses
    assert set(statuses["good"]) == {200} and not wrong_answers, (statuses["good"], wrong_answers)
    for kind in ("deep nesting", "deeper nesting", "wrong types", "booleans", "non-UTF-8"):
        assert set(statuses[kind]) <= {400}, (kind, statuses[kind])
    for kind in ("huge Content-Length", "chunked over the limit"):
        assert set(statuses[kind]) <= {413}, (kind, statuses[kind])
    assert set(statuses["NaN literals"]) <= {200}
    assert server.process.poll() is None and serve.identity(server)["pid"] == worker  # no worker restart
    grown = _peak_rss_mb(worker) - before
    assert grown < MAX_WORKER_GROWTH_MB, f"worker grew {grown:.0f} MB"
