"""What the float64 reference run costs (``--float64-reference``, on by default).

    python bench/float64_cost.py [--repeat N]

For each deep CNN of the zoo (``fixtures/zoo/deep_cnn_models.py``, 1000 classes,
batch 2 at 64x64) and a small MLP, in one process and alternating so a noisy
neighbour hits both alike: the original's float32 run (``run``, what stage 1
does anyway) against its float64 run (``run_float64``: a deep copy in float64,
then the same inputs), and the whole ``convert`` with the float64 reference on
and off. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))


def models():
    import torch
    from zoo import deep_cnn_models

    out = []
    for factory in deep_cnn_models.FACTORIES:
        model, (images,) = getattr(deep_cnn_models, factory)()
        out.append((factory, model, images.numpy()))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    out.append(("torch-mlp", mlp, np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from onnxgate.converters import torch as torch_converter
    from onnxgate.pipeline import api
    from onnxgate.pipeline.gate.config import GateConfig

    print(
        f"{'model':<20}{'float32 run s':>14}{'float64 run s':>14}{'ratio':>7}{'convert on s':>14}{'off s':>8}{'ratio':>7}"
    )
    for name, model, x in models():
        inputs = {"images": x}
        runs = {
            "f32": lambda: torch_converter.run(model, inputs),
            "f64": lambda: torch_converter.run_float64(model, inputs),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat + 1):  # the first round warms caches
            for key, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        med = {k: statistics.median(v[1:]) for k, v in times.items()}
        convert: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(2):
            for on in (True, False):
                t0 = time.perf_counter()
                api.convert(model, sample={"images": x}, latency=False, gate=GateConfig(float64_reference=on))
                convert[on].append(time.perf_counter() - t0)
        on, off = min(convert[True]), min(convert[False])
        print(
            f"{name:<20}{med['f32']:>14.4f}{med['f64']:>14.4f}{med['f64'] / med['f32']:>7.1f}"
            f"{on:>14.2f}{off:>8.2f}{on / off:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
