"""Warm worker processes that survive bad models (pebble).

Each slot is a one-process ``pebble.ProcessPool``: the process keeps the
frameworks it imported from one model to the next, pebble kills it when a
model overruns its timeout, reports its death (segfault, ``os._exit``, OOM
kill) as ``ProcessExpired`` with the exit status, and replaces it after a
crash, a timeout or ``max_tasks`` models. One pool per slot (rather than one
pool of N) is what lets the scheduler send a framework's models to the
worker that already imported it.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from onnxgate.pipeline.batch import task


def make_pool(max_tasks: int, threads: int = 0):
    import pebble

    # spawn: torch and TensorFlow do not survive fork reliably
    return pebble.ProcessPool(
        max_workers=1,
        max_tasks=max(0, max_tasks),
        initializer=init_worker,
        initargs=(threads,),
        context=multiprocessing.get_context("spawn"),
    )


def thread_share(workers: int) -> int:
    """Each of ``workers`` parallel workers' share of this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


#: Read by the math libraries when they load (the worker imports them lazily,
#: after this), and by onnxgate's onnxruntime sessions.
THREAD_VARIABLES = (
    "ONNXGATE_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def init_worker(threads: int) -> None:
    """Give the worker its share of the cores (parallel workers each using
    every core slow each other down), unless the user set the variables."""
    if threads:
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, "1" if name == "TF_NUM_INTEROP_THREADS" else str(threads))
    die_with_parent()


def die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the batch process dies (even by
    SIGKILL), so no orphan goes on writing into --out after it."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's OOM killer sends it)" if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with status {code}"


def outcome(future, entry, started: float, timeout: float, framework: str = "") -> dict[str, Any]:
    """The row for a finished pebble future, whatever happened to its worker."""
    from pebble import ProcessExpired

    try:
        return future.result()
    except FutureTimeout:
        row = task.new_row(entry, framework)
        row.update(verdict=task.TIMEOUT, message=f"did not finish within {timeout:g} s; its worker was killed")
    except ProcessExpired as exc:
        row = task.new_row(entry, framework)
        code = exc.exitcode
        if code == task.EXIT_OUT_OF_MEMORY:
            row.update(verdict=task.OUT_OF_MEMORY, message="the worker passed --max-memory and was stopped")
        else:
            row.update(verdict=task.CRASHED, message=describe_exit(code), exit_status=code)
    except Exception as exc:  # e.g. an argument that cannot be sent to the worker
        row = task.new_row(entry, framework)
        row.update(message=f"{type(exc).__name__}: {str(exc)[:300]}")
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


class LocalExecutor:
    """``jobs`` warm workers on this machine."""

    def __init__(self, jobs: int, max_models_per_worker: int = 0):
        self.slots = max(1, jobs)
        self._max_tasks = max_models_per_worker
        self._pools = [make_pool(max_models_per_worker, thread_share(self.slots)) for _ in range(self.slots)]

    def submit(self, slot: int, entry, out: str, gate, settings: dict[str, Any], timeout: float):
        return self._pools[slot].schedule(
            task.convert_entry,
            args=(entry, out, gate),
            kwargs={"latency": settings["latency"], "max_memory": settings["max_memory"]},
            timeout=timeout,
        )

    def result(self, future, entry, started: float, timeout: float, framework: str) -> dict[str, Any]:
        return outcome(future, entry, started, timeout, framework)

    @staticmethod
    def wait(futures, timeout: float) -> None:
        """Until one of ``futures`` is done, or ``timeout`` seconds."""
        concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)

    def close(self, kill: bool = False) -> None:
        for pool in self._pools:
            if kill:
                pool.stop()
            else:
                pool.close()
        for pool in self._pools:
            pool.join(timeout=30)
