"""``onnxgate diagnose``: validate, then locate where a mismatch begins."""

from __future__ import annotations

import sys
from pathlib import Path

from onnxgate.pipeline.cli import args as cli_args
from onnxgate.pipeline.cli import outputs
from onnxgate.pipeline.core.atomic import check_writable
from onnxgate.pipeline.report.summary import one_line
from onnxgate.plugins.errors import EXIT_OK, EXIT_VALIDATION_FAILED, UsageError


def add_parser(sub) -> None:
    d = sub.add_parser(
        "diagnose",
        help="find where an ONNX model starts to differ from its source",
        description="Validate MODEL.onnx against SOURCE, then locate where a mismatch begins: the first "
        "layer/step of the original whose ONNX tensor differs (PyTorch modules, scikit-learn "
        "pipeline steps), and the first node where onnxruntime differs from onnx.reference. "
        "Exit 1 when validation fails, 0 otherwise.",
    )
    d.add_argument("source", help="model file, folder, or package.module:attribute")
    d.add_argument("model", type=Path, help="the ONNX model to diagnose")
    cli_args.add_source_options(d)
    d.set_defaults(run=run)


def run(args) -> int:
    from onnxgate.pipeline import api

    if not args.model.is_file():  # before api.validate hashes it
        raise UsageError(f"{args.model}: no such ONNX file")
    if args.report:
        check_writable(args.report)
    outputs.check_outputs(args)
    result = api.validate(
        args.source, args.model, gate=cli_args.gate_from_args(args, args.model), **cli_args.run_kwargs(args)
    )
    print(one_line(result.report, args.model))
    outputs.diagnose_if_asked(result, args, always=True)
    outputs.write_renderings(result.report, args, json_path=args.report)
    if not result.passed:
        for failure in result.failures:
            print(f"  FAIL {failure}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
