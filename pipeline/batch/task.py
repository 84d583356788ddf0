"""One model's work, run inside a worker process: convert, gate, write.

The worker keeps the frameworks it imported for the next model. Everything a
model produces is written atomically (``NAME.onnx``, ``NAME.report.json``,
``NAME.html``, the deploy record); the caller records the result only after
this returns, so a killed worker leaves no result and no partial file.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from onnxgate.plugins.errors import EXIT_OK, OnnxgateError

#: A worker exits with this status when it crossed --max-memory.
EXIT_OUT_OF_MEMORY = 86

#: Row verdicts besides the report's own (passed/failed/unverified).
ERROR, CRASHED, TIMEOUT, OUT_OF_MEMORY, NOT_RUN = "error", "crashed", "timeout", "out-of-memory", "not-run"


def report_dict(result) -> dict[str, Any]:
    """The report as a plain dict, whether ``result.report`` is one or a typed document."""
    report = result.report
    return report.to_dict() if hasattr(report, "to_dict") else report


def entry_gate(base, entry, model_path: Path):
    """The gate for one entry: the batch's gate plus the entry's per-output
    rules, and the model's drift baseline when one sits next to its output.

    The one place a batch builds a GateConfig (swap in the shared builder here).
    """
    from onnxgate.pipeline.gate import config as gate_config
    from onnxgate.pipeline.gate.drift import default_path

    rules = {name: gate_config._rule(values, f"[outputs.{name}]", None) for name, values in entry.outputs.items()}
    gate = replace(base, outputs=gate_config.merge(base.outputs, rules))
    if gate.baseline is None:
        candidate = default_path(model_path)
        if candidate.is_file():
            gate = replace(gate, baseline=candidate)
    return gate


def output_files(name: str) -> dict[str, str]:
    return {"onnx": f"{name}.onnx", "report": f"{name}.report.json", "html": f"{name}.html"}


def new_row(entry, framework: str = "") -> dict[str, Any]:
    return {
        "name": entry.name,
        "framework": entry.framework or framework,
        "verdict": ERROR,
        "exit_code": 3,
        "max_abs_err": None,
        "seconds": 0.0,
        "message": "",
        "tags": list(entry.tags),
        "files": {},
        "cached": False,
    }


def convert_entry(
    entry, out_dir: str, base_gate, latency: bool = True, max_memory: int | None = None
) -> dict[str, Any]:
    """Convert and gate one entry; returns its row. Never raises for the model's sake."""
    started = time.perf_counter()
    out = Path(out_dir)
    row = new_row(entry)
    watchdog = _MemoryWatchdog(max_memory) if max_memory else None
    try:
        from onnxgate.pipeline import api
        from onnxgate.pipeline.report import formats
        from onnxgate.pipeline.report.summary import worst

        files = output_files(entry.name)
        result = api.run(
            entry.source,
            framework=entry.framework,
            sample=entry.sample,
            expected=entry.expected,
            golden=entry.golden,
            options=dict(entry.options),
            opset=entry.opset,
            seed=entry.seed,
            rtol=entry.rtol,
            atol=entry.atol,
            trust_source=entry.trust_source,
            accept_unverified=entry.accept_unverified,
            dynamic_batch=not entry.static_batch,
            gate=entry_gate(base_gate, entry, out / files["onnx"]),
            latency=latency,
        )
        result.save(out / files["onnx"], out / files["report"])
        report = report_dict(result)
        formats.write(report, formats.resolve([("html", out / files["html"])]))
        err = worst(report, "max_abs_err")
        row.update(
            framework=report["converter"]["name"],
            verdict=report["verdict"],
            exit_code=EXIT_OK if result.passed else 1,
            max_abs_err=err if err == err else None,
            message="; ".join(report["failures"])[:300],
            files=files,
        )
    except MemoryError:
        row.update(verdict=OUT_OF_MEMORY, message="MemoryError while converting")
    except OnnxgateError as exc:
        row.update(exit_code=exc.exit_code, message=str(exc)[:300])
    except Exception as exc:  # a converter bug must not take the worker down
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        row.update(message=f"{type(exc).__name__}: {first}")
    finally:
        if watchdog:
            watchdog.stop()
    row["seconds"] = round(time.perf_counter() - started, 3)
    row["worker_pid"] = os.getpid()
    return row


class _MemoryWatchdog:
    """Ends the worker (status EXIT_OUT_OF_MEMORY) once its resident memory
    passes the cap; the pool then replaces it. Polling catches growth within
    a few tens of milliseconds; an allocation of more than the machine has is
    the kernel's business (the model is then ``crashed`` by SIGKILL)."""

    def __init__(self, limit: int, interval: float = 0.02):
        self.limit, self.interval = limit, interval
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._watch, daemon=True, name="onnxgate-memory-watchdog").start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            if self._rss() > self.limit:
                os._exit(EXIT_OUT_OF_MEMORY)

    def stop(self) -> None:
        self._stop.set()
