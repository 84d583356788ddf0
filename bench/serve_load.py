"""Throughput and latency of a validated model behind Azure ML's inference
server on 127.0.0.1, under a bounded concurrent load.

    python bench/serve_load.py [--requests 2000] [--threads 8] [--workers 1] [--rows 7]

Builds an iris LogisticRegression model, converts and validates it, packages
it, starts the real server from the serving venv (`onnxgate serve --setup`),
sends the requests to 127.0.0.1 only, prints figures, stops the server.
Bounded: at most --requests requests and --max-seconds of wall time.
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np


def build_model(tmp: Path, rows: int) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    X, y = load_iris(return_X_y=True)
    sample = tmp / "sample.npy"
    np.save(sample, X[:rows].astype(np.float32))
    path = tmp / "iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample).save(path)
    return path


def post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--rows", type=int, default=7, help="rows per request")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args()
    args.requests = min(args.requests, 20000)  # bounded whatever is asked

    from onnxgate.pipeline.deployment import package, record, serve
    from onnxgate.pipeline.envs import serving as serving_env

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp, args.rows)
        gate = record.check(model)
        pkg = package.build(gate, tmp / "package")
        venv = serving_env.find(package.ort_version_of(gate))
        t0 = time.perf_counter()
        server = serve.start(pkg, venv, workers=args.workers)
        startup = time.perf_counter() - t0
        body = json.dumps(gate.record["smoke"]["request"]).encode()
        latencies, statuses, lock = [], Counter(), threading.Lock()
        deadline = time.monotonic() + args.max_seconds
        remaining = [args.requests]

        def worker():
            while True:
                with lock:
                    if remaining[0] <= 0 or time.monotonic() > deadline:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                try:
                    status = post(server.scoring_uri, body)
                except OSError as exc:
                    status = f"error {type(exc).__name__}"
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[status] += 1

        try:
            for _ in range(50):  # warm-up, not counted
                post(server.scoring_uri, body)
            threads = [threading.Thread(target=worker) for _ in range(args.threads)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            server.stop()

    ms = sorted(x * 1000 for x in latencies)
    q = lambda p: ms[min(len(ms) - 1, int(p / 100 * len(ms)))]  # noqa: E731
    print(f"server startup to healthy: {startup:.2f} s (workers={args.workers})")
    print(f"requests: {len(ms)} from {args.threads} threads, {args.rows} rows each, statuses {dict(statuses)}")
    print(f"throughput: {len(ms) / wall:.0f} req/s ({len(ms) * args.rows / wall:.0f} rows/s), wall {wall:.2f} s")
    print(
        f"latency ms: p50 {q(50):.2f}  p95 {q(95):.2f}  p99 {q(99):.2f}  max {ms[-1]:.2f}  "
        f"mean {statistics.fmean(ms):.2f}"
    )
    bad = sum(v for k, v in statuses.items() if k != 200)
    return 1 if bad or len(ms) != args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
