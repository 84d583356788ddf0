"""Which model a free worker takes next.

A worker keeps every framework it imported, and a first import costs seconds
(TensorFlow with tf2onnx about 5 s on a 2-core machine), while most models
then convert in well under a second. So the scheduler works per framework
and longest-first: a worker stays on frameworks it has imported, a fresh one
takes the framework with the most work left that nobody is on, and a worker
joins a framework another worker is busy with only when the models left
there would take the others longer than the import costs. Starting the big
groups first leaves the short ones to fill the gaps at the end.

Model times are estimates: the seconds the same model took in an earlier run
into the same ``--out`` (a converter-upgrade rerun knows them all), else its
framework's typical time (``MODEL_SECONDS``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Rough seconds of a framework's first model in a worker beyond the next
#: ones (its imports and the converter's), and of each further model, measured
#: with `python bench/batch.py` on the project's 2-core machine. Only their
#: order and rough size matter: a torch export is ten times a scikit-learn
#: conversion, whatever the machine.
IMPORT_SECONDS = {
    "tensorflow": 3.0,
    "torch": 2.5,
    "transformers": 3.0,
    "sklearn": 2.0,
    "xgboost": 1.0,
    "lightgbm": 1.0,
    "catboost": 0.7,
}
DEFAULT_IMPORT_SECONDS = 1.5
MODEL_SECONDS = {
    "tensorflow": 0.15,
    "torch": 0.6,
    "transformers": 2.0,
    "sklearn": 0.05,
    "xgboost": 0.06,
    "lightgbm": 0.06,
    "catboost": 0.06,
}
#: A model's estimated seconds when neither an earlier run nor the table says.
DEFAULT_MODEL_SECONDS = 0.5


def model_seconds(framework: str) -> float:
    return MODEL_SECONDS.get(framework, DEFAULT_MODEL_SECONDS)


def import_seconds(framework: str) -> float:
    return IMPORT_SECONDS.get(framework, DEFAULT_IMPORT_SECONDS)


@dataclass
class Worker:
    """What the scheduler knows of one worker slot."""

    #: Frameworks imported in its current process.
    warm: set[str] = field(default_factory=set)
    #: Models its current process has run (it is replaced after --max-models-per-worker).
    models: int = 0

    def started(self, framework: str) -> None:
        self.warm.add(framework)

    def finished(self, replaced: bool, max_models: int) -> None:
        """After a model: ``replaced`` when its process died (crash, timeout, memory cap)."""
        self.models += 1
        if replaced or (max_models and self.models >= max_models):
            self.warm.clear()
            self.models = 0


def pick(pending: Sequence[Any], warm: Collection[str], busy: Sequence[str | None]) -> Any | None:
    """The next job for a free worker, or None when waiting is better.

    ``pending``: jobs with ``framework`` and ``estimate`` (seconds);
    ``warm``: the frameworks this worker has imported; ``busy``: the
    framework each other running worker is on.
    """
    groups: dict[str, list[Any]] = {}
    for job in pending:
        groups.setdefault(job.framework, []).append(job)
    if not groups:
        return None
    left = {fw: sum(j.estimate for j in jobs) for fw, jobs in groups.items()}

    def longest(fw: str) -> Any:
        return max(groups[fw], key=lambda j: j.estimate)

    own = [fw for fw in groups if fw in warm]
    if own:  # imported here already: the one with most work per worker on it
        return longest(max(own, key=lambda fw: left[fw] / (1 + busy.count(fw))))
    free = [fw for fw in groups if fw not in busy]
    if free:  # longest group first
        return longest(max(free, key=lambda fw: import_seconds(fw) + left[fw]))
    # every framework left is on another worker: join one only when its
    # remaining models would keep the others busier than importing it here
    gain = {fw: left[fw] / busy.count(fw) - import_seconds(fw) for fw in groups}
    best = max(gain, key=lambda fw: gain[fw])
    return longest(best) if gain[best] > 0 else None
