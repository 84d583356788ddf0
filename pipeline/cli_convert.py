"""``onnxgate convert`` and ``onnxgate validate``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cli_diagnose, cli_gate
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
    p.add_argument("--golden", type=Path, metavar="DIR",
                   help="inputs and expected outputs in the ONNX test-data layout "
                        "(DIR/test_data_set_N/input_K.pb, output_K.pb); each set is one case")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="converter-specific option (repeatable)")
    cli_diagnose.add_report_options(p)  # --junit/--html/--summary/--diagnose/--no-latency
    cli_gate.add_gate_options(p)  # sweep, edge values, per-output rules, runtime, drift


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
                       description="Run the original model and MODEL.onnx on the same inputs and compare. "
                                   "Without MODEL, SOURCE is validated as converted in memory; for a "
                                   "ready-made SOURCE.onnx that is the file itself (give its expected "
                                   "outputs with --golden DIR, or --sample with --expected).")
    v.add_argument("source", help="model file, folder, or package.module:attribute")
    v.add_argument("model", type=Path, nargs="?", help="the ONNX model to validate (default: SOURCE itself)")
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
        golden=args.golden, latency=not args.no_latency,
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
    if Path(args.source).exists() and output.resolve() == Path(args.source).resolve():
        raise UsageError(f"output {output}: is the source itself; choose another -o")
    check_writable(output)
    if args.report:
        check_writable(args.report)
    cli_diagnose.check_outputs(args)
    result = api.convert(args.source, opset=args.opset, gate=cli_gate.gate_from_args(args, output), **_kwargs(args))
    cli_diagnose.diagnose_if_asked(result, args)
    result.save(output, args.report)
    cli_gate.accept_if_asked(result, args, output)
    cli_diagnose.write_renderings(result.report, args)
    return _finish(result, output)


def run_validate(args) -> int:
    from . import api
    from .atomic import check_writable

    if args.report:
        check_writable(args.report)
    cli_diagnose.check_outputs(args)
    model_path = args.model if args.model is not None else Path(args.source)
    result = api.validate(args.source, args.model, gate=cli_gate.gate_from_args(args, model_path), **_kwargs(args))
    result.report["onnx"]["path"] = str(model_path)
    cli_diagnose.diagnose_if_asked(result, args)
    if args.report:
        from . import report

        report.write(result.report, args.report)
    cli_diagnose.write_renderings(result.report, args)
    # record the verdict against this file's bytes, for deploy's gate
    from . import record

    record.write_for(result, model_path)
    cli_gate.accept_if_asked(result, args, model_path)
    return _finish(result, model_path)


def _finish(result, output: Path) -> int:
    from .summary import one_line

    print(one_line(result.report, output))
    if not result.passed:
        for failure in result.report["failures"]:
            print(f"  FAIL {failure}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
