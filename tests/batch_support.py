"""Small models and misbehaving sources for the batch tests.

``models(folder)`` writes two tiny scikit-learn models (.skops + sample) and
a module of ``module:attr`` factories that crash, hang or eat memory when the
worker loads them. The folder must be on the workers' PYTHONPATH: the tests
put it there through the environment, which spawned workers inherit.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

FACTORIES = '''
import os, signal, time

def exits():
    os._exit(3)

def segfaults():
    os.kill(os.getpid(), signal.SIGSEGV)

def hangs():
    time.sleep(600)

def killed():
    os.kill(os.getpid(), signal.SIGKILL)   # what the kernel's OOM killer does

def tiny_onnx():
    """A ready-made ONNX model (y = x + 1): cheap to gate, no framework to import."""
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "tiny", [x], [y], [one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

def eats_memory():
    import numpy as np
    hog = []
    for _ in range(120):                      # up to 6 GB, 50 MB at a time
        hog.append(np.ones(50 * 2**20, dtype=np.uint8))
        time.sleep(0.005)
    return hog
'''


def models(folder: Path) -> dict:
    """name -> {source, sample}; also writes ``badmodels.py`` into ``folder``."""
    import skops.io as sio
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge

    folder.mkdir(parents=True, exist_ok=True)
    X, y = load_iris(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    built = {}
    for name, model, sample in (
        ("logreg", LogisticRegression(max_iter=300).fit(X, y), X[::15]),
        ("ridge", Ridge(alpha=0.5).fit(Xd, yd), Xd[:8]),
    ):
        sio.dump(model, folder / f"{name}.skops")
        np.savez(folder / f"{name}.sample.npz", X=sample.astype(np.float32))
        built[name] = {"source": f"{name}.skops", "sample": f"{name}.sample.npz"}
    (folder / "badmodels.py").write_text(FACTORIES)
    return built


class WritesMarker:
    """A pickle whose loading would create ``path``: proof of code execution."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(folder: Path, marker: Path) -> Path:
    path = folder / "evil.pkl"
    path.write_bytes(pickle.dumps(WritesMarker(marker)))
    return path


def toml_entry(**values) -> str:
    """One ``[[models]]`` table (strings, numbers, booleans, string lists)."""
    import json

    lines = ["[[models]]"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def env_with_path(folder: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    return env
