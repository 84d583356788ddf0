"""The gate's verdict: the one function that decides ``passed``, ``verdict``
and ``failures`` from a run's checks, cases and drift section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Checks whose failure is spelled out below rather than as "check NAME: ...".
_OWN_WORDING = ("comparison", "drift")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    #: "passed", "failed", or "unverified" (no expected outputs, accepted).
    verdict: str
    failures: list[str]


def decide(
    checks: Sequence[Any], cases: Sequence[Any], *, verified: bool = True, drift: dict[str, Any] | None = None
) -> Verdict:
    """``checks``/``cases``: ``report.model.Check``/``CaseResult``. A run passes
    when every check, case and compared output passed and no output drifted."""
    failures = [f"check {c.name}: {c.message}" for c in checks if not c.passed and c.name not in _OWN_WORDING]
    failures += [f"{c.name}: {c.error}" for c in cases if c.error]
    failures += [f"{c.name}/{o.name}: {o.reason}" for c in cases for o in c.outputs if not o.passed]
    failures += [
        f"check comparison: {c.message} (pass --accept-unverified to accept)"
        for c in checks
        if c.name == "comparison" and not c.passed
    ]
    if drift is not None:
        failures += [f"drift {r['name']}: {r['reason']}" for r in drift["outputs"] if not r["passed"]]
    passed = not failures
    return Verdict(
        passed=passed, verdict="failed" if not passed else "passed" if verified else "unverified", failures=failures
    )
