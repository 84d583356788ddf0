"""Shape sweep over every dynamic axis, frozen axes, skipped-by-source, determinism."""

import json

import numpy as np
import pytest
from gate_support import registry, seq_mean_model

from onnxgate.pipeline import api
from onnxgate.pipeline.conversion import sweep
from onnxgate.pipeline.gate.config import GateConfig


def _run(model, **kw):
    return api.convert(model, framework="hand", registry=registry(), latency=False, **kw)


def _case(report, name):
    return report.case(name)


def test_every_dynamic_axis_is_swept_and_passes_on_a_correct_model():
    result = _run(seq_mean_model("seq"))
    names = {c.name for c in result.report.cases}
    assert {f"sweep_seq={n}" for n in sweep.SIZES} <= names  # not only the batch
    assert {"sweep_batch=2", "sweep_batch=5", "sweep_batch=16"} <= names
    assert _case(result.report, "sweep_seq=5").input_shapes["x"] == [4, 5, 4]
    assert result.passed, result.failures
    axes = {a["axis"]: a for a in result.report.sweep["dynamic_axes"]}
    assert set(axes) == {"batch", "seq"} and axes["seq"]["members"] == [{"input": "x", "axis": 1}]


def test_a_length_hard_coded_in_the_graph_fails_only_at_other_lengths():
    # mean computed as sum / 8: right at the synthesised length 8, wrong elsewhere
    result = _run(seq_mean_model("seq", hard_coded_length=8))
    assert not result.passed
    assert all(o.passed for o in _case(result.report, "batch_4").outputs)
    assert not _case(result.report, "sweep_seq=5").passed
    assert any(f.startswith("sweep_seq=5/y") for f in result.failures)
    # without the sweep, the one-shape comparison says nothing is wrong
    assert _run(seq_mean_model("seq", hard_coded_length=8), gate=GateConfig(sweep=False)).passed


def test_axis_dynamic_in_source_but_frozen_in_onnx_is_reported_by_name():
    result = _run(seq_mean_model(8))
    check = next(c for c in result.report.checks if c.name == "dynamic_axes")
    assert not check.passed
    assert "x axis 1 (fixed to 8)" in check.message
    assert not result.passed
    assert result.report.sweep["frozen_axes"] == [{"input": "x", "axis": 1, "fixed_to": 8}]
    assert not any(c.name.startswith("sweep_seq") for c in result.report.cases)


def test_sizes_the_original_rejects_are_skipped_by_source_not_failed():
    result = _run(seq_mean_model("seq", min_seq=2))
    case = _case(result.report, "sweep_seq=1")
    assert case.passed and case.outputs == []
    assert "rejects" in case.skipped and "shorter than 2" in case.skipped
    assert result.passed, result.failures
    check = next(c for c in result.report.checks if c.name == "shape_sweep")
    assert "skipped by source" in check.message and "sweep_seq=1" in check.message


def test_same_seed_same_cases_same_verdict_and_the_seed_is_recorded():
    a = _run(seq_mean_model("seq", hard_coded_length=8), seed=7)
    b = _run(seq_mean_model("seq", hard_coded_length=8), seed=7)
    assert a.report.seed == 7
    assert a.failures == b.failures
    for ca, cb in zip(a.artifact.cases, b.artifact.cases):
        assert ca.name == cb.name
        for k in ca.inputs:
            np.testing.assert_array_equal(ca.inputs[k], cb.inputs[k])
    c = _run(seq_mean_model("seq", hard_coded_length=8), seed=8)
    assert any(not np.array_equal(x.inputs["x"], y.inputs["x"]) for x, y in zip(a.artifact.cases, c.artifact.cases))
    assert c.passed == a.passed  # the verdict does not hinge on the draw


def test_sklearn_batch_sweep_and_report_is_json(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    result = api.convert(LogisticRegression(max_iter=500).fit(X, y), latency=False)
    assert result.passed, result.failures
    assert [c.kind for c in result.report.cases].count("sweep") == 3  # batch 1 exists already
    result.save(tmp_path / "m.onnx", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gate"]["sweep"] is True and report["sweep"]["dynamic_axes"][0]["axis"]


@pytest.mark.parametrize("size", [1, 3, 9])
def test_resize_keeps_rows_from_the_sample(size):
    rng = np.random.default_rng(0)
    base = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = sweep.resize(base, 0, size, rng)
    assert rows.shape == (size, 3)
    assert all(any((r == b).all() for b in base) for r in rows)
    cols = sweep.resize(base, 1, size, rng)
    np.testing.assert_array_equal(cols[:, : min(size, 3)], base[:, : min(size, 3)])


def test_axes_sharing_a_name_move_together_and_unknown_dims_stay_apart():
    from onnx import TensorProto, helper

    from onnxgate.plugins import InputSpec

    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["out"])],
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [None, 3, None, 7]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", "seq"])],
    )
    model = helper.make_model(graph)
    signature = [
        InputSpec("ids", (None, None)),
        InputSpec("mask", (None, None)),
        InputSpec("img", (None, 3, None, None)),
    ]
    groups, frozen = sweep.dynamic_groups(model, signature)
    assert groups["seq"] == [("ids", 1), ("mask", 1)]
    assert ("img", 0) in groups["batch"] and groups["img.2"] == [("img", 2)]
    assert frozen == [{"input": "img", "axis": 3, "fixed_to": 7}]
    base = {
        "ids": np.arange(12).reshape(3, 4),
        "mask": np.ones((3, 4), np.int64),
        "img": np.zeros((3, 3, 5, 7), np.float32),
    }
    cases, _ = sweep.sweep_cases(base, groups, [], seed=0)
    seq5 = next(c for c in cases if c.name == "sweep_seq=5")
    assert seq5.inputs["ids"].shape == (3, 5) and seq5.inputs["mask"].shape == (3, 5)
    np.testing.assert_array_equal(seq5.inputs["ids"][:, 4], seq5.inputs["ids"][:, 0])  # tiled, not invented
