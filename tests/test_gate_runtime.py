"""Runtime compatibility (IR/opsets vs onnxruntime releases) and the optimiser check."""

import numpy as np
import pytest
from gate_support import conv_bn_model, make_model, registry, seq_mean_model
from onnx import TensorProto, helper

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.gate import runtime_compat
from onnxgate.pipeline.gate.config import GateConfig
from onnxgate.plugins.errors import UsageError


def _identity(opset=17, ir=8, ml=None):
    model = make_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        opset=opset,
    )
    model.ir_version = ir
    if ml:
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", ml))
    return model


def test_table_row_from_the_compatibility_docs():
    assert runtime_compat.ORT_TABLE["1.17"] == (20, 4, 9)
    assert runtime_compat.ORT_TABLE["1.12"] == (17, 3, 8)


def test_installed_runtime_is_probed():
    installed, (opset, ml, ir) = runtime_compat.probe_installed()
    import onnxruntime

    assert installed == runtime_compat.minor(onnxruntime.__version__)
    assert opset >= 21 and ml >= 4 and ir >= 10  # newer than the newest table row


def test_model_within_target_passes_and_lists_loadable_releases():
    section, check = runtime_compat.check(_identity(opset=17, ir=8), "1.17")
    assert check["passed"] and section["target_status"] == "ok"
    assert section["oldest_release"] == "1.12" and "1.11" not in section["loadable_by"]
    assert "onnxruntime 1.12 and later" in check["message"]


def test_model_too_new_for_target_fails_and_says_why():
    section, check = runtime_compat.check(_identity(opset=21, ir=10), "1.17")
    assert not check["passed"] and section["target_status"] == "too new"
    assert "ai.onnx opset 21 > 20" in check["message"] and "IR version 10 > 9" in check["message"]
    assert section["oldest_release"] == "1.18"
    _, check = runtime_compat.check(_identity(opset=17, ir=8, ml=5), "1.16")
    assert not check["passed"] and "ai.onnx.ml opset 5 > 3" in check["message"]


def test_unknown_target_is_reported_not_guessed():
    section, check = runtime_compat.check(_identity(), "1.25")
    assert check["passed"] and section["target_status"] == "unknown"
    assert "no compatibility data for onnxruntime 1.25" in check["message"]
    with pytest.raises(UsageError):
        runtime_compat.check(_identity(), "latest")


def test_target_runtime_fails_the_gate_end_to_end():
    # sklearn/skl2onnx writes opset 22 + ai.onnx.ml: too new for onnxruntime 1.17
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = api.convert(model, latency=False, gate=GateConfig(target_runtime="1.17"))
    assert not result.passed
    assert any(f.startswith("check runtime_compat: onnxruntime 1.17 cannot load") for f in result.failures)
    assert result.report.runtime_compat["target"] == "1.17"
    assert api.convert(model, latency=False, opset=15, gate=GateConfig(target_runtime="1.17")).passed


def test_bad_target_runtime_on_the_cli_exits_2(tmp_path, capsys):
    code = cli.main(["convert", "x.skops", "-o", str(tmp_path / "m.onnx"), "--target-runtime", "newest"])
    assert code == 2 and "--target-runtime" in capsys.readouterr().err


def _sample(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32) * 1e-3
    np.savez(tmp_path / "x.npz", x=x)
    return tmp_path / "x.npz"


def test_optimiser_rewrite_that_changes_results_is_flagged_as_optimiser_problem(tmp_path):
    # onnxruntime folds BatchNormalization into the Conv; with the conv's large bias
    # cancelling the BN mean, the two graphs round differently by ~0.5
    result = api.convert(
        conv_bn_model(1e4), framework="hand", registry=registry(), sample=_sample(tmp_path), latency=False
    )
    check = next(c for c in result.report.checks if c.name == "optimizer_consistency")
    assert not check.passed and not result.passed
    assert "an optimiser problem" in check.message and "not a converter one" in check.message
    assert "the optimised session matches the original" in check.message
    out = result.report.cases[0].outputs[0]
    assert out.passed  # the converter's graph, as deployed (optimised), is right
    assert out.optimizer["disagrees"] and out.optimizer["max_abs_diff"] > 0.01
    assert out.optimizer["passed_unoptimized"] is False


def test_same_pattern_without_cancellation_passes(tmp_path):
    result = api.convert(
        conv_bn_model(0.0), framework="hand", registry=registry(), sample=_sample(tmp_path), latency=False
    )
    assert result.passed, result.failures
    check = next(c for c in result.report.checks if c.name == "optimizer_consistency")
    assert check.passed and "agree within tolerance" in check.message


def test_optimizer_check_can_be_switched_off(tmp_path):
    result = api.convert(
        conv_bn_model(1e4),
        framework="hand",
        registry=registry(),
        sample=_sample(tmp_path),
        latency=False,
        gate=GateConfig(optimizer_check=False),
    )
    assert result.passed, result.failures
    assert not any(c.name == "optimizer_consistency" for c in result.report.checks)


def test_converter_bug_is_attributed_to_the_converter():
    result = api.convert(
        seq_mean_model("seq", hard_coded_length=8), framework="hand", registry=registry(), latency=False
    )
    bad = [o for c in result.report.cases for o in c.outputs if not o.passed]
    assert bad and all(o.attribution == "converter" for o in bad)
