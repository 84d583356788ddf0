"""The batch runner's four figures, each a ratio measured in the same run.

    python bench/batch.py [--small N] [--torch N] [--keras N] [--repeat N] [--skip-dask]

On a generated mixed manifest of at least 40 models, shaped like a team's
fleet: small scikit-learn models, the tree-booster fixtures, and torch and
Keras models of several sizes (the fixtures plus ones generated here).
``--small 30 --torch 0 --keras 0`` gives the earlier, import-dominated mix
(30 tiny scikit-learn models and a handful of deep-learning fixtures).

1. ``--jobs 2`` against ``--jobs 1`` wall time (target: >= 1.7x on 2 cores);
2. per-model time on a warm worker against converting in this process, for
   30 small scikit-learn models (target: <= 1.2x);
3. a fully cached rerun against the first run (target: <= 5%);
4. Dask LocalCluster with 2 workers (started by the run, as
   ``--dask-workers 2`` does) against the local executor with ``--jobs 2``
   (target: <= 1.15x).

Every run converts with latency measurements off (they time the model, not
the batch) and ``force=True`` so nothing comes from the cache unless asked.
Figures 1 and 4 take the best of ``--repeat`` interleaved runs (default 3):
on a shared machine one run's noise is as large as the difference measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))


def sklearn_models(out: Path, count: int) -> list:
    """``count`` small, different scikit-learn models with samples."""
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    entries = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            model, sample = LogisticRegression(C=0.5 + i, max_iter=400).fit(X, y), X[::10]
        elif kind == 1:
            model, sample = Ridge(alpha=0.1 * (i + 1)).fit(Xd, yd), Xd[:16]
        else:
            model, sample = DecisionTreeClassifier(max_depth=2 + i % 5, random_state=i).fit(X, y), X[::10]
        name = f"small-sklearn-{i:02d}"
        sio.dump(model, out / f"{name}.skops")
        np.savez(out / f"{name}.npz", X=sample.astype(np.float32))
        entries.append(
            {"name": name, "source": str(out / f"{name}.skops"), "sample": str(out / f"{name}.npz"), "area": "sklearn"}
        )
    return entries


def torch_models(out: Path, count: int) -> list:
    """``count`` torch programs (.pt2, dynamic batch): MLPs and CNNs of growing size."""
    import numpy as np
    import torch

    entries = []
    batch = torch.export.Dim("batch")
    for i in range(count):
        torch.manual_seed(i)
        width = 32 * (1 + i % 4)
        if i % 2 == 0:
            layers = [torch.nn.Linear(16, width), torch.nn.GELU()]
            layers += [torch.nn.Linear(width, width), torch.nn.GELU()] * (1 + i % 3)
            model, example = torch.nn.Sequential(*layers, torch.nn.Linear(width, 4)), torch.randn(4, 16)
        else:
            channels = 4 * (1 + i % 3)
            model = torch.nn.Sequential(
                torch.nn.Conv2d(3, channels, 3, padding=1),
                torch.nn.BatchNorm2d(channels),
                torch.nn.ReLU(),
                torch.nn.Conv2d(channels, channels, 3, padding=1),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(channels, 5),
            )
            example = torch.randn(2, 3, 24, 24)
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
        name = f"torch-gen-{i:02d}"
        torch.export.save(program, str(out / f"{name}.pt2"))
        np.savez(out / f"{name}.npz", x=example.numpy())
        entries.append({"name": name, "source": str(out / f"{name}.pt2"), "sample": str(out / f"{name}.npz")})
    return entries


def keras_models(out: Path, count: int) -> list:
    """``count`` Keras models (.keras): dense and convolutional, growing size."""
    import keras
    import numpy as np

    entries = []
    for i in range(count):
        keras.utils.set_random_seed(i)
        width = 32 * (1 + i % 3)
        if i % 2 == 0:
            inputs = keras.Input((12,), name="features")
            h = inputs
            for _ in range(1 + i % 3):
                h = keras.layers.Dense(width, activation="relu")(h)
            outputs = keras.layers.Dense(3, activation="softmax")(h)
            sample = np.random.default_rng(i).normal(size=(8, 12)).astype(np.float32)
        else:
            inputs = keras.Input((20, 20, 3), name="image")
            h = keras.layers.Conv2D(4 * (1 + i % 3), 3, activation="relu")(inputs)
            h = keras.layers.GlobalAveragePooling2D()(h)
            outputs = keras.layers.Dense(4)(h)
            sample = np.random.default_rng(i).normal(size=(2, 20, 20, 3)).astype(np.float32)
        name = f"keras-gen-{i:02d}"
        keras.Model(inputs, outputs).save(out / f"{name}.keras")
        np.save(out / f"{name}.npy", sample)
        entries.append({"name": name, "source": str(out / f"{name}.keras"), "sample": str(out / f"{name}.npy")})
    return entries


def build(folder: Path, small: int, n_torch: int = 0, n_keras: int = 0) -> tuple:
    import build as fixtures_build

    entries = sklearn_models(folder, small)
    entries += torch_models(folder, n_torch)
    entries += keras_models(folder, n_keras)
    for area in ("trees", "torch", "tensorflow"):
        area_dir = folder / area
        area_dir.mkdir()
        module = __import__(f"{area}_fixtures")
        for entry in module.build(area_dir):
            entry["area"] = area
            entries.append(entry)
    manifest = folder / "mixed.toml"
    manifest.write_text(fixtures_build.to_toml(entries, folder))
    # figure 2 on its own set of 30, whatever the mix: enough models to average out noise
    small_dir = folder / "small"
    small_dir.mkdir()
    sklearn_only = folder / "sklearn.toml"
    sklearn_only.write_text(fixtures_build.to_toml(sklearn_models(small_dir, 30), folder))
    return manifest, sklearn_only, len(entries)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def warm_overhead(sklearn_manifest: Path, folder: Path) -> tuple:
    """Seconds per model: in this process, then on a warm worker."""
    from onnxgate.pipeline import api, batch

    entries = batch.load(sklearn_manifest)
    out = folder / "inprocess"
    out.mkdir()

    from onnxgate.pipeline.report import formats

    def convert(e):  # the same work and outputs as a batch worker's
        result = api.run(e.source, sample=e.sample, latency=False)
        result.save(out / f"{e.name}.onnx", out / f"{e.name}.report.json")
        formats.write(result.report, formats.resolve([("html", out / f"{e.name}.html")]))

    convert(entries[0])  # imports paid before timing, as a warm worker has
    in_process, _ = timed(lambda: [convert(e) for e in entries[1:]])
    # the worker's first model pays its imports: time from its row to the last
    arrivals = []
    for _ in batch.run(sklearn_manifest, folder / "warm", stream=True, jobs=1, latency=False, force=True):
        arrivals.append(time.perf_counter())
    warm = arrivals[-1] - arrivals[0]
    n = len(entries) - 1
    return in_process / n, warm / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=16, help="generated scikit-learn models (default 16)")
    parser.add_argument("--torch", type=int, default=8, help="generated torch programs (default 8)")
    parser.add_argument("--keras", type=int, default=6, help="generated Keras models (default 6)")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed configuration; the best counts")
    args = parser.parse_args()
    from onnxgate.pipeline import batch

    folder = Path(tempfile.mkdtemp(prefix="onnxgate-bench-batch-"))
    t_build, (manifest, sklearn_manifest, total) = timed(lambda: build(folder, args.small, args.torch, args.keras))
    print(f"built {total} models in {t_build:.0f}s: {folder}", flush=True)

    def run(out, **kw):
        rows = batch.run(manifest, folder / out, latency=False, **kw)
        bad = [r["name"] for r in rows if r["exit_code"] and r["verdict"] != "failed"]
        if bad:
            print(f"  {out}: errors in {bad}", flush=True)
        return rows

    # each timed configuration runs --repeat times, interleaved so that a
    # noisy neighbour hits all of them alike; the best time of each counts
    configs = {"jobs1": {"jobs": 1}, "jobs2": {"jobs": 2}}
    if not args.skip_dask:
        configs["dask"] = {"executor": "dask", "dask_workers": 2}
    best: dict[str, float] = {}
    for round_ in range(args.repeat):
        for out, options in configs.items():
            seconds, _ = timed(lambda: run(out, force=True, **options))
            best[out] = min(best.get(out, seconds), seconds)
            print(f"round {round_ + 1}: {out}: {seconds:.1f}s", flush=True)
    t1, t2, t_dask = best["jobs1"], best["jobs2"], best.get("dask")
    t_cached, rows = timed(lambda: run("jobs2", jobs=2))
    assert all(r["cached"] for r in rows)
    print(f"cached rerun: {t_cached:.2f}s", flush=True)
    per_in, per_warm = warm_overhead(sklearn_manifest, folder)
    print(
        f"small sklearn model: {per_in * 1000:.0f} ms in process, {per_warm * 1000:.0f} ms on a warm worker", flush=True
    )

    print(
        f"\n{total} models ({args.small} scikit-learn, {args.torch} torch and {args.keras} Keras generated;"
        " the trees, torch and TensorFlow fixtures)"
    )
    print(
        f"best of {args.repeat}: --jobs 1 {t1:.1f}s, --jobs 2 {t2:.1f}s" + (f", dask {t_dask:.1f}s" if t_dask else "")
    )
    print(f"1. --jobs 2 speed-up over --jobs 1:          {t1 / t2:.2f}x   (target >= 1.7x)")
    print(f"2. warm worker / in-process per small model: {per_warm / per_in:.2f}x   (target <= 1.2x)")
    print(f"3. cached rerun / first run:                 {t_cached / t2 * 100:.1f}%   (target <= 5%)")
    if t_dask is not None:
        print(f"4. Dask LocalCluster(2) / local --jobs 2:    {t_dask / t2:.2f}x   (target <= 1.15x)")


if __name__ == "__main__":
    main()
