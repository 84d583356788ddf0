"""``python -m onnxgate.pipeline.cli``: the same as the ``onnxgate`` command."""

from onnxgate.pipeline.cli.app import entry

entry()
