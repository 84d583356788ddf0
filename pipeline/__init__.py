"""onnxgate's engine: stages, runner, CLI, reports, deploy targets.

``convert`` and ``validate`` are imported lazily so that importing the CLI
stays cheap.
"""
from typing import Any

__all__ = ["convert", "validate", "Result"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
