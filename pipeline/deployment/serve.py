"""Running a package with Azure ML's inference server on 127.0.0.1, and the
smoke test that proves an endpoint answers like the validated model.

``azmlinfsrv`` always binds 0.0.0.0, so gunicorn is started directly with the
server's WSGI app (what ``azmlinfsrv`` itself does), bound to loopback.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from onnxgate.plugins.errors import OnnxgateError, UsageError, EXIT_CONVERSION_FAILED, EXIT_VALIDATION_FAILED

HOST = "127.0.0.1"
APP = "azureml_inference_server_http.server.entry:app"
READY_TIMEOUT_S = 60.0


class ServeError(OnnxgateError):
    """The server did not start or died (exit 3, as a failed deploy)."""

    exit_code = EXIT_CONVERSION_FAILED


class SmokeTestFailed(OnnxgateError):
    """The endpoint answered, but not like the validated model (exit 1)."""

    exit_code = EXIT_VALIDATION_FAILED


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running inference server process (started by us, stopped by pid)."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/score"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        # gunicorn: SIGTERM = graceful stop of master and workers (its own group)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def command(venv: Path, port: int, workers: int = 1) -> List[str]:
    return [
        str(venv / "bin" / "gunicorn"), "-b", f"{HOST}:{port}", "-w", str(workers),
        # without it gunicorn writes ~/.gunicorn/gunicorn.ctl
        "--no-control-socket",
        "--timeout", "300", "--access-logfile", "-", APP,
    ]


def start(package: Path, venv: Path, port: Optional[int] = None, workers: int = 1,
          log_path: Optional[Path] = None, detach: bool = False) -> Server:
    """Start the server on the package and wait until it is healthy."""
    package = Path(package).resolve()
    port = port or free_port()
    log_path = Path(log_path or (package / "server.log"))
    env = dict(os.environ)
    env.update(
        AZUREML_ENTRY_SCRIPT=str(package / "code" / "score.py"),
        AZUREML_MODEL_DIR=str(package / "model"),
        AML_APP_ROOT=str(package / "code"),
        # the server would ping Application Insights otherwise
        AML_APP_INSIGHTS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # the serving venv must not see ours
        env.pop(var, None)
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen(
            command(venv, port, workers), cwd=str(package / "code"), env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() signals master and workers together
        )
    finally:
        log.close()
    server = Server(process, port, log_path)
    try:
        wait_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServeError(
                f"the inference server exited with code {server.process.returncode} before it was healthy; "
                f"its log ({server.log_path}) ends:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as resp:
                if resp.status == 200 and resp.read().strip() == b"Healthy":
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ServeError(f"the inference server was not healthy after {timeout:.0f} s; log:\n{server.log_tail()}")


def post_json(url: str, body: Any, timeout: float = 60.0, headers: Optional[Dict[str, str]] = None):
    """(status, parsed JSON or text) of a POST; HTTP errors are answers, not exceptions."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    data = data.encode("utf-8") if isinstance(data, str) else data
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


@dataclass
class SmokeResult:
    passed: bool
    outputs: List[Dict[str, Any]] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {"passed": self.passed, "message": self.message, "outputs": self.outputs}


def compare_response(answer: Any, smoke: Dict[str, Any], tolerance: Dict[str, float]) -> SmokeResult:
    """Compare an endpoint's JSON answer with the record's expected response."""
    from onnxgate.plugins.spec import Tolerance
    from onnxgate.pipeline.gate.compare import compare_output

    expected = smoke["response"]["outputs"]
    got = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(got, dict):
        return SmokeResult(False, message=f"the answer has no 'outputs' object: {str(answer)[:200]}")
    missing = [n for n in expected if n not in got]
    if missing:
        return SmokeResult(False, message=f"the answer lacks outputs {missing}")
    tol = Tolerance(rtol=float(tolerance.get("rtol", 1e-4)), atol=float(tolerance.get("atol", 1e-5)))
    results = []
    for name, want in expected.items():
        try:
            results.append(compare_output(name, _array(got[name]), _array(want), tol))
        except (ValueError, TypeError) as exc:
            results.append({"name": name, "passed": False, "reason": f"cannot compare: {exc}"})
    bad = [f"{r['name']}: {r['reason']}" for r in results if not r["passed"]]
    return SmokeResult(not bad, results, "; ".join(bad) or f"{len(results)} outputs match the validated model")


def _array(value):
    import numpy as np

    from onnxgate.pipeline.core.arrays import as_array

    if isinstance(value, list) and value and isinstance(value[0], dict):
        return as_array(value)
    array = np.asarray(value)
    if array.dtype.kind == "U":  # non-finite floats travel as "NaN", "Infinity", "-Infinity"
        try:
            return array.astype(np.float64)
        except ValueError:
            pass
    return array


def smoke_test(scoring_uri: str, record: Optional[Dict[str, Any]]) -> SmokeResult:
    """POST the record's sample request; raise SmokeTestFailed on a wrong answer."""
    smoke = (record or {}).get("smoke")
    if not smoke:
        raise SmokeTestFailed("no smoke sample in the validation record: nothing proves the endpoint works")
    status, answer = post_json(scoring_uri, smoke["request"])
    if status != 200:
        raise SmokeTestFailed(f"smoke test: the endpoint answered HTTP {status}: {str(answer)[:300]}")
    result = compare_response(answer, smoke, record.get("tolerance", {}))
    if not result.passed:
        raise SmokeTestFailed(f"smoke test failed: {result.message}")
    return result


def ensure_venv_for(ort_version: str) -> Path:
    from onnxgate.pipeline.envs import serving as serving_env

    if not ort_version:
        raise UsageError("cannot tell which onnxruntime validated this model")
    return serving_env.find(ort_version)
