"""The ``onnxgate`` command line: ``app`` builds the parser, one module per command."""

from onnxgate.pipeline.cli.app import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
