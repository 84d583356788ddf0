"""Running a package with Azure ML's inference server on 127.0.0.1, and the
smoke test that proves an endpoint answers like the validated model.

``azmlinfsrv`` always binds 0.0.0.0, so gunicorn is started directly with the
server's WSGI app (what ``azmlinfsrv`` itself does), bound to loopback.

The server proves it is the one onnxgate started: each start gets a random
nonce (in its environment), and ``GET /score?onnxgate=identity`` must answer
that nonce and the sha256 of the model score.py loaded. A pid file per server
(``servers_dir()``) names its pid and nonce, so the next start stops servers
whose onnxgate process was killed (SIGKILL) without stopping them.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.pipeline.envs import serving as serving_env
from onnxgate.plugins.errors import EXIT_CONVERSION_FAILED, EXIT_VALIDATION_FAILED, OnnxgateError, UsageError
from onnxgate.plugins.spec import Tolerance

HOST = "127.0.0.1"
APP = "azureml_inference_server_http.server.entry:app"
READY_TIMEOUT_S = 60.0


class ServeError(OnnxgateError):
    """The server did not start or died (exit 3, as a failed deploy)."""

    exit_code = EXIT_CONVERSION_FAILED


class SmokeTestFailed(OnnxgateError):
    """The endpoint answered, but not like the validated model (exit 1)."""

    exit_code = EXIT_VALIDATION_FAILED


NONCE_ENV = "ONNXGATE_SERVER_NONCE"
RUN_DIR_ENV = "ONNXGATE_RUN_DIR"


def check_port(port: int | None) -> None:
    """A usable port: 1..65535 and free on 127.0.0.1 (exit 2 otherwise)."""
    if port is None:
        return
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--port {port}: must be between 1 and 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, int(port)))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise UsageError(
                    f"--port {port}: {HOST}:{port} is already in use by another process "
                    "(choose another port, or leave --port out for a free one)"
                ) from None
            raise UsageError(f"--port {port}: cannot listen on {HOST}:{port}: {exc.strerror}") from None


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
    nonce: str = ""
    pid_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/score"

    @property
    def pid(self) -> int:
        return self.process.pid

    def detach(self) -> None:
        """Leave the server running after onnxgate exits: not an orphan to reap."""
        if self.pid_file is not None:
            _write_pid_file(self.pid_file, self, detached=True)

    def stop(self, timeout: float = 15.0) -> None:
        if self.pid_file is not None:
            try:
                self.pid_file.unlink()
            except OSError:
                pass
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

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def command(venv: Path, port: int, workers: int = 1) -> list[str]:
    return [
        str(venv / "bin" / "gunicorn"),
        "-b",
        f"{HOST}:{port}",
        "-w",
        str(workers),
        # without it gunicorn writes ~/.gunicorn/gunicorn.ctl
        "--no-control-socket",
        "--timeout",
        "300",
        "--access-logfile",
        "-",
        APP,
    ]


def servers_dir() -> Path:
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "onnxgate" / "servers"


def _write_pid_file(path: Path, server: Server, detached: bool = False) -> None:
    from onnxgate.pipeline.core import atomic

    atomic.write_bytes(
        path,
        json.dumps(
            {
                "pid": server.pid,
                "port": server.port,
                "nonce": server.nonce,
                "owner": os.getpid(),
                "detached": detached,
                "log": str(server.log_path),
            }
        ),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _has_nonce(pid: int, nonce: str) -> bool:
    """The process is the server with this nonce (pids are reused: check before signalling)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return bool(nonce) and f"{NONCE_ENV}={nonce}".encode() in environ.split(b"\0")


