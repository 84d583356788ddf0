"""``onnxgate convert`` and ``onnxgate validate``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EXIT_OK, EXIT_VALIDATION_FAILED, UsageError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", help="converter to use (default: detected from the source)")
    p.add_argument("--sample", type=Path, help="validation inputs: .npz keyed by input name, .npy, or .csv")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the converter's)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the converter's)")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--trust-source", action="store_true",
                   help="allow loading pickled model files (this can run arbitrary code)")
    p.add_argument("--static-batch", action="store_true", help="do not make the batch dimension dynamic")
    p.add_argument("--seed", type=int, default=0, help="seed for synthesised inputs (default 0)")
    p.add_argument("--expected", type=Path,
                   help="expected outputs of the original model on --sample (.npz keyed by ONNX output name)")
    p.add_argument("--accept-unverified", action="store_true",
                   help="pass the gate although no outputs could be compared (verdict: unverified)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="converter-specific option (repeatable)")


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to ONNX and validate it",
                       description="Convert SOURCE (a model file, folder or module:attribute) to ONNX "
                                   "and validate it against the original in onnxruntime.")
    p.add_argument("source", help="model file, folder, or package.module:attribute")
    p.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: SOURCE name + .onnx)")
    p.add_argument("--opset", type=int, help="target ONNX opset (default: the converter's)")
    _common(p)
    p.set_defaults(run=run_convert)

    v = sub.add_parser("validate", help="validate an existing ONNX model against its source",
                       description="Run the original model and MODEL.onnx on the same inputs and compare.")
    v.add_argument("source", help="model file, folder, or package.module:attribute")
    v.add_argument("model", type=Path, help="the ONNX model to validate")
    _common(v)
    v.set_defaults(run=run_validate)


def _options(pairs):
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _kwargs(args) -> dict:
    return dict(
        framework=args.framework, sample=args.sample, rtol=args.rtol, atol=args.atol,
        trust_source=args.trust_source, dynamic_batch=not args.static_batch, seed=args.seed,
        options=_options(args.option), expected=args.expected, accept_unverified=args.accept_unverified,
    )


def default_output(source: str) -> Path:
    path = Path(source)
    if ":" in source and not path.exists():
        return Path(source.split(":")[-1].split(".")[-1] + ".onnx")
    return path.with_suffix(".onnx") if path.suffix.lower() != ".onnx" else path.with_name(path.stem + ".checked.onnx")


def run_convert(args) -> int:
    from . import api
    from .atomic import check_writable

    output = args.output or default_output(args.source)
    check_writable(output)
    if args.report:
        check_writable(args.report)
    result = api.convert(args.source, opset=args.opset, **_kwargs(args))
    result.save(output, args.report)
    return _finish(result, output)


def run_validate(args) -> int:
    from . import api
    from .atomic import check_writable

    if args.report:
        check_writable(args.report)
    result = api.validate(args.source, args.model, **_kwargs(args))
    result.report["onnx"]["path"] = str(args.model)
    if args.report:
        from . import report

        report.write(result.report, args.report)
    return _finish(result, args.model)


def _finish(result, output: Path) -> int:
    from .summary import one_line

    print(one_line(result.report, output))
    if not result.passed:
        for failure in result.report["failures"]:
            print(f"  FAIL {failure}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
