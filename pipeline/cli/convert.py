"""``onnxgate convert`` and ``onnxgate validate``."""

from __future__ import annotations

import sys
from pathlib import Path

from onnxgate.pipeline.cli import args as cli_args
from onnxgate.pipeline.cli import outputs
from onnxgate.pipeline.core.atomic import check_writable
from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.core.text import terminal
from onnxgate.pipeline.deployment import record
from onnxgate.pipeline.report.summary import one_line
from onnxgate.plugins.errors import EXIT_OK, EXIT_VALIDATION_FAILED, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model to ONNX and validate it",
        description="Convert SOURCE (a model file, folder or module:attribute) to ONNX "
        "and validate it against the original in onnxruntime.",
    )
    p.add_argument("source", help="model file, folder, or package.module:attribute")
    p.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: SOURCE name + .onnx)")
    p.add_argument("--opset", type=int, help="target ONNX opset (default: the converter's)")
    cli_args.add_source_options(p)
    p.set_defaults(run=run_convert)

    v = sub.add_parser(
        "validate",
        help="validate an existing ONNX model against its source",
        description="Run the original model and MODEL.onnx on the same inputs and compare. "
        "Without MODEL, SOURCE is validated as converted in memory; for a "
        "ready-made SOURCE.onnx that is the file itself (give its expected "
        "outputs with --golden DIR, or --sample with --expected).",
    )
    v.add_argument("source", help="model file, folder, or package.module:attribute")
    v.add_argument("model", type=Path, nargs="?", help="the ONNX model to validate (default: SOURCE itself)")
    cli_args.add_source_options(v)
    v.set_defaults(run=run_validate)


def default_output(source: str) -> Path:
    path = Path(source)
    if ":" in source and not path.exists():
        return Path(source.split(":")[-1].split(".")[-1] + ".onnx")
    return path.with_suffix(".onnx") if path.suffix.lower() != ".onnx" else path.with_name(path.stem + ".checked.onnx")


def run_convert(args) -> int:
    from onnxgate.pipeline import api

    output = args.output or default_output(args.source)
    if Path(args.source).exists() and output.resolve() == Path(args.source).resolve():
        raise UsageError(f"output {output}: is the source itself; choose another -o")
    check_writable(output)
    if args.report:
        check_writable(args.report)
    outputs.check_outputs(args)
    result = api.convert(
        args.source, opset=args.opset, gate=cli_args.gate_from_args(args, output), **cli_args.run_kwargs(args)
    )
    outputs.diagnose_if_asked(result, args)
    result.save(output, args.report)
    cli_args.accept_if_asked(result, args, output)
    outputs.write_renderings(result.report, args)
    return _finish(result, output)


def run_validate(args) -> int:
    from onnxgate.pipeline import api

    if args.report:
        check_writable(args.report)
    outputs.check_outputs(args)
    model_path = args.model if args.model is not None else Path(args.source)
    result = api.validate(
        args.source, args.model, gate=cli_args.gate_from_args(args, model_path), **cli_args.run_kwargs(args)
    )
    outputs.diagnose_if_asked(result, args)
    outputs.write_renderings(result.report, args, json_path=args.report)
    # record the verdict against this file's bytes, for deploy's gate; without
    # MODEL a non-ONNX SOURCE was converted in memory: no file holds what was validated

    if args.model is not None or _is_validated_file(model_path, result.report):
        record.write_for(result, model_path)
    cli_args.accept_if_asked(result, args, model_path)
    return _finish(result, model_path)


def _is_validated_file(path: Path, report) -> bool:
    validated = report.onnx.sha256
    return path.is_file() and bool(validated) and sha256_path(path) == validated


def _finish(result, output: Path) -> int:
    # failures name the model's outputs: no escapes or line breaks reach the terminal
    print(terminal(one_line(result.report, output)))
    if not result.passed:
        for failure in result.failures:
            print(f"  FAIL {terminal(failure)}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
