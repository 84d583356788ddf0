"""The parser class of every subcommand.

Arguments that come from plugins (deploy targets' flags, comparison rules'
keys in ``--tolerance``'s help) are added by ``defer``red callables just
before that one command parses (or prints its help), so ``onnxgate --help``
and the other commands never load plugins.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from onnxgate.plugins.errors import OnnxgateError

AddArguments = Callable[[argparse.ArgumentParser], None]


class CommandParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._deferred: list[AddArguments] = []

    def defer(self, add: AddArguments) -> None:
        self._deferred.append(add)

    def parse_known_args(self, args=None, namespace=None):
        while self._deferred:
            add = self._deferred.pop(0)
            try:
                add(self)
            except (OnnxgateError, argparse.ArgumentError) as exc:  # e.g. a plugin flag clashing with ours
                self.error(str(exc))
            except Exception as exc:  # a broken plugin: one line, exit 2
                self.error(f"{type(exc).__name__}: {exc}")
        return super().parse_known_args(args, namespace)


def defer(parser: argparse.ArgumentParser, add: AddArguments) -> None:
    """Add plugin-dependent arguments when ``parser``'s command runs (at once
    for a plain ArgumentParser)."""
    if isinstance(parser, CommandParser):
        parser.defer(add)
    else:
        add(parser)
