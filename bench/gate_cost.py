"""Cost of the full validation gate against a plain one-shape comparison.

    python bench/gate_cost.py [--repeat N] [--only NAME ...]

For each fixture (the scikit-learn fixtures of ``fixtures/sklearn_fixtures.py``
plus a small PyTorch MLP built here), in one process and alternating so a
noisy neighbour hits every variant alike:

- plain:   convert, one onnxruntime session, one run on the sample, compare
           elementwise: what a converter's own test does;
- default: ``onnxgate.convert`` as shipped (shape sweep over every dynamic
           axis, optimiser on/off, runtime compatibility, task-aware compare);
- full:    default plus edge values (``--edge-values`` / CI mode).

Latency measurement is off in every variant (it is timed separately by
design). Prints medians, the number of cases and the full/plain ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))


def fixtures():
    from sklearn_fixtures import models

    out = [(name, model, X.astype(np.float32)) for name, model, X in models()]
    try:
        import torch
    except ImportError:
        return out
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    out.append(("torch-mlp", mlp, np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)))
    return out


def plain(spec, model, X):
    """Convert, run once, compare once."""
    import onnxruntime as ort

    from onnxgate.pipeline.gate.compare import compare_output
    from onnxgate.plugins.spec import ConvertOptions

    name = spec.inputs(model)[0].name
    onx = spec.convert(model, {name: X}, ConvertOptions(opset=spec.default_opset)).model
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    actual = session.run(names, {session.get_inputs()[0].name: X})
    expected = spec.run(model, {name: X})
    expected = [expected[n] for n in names] if isinstance(expected, dict) else list(expected)
    results = [compare_output(n, a, e, spec.tolerance) for n, a, e in zip(names, actual, expected)]
    return all(r["passed"] for r in results), 1


def gated(model, sample, **gate):
    from onnxgate.pipeline import api
    from onnxgate.pipeline.gate.config import GateConfig

    result = api.convert(model, sample=sample, latency=False, gate=GateConfig(**gate))
    return result.passed, len(result.report.cases)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # sklearn checking inf inputs
    from onnxgate.pipeline.conversion import stage as stage_convert
    from onnxgate.pipeline.conversion.sources import resolve
    from onnxgate.plugins.manager import Registry

    registry = Registry()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, X in fixtures():
            if args.only and name not in args.only:
                continue
            spec = stage_convert.pick_converter(resolve(model), registry, None)
            sample = Path(tmp) / f"{name}.npz"
            np.savez(sample, **{spec.inputs(model)[0].name: X})
            variants = {
                "plain": lambda: plain(spec, model, X),
                "default": lambda: gated(model, sample),
                "full": lambda: gated(model, sample, edge_values=True),
            }
            times = {k: [] for k in variants}
            info = {}
            for _ in range(args.repeat + 1):  # the first round warms imports and caches
                for key, fn in variants.items():
                    t0 = time.perf_counter()
                    info[key] = fn()
                    times[key].append(time.perf_counter() - t0)
            med = {k: statistics.median(v[1:]) for k, v in times.items()}
            rows.append((name, med, info))
    print(
        f"{'fixture':<26}{'plain s':>9}{'default s':>11}{'full s':>9}{'cases':>10}{'default/plain':>15}{'full/plain':>12}  verdicts"
    )
    for name, med, info in rows:
        cases = f"1/{info['default'][1]}/{info['full'][1]}"
        verdicts = "/".join("pass" if info[k][0] else "FAIL" for k in ("plain", "default", "full"))
        print(
            f"{name:<26}{med['plain']:>9.3f}{med['default']:>11.3f}{med['full']:>9.3f}{cases:>10}"
            f"{med['default'] / med['plain']:>15.2f}{med['full'] / med['plain']:>12.2f}  {verdicts}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
