"""What a batch shows while it runs: a live rich display on a terminal, one
plain line per finished model otherwise (CI logs), nothing with --quiet."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from onnxgate.pipeline.batch.runner import Progress


def _err(row: dict[str, Any]) -> str:
    err = row.get("max_abs_err")
    return "" if err is None else f" max_abs_err={err:.2g}"


class Plain(Progress):
    """``[ 3/40] passed   sklearn  iris  0.8s``: one line per finished model."""

    def __init__(self, stream: TextIO | None = None):
        # resolved now, not at import: sys.stdout may have been replaced since (pytest, notebooks)
        self.stream, self.total, self.count = stream or sys.stdout, 0, 0

    def start(self, total: int, cached: int) -> None:
        self.total = total
        if cached:
            print(
                f"{cached} of {total} models already done (cache); running the other {total - cached}",
                file=self.stream,
                flush=True,
            )

    def done(self, row: dict[str, Any]) -> None:
        self.count += 1
        width = len(str(self.total))
        extra = " (cached)" if row.get("cached") else ""
        message = f"  {row['message'][:120]}" if row.get("exit_code") and row.get("message") else ""
        print(
            f"[{self.count:>{width}}/{self.total}] {row['verdict']:<13} {row.get('framework') or '?':<10} "
            f"{row['name']}  {row.get('seconds') or 0:.1f}s{_err(row)}{extra}{message}",
            file=self.stream,
            flush=True,
        )


class Live(Progress):
    """done/total with ETA, counts per verdict, and the models running now."""

    def __init__(self):
        from rich.console import Console

        self.console = Console()
        self.counts: Counter = Counter()
        self.active: dict[str, float] = {}
        self.total = self.done_count = 0
        self.started = time.perf_counter()
        self.live = None

    def start(self, total: int, cached: int) -> None:
        from rich.live import Live as RichLive
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.total = total
        self.bar = Bar(
            TextColumn("[bold]onnxgate batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.bar.add_task("models", total=total)
        self.live = RichLive(
            self._render(), console=self.console, refresh_per_second=4, transient=False, get_renderable=self._render
        )
        self.live.start()

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        colours = {"passed": "green", "failed": "red", "unverified": "yellow", "not-run": "dim"}
        counts = Text("  ")
        for verdict, n in sorted(self.counts.items()):
            counts.append(f"{verdict} {n}  ", style=colours.get(verdict, "red"))
        now = time.perf_counter()
        running = Text(
            "  running: " + (", ".join(f"{name} ({now - t:.0f}s)" for name, t in self.active.items()) or "-"),
            style="cyan",
        )
        return Group(self.bar, counts, running)

    def running(self, name: str) -> None:
        self.active[name] = time.perf_counter()

    def done(self, row: dict[str, Any]) -> None:
        self.active.pop(row["name"], None)
        self.counts[row["verdict"]] += 1
        self.bar.advance(self.task)
        if row.get("exit_code") and not row.get("cached"):
            self.console.print(f"[red]{row['verdict']}[/red] {row['name']}: {(row.get('message') or '')[:160]}")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def for_terminal(quiet: bool, stream: TextIO | None = None) -> Progress:
    if quiet:
        return Progress()
    stream = stream or sys.stdout
    return Live() if stream.isatty() else Plain(stream)