def reap_orphans() -> list[int]:
    """Stop servers whose onnxgate process died without stopping them; the pids stopped."""
    folder = servers_dir()
    stopped: list[int] = []
    if not folder.is_dir():
        return stopped
    for path in folder.glob("*.json"):
        try:
            info = json.loads(path.read_text("utf-8"))
            pid, owner = int(info["pid"]), int(info["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid) or not _has_nonce(pid, str(info.get("nonce", ""))):
            path.unlink(missing_ok=True)  # gone, or the pid now belongs to someone else
            continue
        if info.get("detached") or _alive(owner):
            continue  # left running on purpose, or its onnxgate is still there
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid) or _zombie(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        path.unlink(missing_ok=True)
        stopped.append(pid)
    return stopped


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def start(
    package: Path,
    venv: Path,
    port: int | None = None,
    workers: int = 1,
    log_path: Path | None = None,
    detach: bool = False,
    expected_sha256: str | None = None,
) -> Server:
    """Start the server on the package and wait until it is healthy and has
    proved its identity (our nonce, and ``expected_sha256`` when given)."""
    reap_orphans()
    check_port(port)
    package = Path(package).resolve()
    port = port or free_port()
    log_path = Path(log_path or (package / "server.log"))
    nonce = secrets.token_hex(16)
    env = dict(os.environ)
    env[NONCE_ENV] = nonce
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
    log = open(log_path, "ab")  # noqa: SIM115 - the server child writes to it; closed below
    try:
        process = subprocess.Popen(
            command(venv, port, workers),
            cwd=str(package / "code"),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() signals master and workers together
        )
    finally:
        log.close()
    server = Server(process, port, log_path, nonce)
    try:
        server.pid_file = servers_dir() / f"{process.pid}.json"
        server.pid_file.parent.mkdir(parents=True, exist_ok=True)
        _write_pid_file(server.pid_file, server)
        wait_healthy(server)
        check_identity(server, expected_sha256)
    except BaseException:
        server.stop()
        raise
    return server


class PortInUse(UsageError):
    """Something else answers on the port (exit 2, naming it)."""


def identity(server: Server) -> dict[str, Any]:
    status, answer = get_json(server.scoring_uri + "?onnxgate=identity")
    found = answer.get("onnxgate") if isinstance(answer, dict) else None
    return found if status == 200 and isinstance(found, dict) else {}


def check_identity(server: Server, expected_sha256: str | None = None) -> dict[str, Any]:
    """The answering server is ours, alive, and loaded the validated model."""
    found = identity(server)
    if server.process.poll() is not None or found.get("nonce") != server.nonce:
        raise PortInUse(
            f"port {server.port}: another server answers on {HOST}:{server.port}, not the one "
            "onnxgate started; choose another --port"
        )
    if expected_sha256 and found.get("model_sha256") != expected_sha256:
        from onnxgate.pipeline.deployment.record import DeployRefused

        raise DeployRefused(
            f"the server loaded a model with sha256 {str(found.get('model_sha256'))[:12]}, "
            f"not the validated {expected_sha256[:12]}"
        )
    return found


def get_json(url: str, timeout: float = 10.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_healthy(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if "Address already in use" in server.log_tail(50) or "Connection in use" in server.log_tail(50):
                raise PortInUse(f"--port {server.port}: {HOST}:{server.port} is already in use by another process")
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


def post_json(url: str, body: Any, timeout: float = 60.0, headers: dict[str, str] | None = None):
    """(status, parsed JSON or text) of a POST; HTTP errors are answers, not exceptions."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    data = data.encode("utf-8") if isinstance(data, str) else data
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
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
    outputs: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "message": self.message, "outputs": self.outputs}


def compare_response(answer: Any, smoke: dict[str, Any], tolerance: dict[str, float]) -> SmokeResult:
    """Compare an endpoint's JSON answer with the record's expected response."""
    from onnxgate.pipeline.gate.compare import compare_output

    expected = smoke["response"]["outputs"]
    got = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(got, dict):
        return SmokeResult(False, message=f"the answer has no 'outputs' object: {str(answer)[:200]}")
    missing = [n for n in expected if n not in got]
    if missing:
        return SmokeResult(False, message=f"the answer lacks outputs {missing}")
    default = Tolerance()
    tol = Tolerance(rtol=float(tolerance.get("rtol", default.rtol)), atol=float(tolerance.get("atol", default.atol)))
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


def smoke_test(scoring_uri: str, record: dict[str, Any] | None) -> SmokeResult:
    """POST the record's sample request; raise SmokeTestFailed on a wrong answer."""
    smoke = (record or {}).get("smoke")
    if not smoke:
        raise SmokeTestFailed("no smoke sample in the validation record: nothing proves the endpoint works")
    assert record is not None  # the smoke sample came from it
    status, answer = post_json(scoring_uri, smoke["request"])
    if status != 200:
        raise SmokeTestFailed(f"smoke test: the endpoint answered HTTP {status}: {str(answer)[:300]}")
    result = compare_response(answer, smoke, record.get("tolerance", {}))
    if not result.passed:
        raise SmokeTestFailed(f"smoke test failed: {result.message}")
    return result


def ensure_venv_for(ort_version: str) -> Path:
    if not ort_version:
        raise UsageError("cannot tell which onnxruntime validated this model")
    return serving_env.find(ort_version)
