"""The ``onnxgate`` command line.

Each subcommand lives in a module of this package exposing ``add_parser(sub)``
and ``run(args) -> int``. Those modules import nothing heavy at module level,
so ``onnxgate --help`` stays fast however many frameworks are installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from onnxgate.pipeline.cli.parser import CommandParser
from onnxgate.plugins.errors import EXIT_USAGE, OnnxgateError

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "convert",
    "inspect",
    "plugins",
    "plugin",
    "batch",
    "deploy",
    "env",
    "diagnose",
    "baseline",
)

EPILOG = """\
exit codes:
  0  converted and validated (or: command succeeded)
  1  validation failed (the model and report are written, the report says
     why), or a deploy's smoke test failed
  2  usage error or bad input (unreadable or unrecognised source, untrusted
     pickle, bad sample file, missing environment, refused deploy)
  3  conversion failed (converter error, or a model onnxruntime cannot
     load), or the deploy target (server, Azure) failed

environment:
  CI                        true/1/yes: CI mode (edge-value cases on; --no-edge-values)
  ONNXGATE_DISABLE_PLUGINS  comma-separated plugin names not to load
  ONNXGATE_HOME             where environments live (envs/NAME; default
                            ${XDG_DATA_HOME:-~/.local/share}/onnxgate)
  ONNXGATE_SERVING_HOME     serving venvs (default $ONNXGATE_HOME/serving)
  ONNXGATE_REGISTRY         the local model registry folder
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxgate",
        description="Convert models from any framework to ONNX and prove onnxruntime reproduces them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for errors, and third-party log lines and warnings"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.add_parser(sub)
    return parser


#: Commands that import model frameworks (and their native log noise).
QUIET_COMMANDS = ("convert", "validate", "diagnose")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or bool(os.environ.get("ONNXGATE_DEBUG"))
    previous = _sigterm_as_interrupt()
    from onnxgate.pipeline.cli.quiet import quiet_third_party

    try:
        # only the commands that load frameworks: others' child processes keep their output
        with quiet_third_party(debug or args.command not in QUIET_COMMANDS):
            return int(args.run(args) or 0)
    except OnnxgateError as exc:
        if debug:
            raise
        from onnxgate.pipeline.core.text import terminal

        # messages quote names from models and paths: no escapes reach the terminal
        print(f"onnxgate: error: {terminal(exc, keep_newlines=True)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxgate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader of our output left (`| head`): entry() ends quietly
    except Exception as exc:  # a bug or a plugin's failure: still one line, unless --debug
        if debug:
            raise
        from onnxgate.plugins.manager import PluginError

        code = EXIT_USAGE if isinstance(exc, PluginError) else 3
        from onnxgate.pipeline.core.text import terminal

        print(
            f"onnxgate: error: {type(exc).__name__}: {terminal(exc)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _sigterm_as_interrupt():
    """SIGTERM (CI timeouts, ``kill``) runs the same clean-up as Ctrl-C: servers
    stopped, temporary files removed. The previous handler, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `onnxgate plugins | head`: the reader left, as with any Unix tool
        # Python would report the failed flush at exit: point stdout at /dev/null first
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
    sys.exit(code)


if __name__ == "__main__":
    entry()
