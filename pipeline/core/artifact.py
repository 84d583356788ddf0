"""What passes from stage 1 to stage 2: the ONNX model and its input cases.

Plain data (numpy arrays, dicts): it crosses process and environment
boundaries (see pipeline.envs.isolated) and holds no framework object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxgate.plugins.spec import Tolerance

DEFAULT_SEED = 0


@dataclass
class Case:
    """One set of inputs and, once the source model ran, its outputs."""

    name: str
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray] | None = None
    meta: dict[str, object] = field(default_factory=dict)


@dataclass
class Artifact:
    """Everything validation needs; no framework object inside."""

    model: Any  # onnx.ModelProto
    cases: list[Case]
    tolerance: Tolerance
    source: dict[str, Any]
    converter: dict[str, Any]
    dynamic_batch: bool = True
    seed: int = DEFAULT_SEED
    tree_ensemble: bool = False
    #: Stage 1's findings for the gate: dynamic/frozen axes (see pipeline.sweep).
    gate_info: dict[str, Any] = field(default_factory=dict)
    #: False when no case has expected outputs (the original cannot run here
    #: and the user gave none): the gate then cannot claim a match.
    verified: bool = True
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    #: The original model's latency per batch size (see pipeline.latency).
    latency: dict[int, dict[str, Any]] = field(default_factory=dict)
