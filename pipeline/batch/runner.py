"""Batch conversion: many models from a manifest, one report each.

The manifest is validated in full first (``manifest.py``). Each entry then
gets a content key (``cache.py``); entries with a finished result under that
key are skipped. The rest go to warm worker processes (``pool.py``, or Dask
workers: ``dask_executor.py``), one model per worker at a time, models of
one framework preferring the worker that already imported it. A model that
crashes, hangs or passes the memory cap gets its own verdict; the others go
on. Rows come back as models finish; the batch reports (summary.json, JUnit,
Markdown, HTML dashboard) are written at the end, also when interrupted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.pipeline.batch import cache, schedule, task
from onnxgate.pipeline.batch.manifest import Entry, inside
from onnxgate.pipeline.batch.outputs import exit_code  # noqa: F401 - part of this module's API
from onnxgate.pipeline.gate import config as gate_config
from onnxgate.pipeline.gate.config import GateConfig
from onnxgate.plugins.errors import EXIT_OK, UsageError

#: Per-model timeout when neither --timeout nor the entry sets one: generous,
#: a big TensorFlow model on a busy machine takes minutes.
DEFAULT_TIMEOUT = 1800.0


@dataclass
class Settings:
    out: Path
    jobs: int = 1
    timeout: float = DEFAULT_TIMEOUT
    max_memory: int | None = None
    max_models_per_worker: int = 0
    max_failures: int | None = None
    rerun_failed: bool = False
    force: bool = False
    executor: str = "local"
    scheduler: str | None = None
    dask_workers: int = 0
    #: Dask: send each model's files to the worker and its outputs back as bytes
    #: (workers without the client's file system).
    ship: bool = False
    latency: bool = True
    #: The batch-wide gate; by default built as the CLI and the API build it (CI mode from ``CI``).
    gate: GateConfig = field(default_factory=gate_config.resolve)
    #: Written at the end: summary.json, summary.md, junit.xml, index.html.
    reports: bool = True


@dataclass
class Job:
    entry: Entry
    framework: str
    key: str
    gate: GateConfig
    timeout: float
    #: Expected seconds, for scheduling (an earlier run's time, else a default).
    estimate: float = schedule.DEFAULT_MODEL_SECONDS


class Progress:
    """What the runner tells a display; the default shows nothing."""

    def start(self, total: int, cached: int) -> None: ...
    def running(self, name: str) -> None: ...
    def done(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def load(manifest: str | Path) -> list[Entry]:
    from onnxgate.pipeline.batch import manifest as manifest_mod
    from onnxgate.plugins.manager import Registry

    return manifest_mod.load(Path(manifest), [s.name for s in Registry().converters()])


def iter_rows(
    entries: Sequence[Entry], settings: Settings, progress: Progress | None = None
) -> Iterator[dict[str, Any]]:
    """Yield one row per entry, cached ones first, the others as they finish."""
    progress = progress or Progress()
    out = Path(settings.out)
    _prepare_out(out, entries)
    from onnxgate.plugins.manager import Registry

    registry = Registry()
    jobs = [_job(e, settings, registry, out) for e in entries]
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        row = None if settings.force else cache.lookup(out, job.entry.name, job.key)
        if row is not None and not (settings.rerun_failed and row["exit_code"] != EXIT_OK):
            rows[job.entry.name] = {**row, "cached": True, "tags": list(job.entry.tags)}
        else:
            todo.append(job)
    progress.start(len(jobs), len(rows))
    started = time.perf_counter()
    try:
        for row in rows.values():
            progress.done(row)
            yield row
        for row in _execute(todo, settings, progress):
            rows[row["name"]] = row
            progress.done(row)
            yield row
    finally:
        progress.close()
        for job in jobs:  # stopped early (--max-failures, interrupted): say what did not run
            if job.entry.name not in rows:
                rows[job.entry.name] = _not_run(job)
        if settings.reports:
            from onnxgate.pipeline.batch import outputs

            ordered = [rows[j.entry.name] for j in jobs]
            outputs.write_all(out, ordered, settings, time.perf_counter() - started)


def _prepare_out(out: Path, entries: Sequence[Entry]) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create: {exc.strerror}") from None
    from onnxgate.pipeline.core import atomic

    atomic.check_writable(out / "summary.json")
    outside = [e.name for e in entries if not inside(out, e.name)]
    if outside:  # the manifest check makes this impossible; kept as the last guard
        raise UsageError(f"names would write outside --out: {outside}")
    cache.sweep_partial(out)


def _job(entry: Entry, settings: Settings, registry, out: Path) -> Job:
    spec = _spec(entry, registry)
    gate = task.entry_gate(settings.gate, entry, Path(settings.out) / f"{entry.name}.onnx")
    summary = gate.summary()
    if gate.baseline is not None:
        summary["baseline_sha256"] = hashlib.sha256(Path(gate.baseline).read_bytes()).hexdigest()
    framework = spec.name if spec is not None else (entry.framework or "python")
    estimate = cache.previous_seconds(out, entry.name) or schedule.model_seconds(framework)
    return Job(entry, framework, cache.key(entry, summary, spec), gate, entry.timeout or settings.timeout, estimate)


def _spec(entry: Entry, registry):
    """The entry's converter when it can be told without importing anything."""
    from onnxgate.pipeline.conversion import stage
    from onnxgate.pipeline.conversion.sources import Source

    if entry.framework:
        return registry.converter(entry.framework)
    path = Path(entry.source)
    if not path.exists():
        return None  # module:attr: known only once imported, in the worker
    try:
        return stage.pick_converter(Source(path=path), registry, None)
    except UsageError:
        return None  # the worker reports it as this model's error


