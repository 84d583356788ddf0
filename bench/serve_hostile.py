"""Worker memory of the real inference server under hostile request bodies,
as a ratio of its peak after ordinary requests measured in the same run.

    python bench/serve_hostile.py [--chunked-mb 150]

Builds and packages an iris model, starts the server from the serving venv on
127.0.0.1, sends 20 ordinary requests (the baseline peak), then one chunked
body of --chunked-mb MB (no Content-Length) and one 100,000-deep nested body,
and prints each answer's status, time and the worker's peak memory (VmHWM).
A body buffered in full before the 16 MiB check shows as a peak far above the
baseline; onnxgate's score.py stops buffering at the limit.
"""

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import build_model


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def exchange(port: int, head: bytes, chunks=()) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while part := sock.recv(65536):
                data += part
        except ConnectionResetError:
            pass
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0


def post(port: int, body: bytes) -> int:
    return exchange(
        port,
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body),
        [body],
    )


def chunked(port: int, total: int) -> int:
    piece = b"[" + b"1.0," * 16383 + b"1]"
    frames = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * (total // len(piece) + 1) + [b"0\r\n\r\n"]
    return exchange(
        port,
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        frames,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunked-mb", type=int, default=150)
    args = parser.parse_args()

    from onnxgate.pipeline.deployment import package, record, serve
    from onnxgate.pipeline.envs import serving as serving_env

    tmp = Path(tempfile.mkdtemp(prefix="onnxgate-bench-"))
    model = build_model(tmp, 7)
    gate = record.check(model)
    pkg = package.build(gate, tmp / "package")
    good = json.dumps(record.load(model)["smoke"]["request"]).encode()
    with serve.start(pkg, serving_env.find(package.ort_version_of(gate)), expected_sha256=gate.sha256) as server:
        worker = serve.identity(server)["pid"]
        for _ in range(20):
            assert post(server.port, good) == 200
        baseline = peak_mb(worker)
        print(f"baseline: worker peak {baseline:.0f} MB after 20 ordinary requests")
        for label, send in (
            (f"chunked {args.chunked_mb} MB", lambda: chunked(server.port, args.chunked_mb << 20)),
            ("nested 100,000 deep", lambda: post(server.port, b"[" * 100_000 + b"]" * 100_000)),
        ):
            t0 = time.perf_counter()
            status = send()
            peak = peak_mb(worker)
            print(
                f"{label}: HTTP {status} in {time.perf_counter() - t0:.2f} s; worker peak {peak:.0f} MB "
                f"({peak / baseline:.2f}x baseline)"
            )
        assert post(server.port, good) == 200 and server.process.poll() is None
    return 0


if __name__ == "__main__":
    sys.exit(main())
