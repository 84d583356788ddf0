"""onnxgate's overhead against the bare converter, measured in the same run.

    python bench/overhead.py [--repeat N] [--only NAME ...]

For each case: wall time of ``onnxgate convert SOURCE`` (a fresh process:
startup, detection, conversion, the validation gate, report) against a fresh
process running a bare script that loads the same model, converts it with the
converter library and compares one onnxruntime run with the original. Runs
alternate so a noisy neighbour hits both; medians and their ratio are printed.
Also: ``onnxgate --help`` startup against ``python -c pass``.

Adding a case: append a ``Case`` whose ``build(folder)`` writes the source
(and sample) and whose ``bare`` script reads ``SOURCE``/``SAMPLE`` env vars.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))


@dataclass
class Case:
    name: str
    #: build(folder) -> {"SOURCE": path, "SAMPLE": path or ""}
    build: Callable[[Path], dict[str, str]]
    bare: str
    cli_args: list[str] = field(default_factory=list)


def _sklearn_build(folder: Path) -> dict[str, str]:
    import numpy as np
    import sklearn_fixtures
    import skops.io as sio

    name, model, X = sklearn_fixtures.models()[0]
    sio.dump(model, folder / "model.skops")
    np.savez(folder / "sample.npz", X=X.astype(np.float32))
    return {"SOURCE": str(folder / "model.skops"), "SAMPLE": str(folder / "sample.npz")}


SKLEARN_BARE = """
import os, numpy as np, onnxruntime as ort, skops.io as sio
from skl2onnx import to_onnx
src = os.environ["SOURCE"]
model = sio.load(src, trusted=sio.get_untrusted_types(file=src))
X = np.load(os.environ["SAMPLE"])["X"]
onx = to_onnx(model, X[:1], options={"zipmap": False})
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
label, proba = sess.run(None, {sess.get_inputs()[0].name: X})
assert np.allclose(proba, model.predict_proba(X), rtol=1e-4, atol=1e-4)
open(os.environ["OUT"], "wb").write(onx.SerializeToString())
"""


def _torch_build(folder: Path) -> dict[str, str]:
    import torch
    import torch_fixtures

    example = torch.randn(4, 8)
    program = torch.export.export(torch_fixtures.mlp(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "mlp.pt2"))
    return {"SOURCE": str(folder / "mlp.pt2"), "SAMPLE": ""}


TORCH_BARE = """
import os, numpy as np, onnxruntime as ort, torch
program = torch.export.load(os.environ["SOURCE"])
x = torch.randn(4, 8)
onx = torch.onnx.export(program, (x,), dynamo=True).model_proto
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
(got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
assert np.allclose(got, program.module()(x).detach().numpy(), rtol=1e-4, atol=1e-5)
open(os.environ["OUT"], "wb").write(onx.SerializeToString())
"""


def _tensorflow_build(folder: Path) -> dict[str, str]:
    import tensorflow_fixtures

    tensorflow_fixtures.sequential().save(folder / "mlp.keras")
    return {"SOURCE": str(folder / "mlp.keras"), "SAMPLE": ""}


TENSORFLOW_BARE = """
import os, numpy as np, onnxruntime as ort, tensorflow as tf, keras, tf2onnx
model = keras.saving.load_model(os.environ["SOURCE"], compile=False, safe_mode=True)
spec = [tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32, name="features")]
fn = tf.function(lambda x: model(x, training=False), input_signature=spec)
onx, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
(got,) = sess.run(None, {"features": x})
assert np.allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)
open(os.environ["OUT"], "wb").write(onx.SerializeToString())
"""


def _trees_build(index: int):
    """A native classifier file from fixtures/trees_fixtures.py: 0 XGBoost
    (.json), 2 LightGBM (.txt), 4 CatBoost (.cbm)."""

    def build(folder: Path) -> dict[str, str]:
        import numpy as np
        import trees_fixtures

        data = trees_fixtures._data()
        models = (
            trees_fixtures.xgboost_models(data)
            + trees_fixtures.lightgbm_models(data)
            + trees_fixtures.catboost_models(data)
        )
        name, model, suffix, X = models[index]
        trees_fixtures.save_native(model, folder / f"{name}{suffix}")
        np.savez(folder / "sample.npz", X=np.asarray(X[::7], dtype=np.float32))
        return {"SOURCE": str(folder / f"{name}{suffix}"), "SAMPLE": str(folder / "sample.npz")}

    return build


XGBOOST_BARE = """
import os, numpy as np, onnxruntime as ort, xgboost
from onnxmltools import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
model = xgboost.XGBClassifier(); model.load_model(os.environ["SOURCE"])
X = np.load(os.environ["SAMPLE"])["X"]
onx = convert_xgboost(model, initial_types=[("X", FloatTensorType([None, X.shape[1]]))], target_opset=15)
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
label, proba = sess.run(None, {"X": X})
assert np.allclose(proba, model.predict_proba(X), rtol=1e-4, atol=1e-5)
open(os.environ["OUT"], "wb").write(onx.SerializeToString())
"""

LIGHTGBM_BARE = """
import os, numpy as np, onnxruntime as ort, lightgbm
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType
booster = lightgbm.Booster(model_file=os.environ["SOURCE"])
X = np.load(os.environ["SAMPLE"])["X"]
onx = convert_lightgbm(booster, initial_types=[("X", FloatTensorType([None, X.shape[1]]))], target_opset=15, zipmap=False)
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
label, proba = sess.run(None, {"X": X})
assert np.allclose(proba[:, 1], booster.predict(X), rtol=1e-4, atol=1e-5)
open(os.environ["OUT"], "wb").write(onx.SerializeToString())
"""

CATBOOST_BARE = """
import os, numpy as np, onnxruntime as ort, catboost
model = catboost.CatBoostClassifier(); model.load_model(os.environ["SOURCE"])
X = np.load(os.environ["SAMPLE"])["X"]
model.save_model(os.environ["OUT"], format="onnx")
sess = ort.InferenceSession(os.environ["OUT"], providers=["CPUExecutionProvider"])
label, proba = sess.run(None, {sess.get_inputs()[0].name: X})
proba = np.array([[row[k] for k in sorted(row)] for row in proba])  # ZipMap's list of dicts
assert np.allclose(proba, model.predict_proba(X), rtol=1e-4, atol=1e-5)
"""

CASES: list[Case] = [
    Case("sklearn-logreg-pipeline", _sklearn_build, SKLEARN_BARE),
    Case("torch-mlp (.pt2, dynamo)", _torch_build, TORCH_BARE),
    Case("tf-sequential (.keras, tf2onnx)", _tensorflow_build, TENSORFLOW_BARE),
    Case("xgboost-classifier (.json)", _trees_build(0), XGBOOST_BARE),
    Case("lightgbm-classifier (.txt)", _trees_build(2), LIGHTGBM_BARE),
    Case("catboost-classifier (.cbm)", _trees_build(4), CATBOOST_BARE),
]


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def _onnxgate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "onnxgate.pipeline.cli", *args]


def measure(case: Case, folder: Path, repeat: int) -> dict[str, float]:
    files = case.build(folder)
    env = {**os.environ, **files, "OUT": str(folder / "bare.onnx")}
    gate = _onnxgate_cmd("convert", files["SOURCE"], "-o", str(folder / "gate.onnx"), *case.cli_args)
    if files.get("SAMPLE"):
        gate += ["--sample", files["SAMPLE"]]
    bare = [sys.executable, "-c", case.bare]
    times = {"onnxgate": [], "bare": []}
    for _ in range(repeat):
        times["bare"].append(_time(bare, env))
        times["onnxgate"].append(_time(gate, env))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    env = dict(os.environ)
    print(f"{'case':34s} {'bare s':>8s} {'onnxgate s':>10s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            if args.only and not any(o in case.name for o in args.only):
                continue
            folder = Path(tmp) / f"case{i}"
            folder.mkdir()
            m = measure(case, folder, args.repeat)
            print(f"{case.name:34s} {m['bare']:8.2f} {m['onnxgate']:10.2f} {m['onnxgate'] / m['bare']:6.2f}")
        startup = {"python -c pass": [], "onnxgate --help": []}
        for _ in range(max(5, args.repeat)):
            startup["python -c pass"].append(_time([sys.executable, "-c", "pass"], env))
            startup["onnxgate --help"].append(_time(_onnxgate_cmd("--help"), env))
        base, cli = (statistics.median(v) for v in startup.values())
        print(f"{'startup: onnxgate --help':34s} {base:8.3f} {cli:10.3f} {cli / base:6.2f}   (bare = python -c pass)")


if __name__ == "__main__":
    main()
