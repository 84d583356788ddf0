"""The same jobs on a Dask distributed cluster.

Dask cannot interrupt a running task (dask/distributed#2617), so the Dask
task does not convert: it hands the model to a warm child process it
supervises with pebble, exactly as the local executor does. A crash, a
timeout or the memory cap therefore kills only that child; the Dask worker
reports the verdict and carries on. Sources and outputs sit on a path every
worker sees, or (``ship=True``, ``--ship``) travel as bytes: the model's files
go with the task, its outputs come back in the result (see docs/batch.md).
"""

from __future__ import annotations

import io
import multiprocessing
import shutil
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from onnxgate.pipeline.batch import pool, task
from onnxgate.plugins.errors import UsageError

#: How long to try reaching --scheduler before giving up (exit 2).
CONNECT_TIMEOUT = "20s"
#: For the LocalCluster onnxgate starts: a task is one model (seconds, one at
#: a time per worker, in a child process), so Dask's statistical profiler,
#: its 100 ms memory polling and work stealing only take CPU from the
#: conversions (a few percent of a 2-core machine). A cluster you start
#: yourself keeps its own settings.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
}

#: One supervised child per Dask worker (keyed by its address: the workers of
#: a threaded LocalCluster share this process).
_worker_pools: dict[str, Any] = {}
_worker_lock = threading.Lock()


def _allow_children() -> None:
    # Dask's nanny starts workers as daemonic processes, which multiprocessing
    # forbids to start children; the children here are supervised by pebble
    # (killed on timeout, on close, and when this worker exits).
    process = multiprocessing.current_process()
    if process.daemon:
        process.daemon = False


def convert_on_worker(
    entry,
    out: str,
    gate,
    settings: dict[str, Any],
    timeout: float,
    max_models_per_worker: int,
    shipped: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """The Dask task: run one model in this worker's supervised child.

    ``settings["slots_on_host"]``: how many models this worker's host runs at
    once (its share of the cores follows)."""
    if shipped is None:
        return _supervised(entry, out, gate, settings, timeout, max_models_per_worker)
    scratch = Path(tempfile.mkdtemp(prefix="onnxgate-shipped-"))
    try:
        paths = {key: str(_unpack(blob, scratch / key)) for key, blob in shipped.items()}
        baseline = paths.pop("baseline", None)
        entry = replace(entry, **paths)
        gate = replace(gate, baseline=Path(baseline)) if baseline else gate
        (scratch / "out").mkdir()
        row = _supervised(entry, str(scratch / "out"), gate, settings, timeout, max_models_per_worker)
        row["shipped"] = {p.name: p.read_bytes() for p in (scratch / "out").iterdir() if p.is_file()}
        return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pack(path: Path) -> bytes:
    """A file or folder as bytes (a tar archive keeps folders and names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(path), arcname=path.name)
    return buffer.getvalue()


def _unpack(blob: bytes, folder: Path) -> Path:
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        [top] = {m.name.split("/")[0] for m in tar.getmembers()}
        tar.extractall(folder, filter="data")  # no absolute paths, links or devices
    return folder / top


def _supervised(
    entry, out: str, gate, settings: dict[str, Any], timeout: float, max_models_per_worker: int
) -> dict[str, Any]:
    from distributed import get_worker

    address = get_worker().address
    with _worker_lock:
        worker_pool = _worker_pools.get(address)
        if worker_pool is None or not worker_pool.active:
            _allow_children()
            threads = pool.thread_share(settings.get("slots_on_host", 1))
            worker_pool = _worker_pools[address] = pool.make_pool(max_models_per_worker, threads)
        started = time.perf_counter()
        future = worker_pool.schedule(
            task.convert_entry,
            args=(entry, out, gate),
            kwargs={"latency": settings["latency"], "max_memory": settings["max_memory"]},
            timeout=timeout,
        )
    return pool.outcome(future, entry, started, timeout)


class DaskExecutor:
    """One slot per Dask worker thread; a slot's models prefer its worker."""

    def __init__(self, scheduler: str | None, n_workers: int, max_models_per_worker: int = 0, ship: bool = False):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs Dask: pip install 'onnxgate[dask]'") from None
        self._cluster = None
        self._max_tasks = max_models_per_worker
        self._ship = ship
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        else:
            if n_workers < 1:
                raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT or --dask-workers N")
            # worker threads of this process, one model at a time each: the model runs in
            # the worker's supervised child anyway, so worker processes and their nannies
            # would only add processes competing with the conversions for the cores
            with dask.config.set(QUIET_WORKERS):
                self._cluster = LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None
                )
            self.client = Client(self._cluster)
        workers = self.client.scheduler_info()["workers"]
        if not workers:
            self.close()
            raise UsageError(f"--scheduler {scheduler}: the cluster has no workers")
        self._slots: list[str] = [
            addr for addr, info in sorted(workers.items()) for _ in range(int(info.get("nthreads", 1)))
        ]
        self.slots = len(self._slots)
        self._per_host: dict[str, int] = {}
        for addr, info in workers.items():
            host = info.get("host") or addr
            self._per_host[host] = self._per_host.get(host, 0) + int(info.get("nthreads", 1))
        self._host_of = {addr: info.get("host") or addr for addr, info in workers.items()}
        self._futures: list[Any] = []
        self._out = ""

    def submit(self, slot: int, entry, out: str, gate, settings: dict[str, Any], timeout: float):
        shipped = self._files_of(entry, gate) if self._ship else None
        settings = {**settings, "slots_on_host": self._per_host[self._host_of[self._slots[slot]]]}
        future = self.client.submit(
            convert_on_worker,
            entry,
            out,
            gate,
            settings,
            timeout,
            self._max_tasks,
            shipped,
            workers=[self._slots[slot]],
            allow_other_workers=True,
            pure=False,
            key=f"onnxgate-{entry.name}-{time.monotonic_ns()}",
        )
        self._out = out  # the same for every model: results are written there
        self._futures.append(future)
        return future

    @staticmethod
    def _files_of(entry, gate) -> dict[str, bytes]:
        files = {key: getattr(entry, key) for key in ("source", "sample", "expected", "golden")}
        files["baseline"] = str(gate.baseline) if gate.baseline else None
        # a module:attr source is not a file: its package must be installed on the workers
        return {key: pack(Path(p)) for key, p in files.items() if p and Path(p).exists()}

    @staticmethod
    def wait(futures, timeout: float) -> None:
        from distributed import wait

        try:
            wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished in time
            pass

    def result(self, future, entry, started: float, timeout: float, framework: str) -> dict[str, Any]:
        try:
            row = future.result()
            for name, data in row.pop("shipped", {}).items():  # outputs that travelled back as bytes
                from onnxgate.pipeline.core import atomic

                atomic.write_bytes(Path(self._out) / name, data)
            return row
        except Exception as exc:  # KilledWorker: the Dask worker itself died
            row = task.new_row(entry, framework)
            row.update(
                verdict=task.CRASHED,
                message=f"the Dask worker died: {type(exc).__name__}: {str(exc)[:200]}",
                seconds=round(time.perf_counter() - started, 3),
            )
            return row

    def close(self, kill: bool = False) -> None:
        if kill and self._futures:
            self.client.cancel(self._futures)
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