def _not_run(job: Job) -> dict[str, Any]:
    row = task.new_row(job.entry, job.framework)
    row.update(verdict=task.NOT_RUN, exit_code=3, message="not run: the batch stopped before it")
    return row


def _make_executor(settings: Settings):
    if settings.executor == "dask":
        from onnxgate.pipeline.batch.dask_executor import DaskExecutor

        return DaskExecutor(
            settings.scheduler, settings.dask_workers, settings.max_models_per_worker, ship=settings.ship
        )
    if settings.executor != "local":
        raise UsageError(f"--executor {settings.executor!r}: expected local or dask")
    if settings.ship:
        raise UsageError("--ship needs --executor dask")
    from onnxgate.pipeline.batch.pool import LocalExecutor

    return LocalExecutor(settings.jobs, settings.max_models_per_worker)


def _execute(todo: list[Job], settings: Settings, progress: Progress) -> Iterator[dict[str, Any]]:
    if not todo:
        return
    executor = _make_executor(settings)
    out = str(Path(settings.out).resolve())
    worker_settings = {"latency": settings.latency, "max_memory": settings.max_memory}
    pending = list(todo)
    running: dict[int, tuple] = {}  # slot -> (future, job, started)
    workers = [schedule.Worker() for _ in range(executor.slots)]
    failures = 0
    clean = False
    try:
        while pending or running:
            stop = settings.max_failures is not None and failures >= settings.max_failures
            for slot in range(executor.slots):
                if slot in running or not pending or stop:
                    continue
                busy = [job.framework for _, job, _ in running.values()]
                job = schedule.pick(pending, workers[slot].warm, busy)
                if job is None:
                    continue
                pending.remove(job)
                workers[slot].started(job.framework)
                future = executor.submit(slot, job.entry, out, job.gate, worker_settings, job.timeout)
                running[slot] = (future, job, time.perf_counter())
                progress.running(job.entry.name)
            if stop and not running:
                break
            executor.wait([future for future, _, _ in running.values()], timeout=0.5)
            done = [slot for slot, (future, _, _) in running.items() if future.done()]
            for slot in done:
                future, job, started = running.pop(slot)
                row = executor.result(future, job.entry, started, job.timeout, job.framework)
                row["framework"] = row.get("framework") or job.framework
                replaced = row.get("verdict") in (task.CRASHED, task.TIMEOUT, task.OUT_OF_MEMORY)
                workers[slot].finished(replaced, settings.max_models_per_worker)
                cache.store(Path(settings.out), row, job.key)
                failures += row["exit_code"] != EXIT_OK
                yield row
        clean = True
    finally:
        executor.close(kill=not clean)


def run(
    manifest: str | Path,
    out: str | Path = "onnxgate-out",
    *,
    stream: bool = False,
    progress: Progress | None = None,
    **options: Any,
):
    """Run a batch from Python: the rows (a list), or with ``stream=True`` an
    iterator yielding each row as its model finishes.

    ``options`` are ``Settings`` fields: jobs, timeout, max_memory (bytes),
    max_models_per_worker, max_failures, rerun_failed, force, executor
    ("local" or "dask"), scheduler, dask_workers, ship, latency, gate, reports.
    """
    entries = load(manifest)
    settings = Settings(out=Path(out), **options)
    rows = iter_rows(entries, settings, progress)
    return rows if stream else list(rows)
