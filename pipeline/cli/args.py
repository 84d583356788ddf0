"""Argument groups shared by convert, validate and diagnose: the source and
its inputs, converter options, and the gate's flags.

CI mode (``--ci``, or the ``CI`` environment variable set to true/1/yes as
GitHub Actions, GitLab CI and most CI systems do) turns edge values on;
``--no-edge-values`` turns them off again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnxgate.pipeline.cli import outputs
from onnxgate.pipeline.cli.parser import defer
from onnxgate.pipeline.gate import config as gate_config
from onnxgate.pipeline.gate import drift
from onnxgate.pipeline.gate.compare import DEFAULT_NOISE_MULTIPLE
from onnxgate.plugins.errors import UsageError


def add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", help="converter to use (default: detected from the source)")
    p.add_argument(
        "--sample",
        type=Path,
        help="validation inputs: .npz keyed by input name, .npy, .csv (a header names the columns) or .parquet",
    )
    p.add_argument(
        "--max-sample-bytes",
        type=int,
        metavar="N",
        help="refuse a --sample file (or .npz content) larger than N bytes (default 268435456, 256 MiB)",
    )
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the converter's)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the converter's)")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument(
        "--trust-source", action="store_true", help="allow loading pickled model files (this can run arbitrary code)"
    )
    p.add_argument("--static-batch", action="store_true", help="do not make the batch dimension dynamic")
    p.add_argument("--seed", type=int, default=0, help="seed for synthesised inputs (default 0)")
    p.add_argument(
        "--expected",
        type=Path,
        help="expected outputs of the original model on --sample (.npz keyed by ONNX output name)",
    )
    p.add_argument(
        "--accept-unverified",
        action="store_true",
        help="pass the gate although no outputs could be compared (verdict: unverified)",
    )
    p.add_argument(
        "--golden",
        type=Path,
        metavar="DIR",
        help="inputs and expected outputs in the ONNX test-data layout "
        "(DIR/test_data_set_N/input_K.pb, output_K.pb); each set is one case",
    )
    p.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="TEXT",
        help="build the sample from this text with the model's tokenizer (Hugging Face folders; repeatable)",
    )
    p.add_argument(
        "--input-map",
        action="append",
        default=[],
        metavar="SAMPLE_NAME=MODEL_INPUT",
        help="feed the sample's array SAMPLE_NAME to the model input MODEL_INPUT (repeatable)",
    )
    p.add_argument(
        "--trust-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="trust this type when loading a .skops file (dotted name; repeatable)",
    )
    p.add_argument(
        "--reference-timeout",
        type=float,
        metavar="SECONDS",
        help="ready-made ONNX without --golden: time onnx.reference may take to compute the expected "
        "outputs (default 120); beyond it the verdict is unverified",
    )
    p.add_argument(
        "--upgrade-opset",
        type=int,
        metavar="N",
        help="ready-made ONNX: move the model to opset N with onnx.version_converter, validate the "
        "upgraded model against the original's outputs (convert writes it)",
    )
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="converter-specific option (repeatable)"
    )
    outputs.add_report_options(p)  # --junit/--html/--summary/--diagnose/--no-latency
    add_gate_options(p)  # sweep, edge values, per-output rules, runtime, drift


def converter_options(pairs):
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def apply_sample_limit(args) -> None:
    """``--max-sample-bytes``: checked here, before any work, and passed on
    through the environment so isolated framework environments apply it too."""
    import os

    from onnxgate.pipeline.conversion import inputs

    limit = getattr(args, "max_sample_bytes", None)
    if limit is not None:
        if limit <= 0:
            raise UsageError(f"--max-sample-bytes {limit}: must be a positive number of bytes")
        os.environ[inputs.MAX_SAMPLE_BYTES_ENV] = str(limit)
    if args.sample is not None and Path(args.sample).is_file():
        inputs.check_sample_size(Path(args.sample), limit)


def run_kwargs(args) -> dict:
    apply_sample_limit(args)
    from onnxgate.pipeline.conversion.matching import parse_input_map

    options = converter_options(args.option)
    if args.trust_type:
        options["trust_types"] = ",".join(args.trust_type)
    return dict(
        framework=args.framework,
        sample=args.sample,
        rtol=args.rtol,
        atol=args.atol,
        trust_source=args.trust_source,
        dynamic_batch=not args.static_batch,
        seed=args.seed,
        options=options,
        input_map=parse_input_map(args.input_map),
        expected=args.expected,
        accept_unverified=args.accept_unverified,
        golden=args.golden,
        latency=not args.no_latency,
        reference_timeout=args.reference_timeout,
        upgrade_opset=args.upgrade_opset,
        text=args.text or None,
    )


def add_gate_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gate")
    g.add_argument(
        "--no-sweep",
        action="store_true",
        help="do not sweep the dynamic axes (sizes 1, 2, 5, 16 on every dynamic axis)",
    )
    edge = g.add_mutually_exclusive_group()
    edge.add_argument(
        "--edge-values",
        action="store_true",
        default=None,
        help="also compare on zeros, large magnitudes, NaN and inf (default: on in CI mode)",
    )
    edge.add_argument("--no-edge-values", dest="edge_values", action="store_false")
    g.add_argument("--ci", action="store_true", help="CI mode (also when the CI environment variable is true)")
    defer(p, lambda parser: add_tolerance_option(g))  # its keys come from the comparison rules' registry
    g.add_argument(
        "--gate-config",
        type=Path,
        metavar="FILE",
        help="per-output rules from a .toml/.json file ([outputs.NAME] tables); --tolerance wins",
    )
    g.add_argument(
        "--max-flip-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="tree ensembles: acceptable share of rows flipping for reasons other than float32 "
        "threshold rounding (default 0)",
    )
    g.add_argument(
        "--target-runtime",
        metavar="VERSION",
        help="onnxruntime release the model must load in, e.g. 1.17 (default: the installed one)",
    )
    g.add_argument(
        "--no-optimizer-check", action="store_true", help="do not re-run with onnxruntime graph optimisations off"
    )
    g.add_argument(
        "--float64-reference",
        choices=("on", "off"),
        default="on",
        help="run the original once more in float64 to measure its float32 noise floor (PyTorch, Keras Sequential/functional, scikit-learn; "
        "default on; off saves that run on very large models: the scale-aware default rule then judges)",
    )
    g.add_argument(
        "--noise-multiple",
        type=float,
        default=DEFAULT_NOISE_MULTIPLE,
        metavar="K",
        help=f"accept ONNX errors up to K times the original's float32 noise floor (default {DEFAULT_NOISE_MULTIPLE:g}; "
        "per output: --tolerance OUT:noise_multiple=K; 0 = the scale-aware rule only)",
    )
    g.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="compare errors with this baseline (default: MODEL.onnx.baseline.json when it exists)",
    )
    g.add_argument("--no-baseline", action="store_true", help="ignore the baseline next to the model")
    g.add_argument(
        "--accept-baseline",
        action="store_true",
        help="write this run as the model's baseline (MODEL.onnx.baseline.json)",
    )
    g.add_argument(
        "--drift-factor",
        type=float,
        default=10.0,
        metavar="X",
        help="fail when an output's max error grows beyond X times the baseline (default 10)",
    )
    g.add_argument(
        "--drift-floor",
        type=float,
        default=1e-6,
        metavar="ERR",
        help="errors below this never count as drift (default 1e-6)",
    )


def add_tolerance_option(group) -> None:
    from onnxgate.pipeline.gate.config import rule_keys
    from onnxgate.plugins.manager import Registry

    rules = Registry().compare_rules()
    keys = ", ".join(rule_keys(rules))
    group.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="OUTPUT:KEY=VALUE[,KEY=VALUE]",
        help="per-output rule, e.g. probabilities:rtol=1e-3,atol=1e-4 or label:min_agreement=0.99 "
        f"(keys: {keys}; rule= one of {', '.join(r.name for r in rules)}); repeatable",
    )


def gate_from_args(args, model_path: Path | None):
    """The run's GateConfig: the flags, the CI environment and the model's baseline."""
    return gate_config.resolve(
        model_path=model_path,
        ci=args.ci,
        edge_values=args.edge_values,
        gate_config=args.gate_config,
        tolerances=args.tolerance,
        baseline=args.baseline,
        use_baseline=not args.no_baseline,
        sweep=not args.no_sweep,
        optimizer_check=not args.no_optimizer_check,
        max_flip_rate=args.max_flip_rate,
        target_runtime=args.target_runtime,
        drift_factor=args.drift_factor,
        drift_floor=args.drift_floor,
        float64_reference=args.float64_reference == "on",
        noise_multiple=args.noise_multiple,
    )


def accept_if_asked(result, args, model_path: Path) -> None:
    if not args.accept_baseline:
        return
    path = drift.default_path(Path(model_path))
    if not result.passed:  # the exit code (1) already says why; a failed run is no baseline
        print(f"baseline not written ({path}): the run failed", file=sys.stderr)
        return
    try:
        drift.accept(result.report, path)
    except UsageError as exc:  # e.g. an unverified run compares no outputs: the conversion still stands
        print(f"baseline not written ({path}): {exc}", file=sys.stderr)
        return
    print(f"baseline written: {path}")
