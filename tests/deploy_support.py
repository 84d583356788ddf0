"""Helpers for the deploy and serving tests: a validated model and score.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def validated_iris(folder: Path, latency: bool = False) -> Path:
    """A logistic regression on iris, converted, gated and saved with its
    validation record as ``folder/iris.onnx``."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.pipeline import api

    X, y = load_iris(return_X_y=True)
    sample = folder / "sample.npy"
    np.save(sample, X[:5].astype(np.float32))
    path = folder / "iris.onnx"
    api.convert(LogisticRegression(max_iter=500).fit(X, y), sample=sample, latency=latency).save(path)
    return path


def load_score(pkg: Path, monkeypatch, module_name: str):
    """Import a package's score.py as Azure's server does, and init() it."""
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(pkg / "model"))
    spec = importlib.util.spec_from_file_location(module_name, pkg / "code" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module
