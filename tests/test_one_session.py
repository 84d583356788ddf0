"""One onnxruntime session per optimisation level per conversion, shared by
validation, latency, the error histograms and the record's smoke sample; and
each case runs once per session (timing runs aside)."""

import numpy as np
import onnxruntime
import pytest

from onnxgate.pipeline import api


@pytest.fixture
def counted(monkeypatch):
    from onnxgate.pipeline.gate import runtime_compat

    runtime_compat.probe_installed()  # once per process, on tiny probe models: not this model's sessions
    seen = {"sessions": 0, "runs": 0}

    class Counting(onnxruntime.InferenceSession):
        def __init__(self, *args, **kwargs):
            seen["sessions"] += 1
            super().__init__(*args, **kwargs)

        def run(self, *args, **kwargs):
            seen["runs"] += 1
            return super().run(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Counting)
    return seen


def test_convert_and_save_load_the_model_once_per_optimisation_level(counted, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    np.save(tmp_path / "x.npy", X[:6].astype(np.float32))
    result = api.convert(
        LogisticRegression(max_iter=300).fit(X, y),
        sample=tmp_path / "x.npy",
        latency=False,
        output=tmp_path / "iris.onnx",
    )
    assert result.passed and result.report.error_histograms["probabilities"]["total"] > 0
    assert counted["sessions"] == 2  # optimised + unoptimised (the optimiser check)
    ran = [c for c in result.report.cases if not c.skipped]
    assert counted["runs"] == 2 * len(ran)  # each case once per session; histograms and smoke reuse them
    from onnxgate.pipeline.deployment import record

    assert record.load(tmp_path / "iris.onnx")["smoke"]["response"]["outputs"]
