"""Ready-made ONNX models as the source: the contract kit, golden folders,
``--expected``, the unverified verdict, and bad input."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxgate.plugins.spec import Tolerance
from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import onnx_fixtures


class TestOnnxContract(ConverterContract):
    converter = "onnx"

    def make_convert_kwargs(self, tmp_path):
        folder = onnx_fixtures.write_model(tmp_path / "golden", "onnx-mlp").parent
        return {"golden": folder}

    def make_source(self, tmp_path):
        model, _, _ = onnx_fixtures.mlp_model()
        path = tmp_path / "mlp.onnx"
        onnx.save(model, str(path))
        return path


@pytest.fixture
def mlp(tmp_path):
    path = onnx_fixtures.write_model(tmp_path / "mlp", "onnx-mlp")
    return path, path.parent


@pytest.fixture
def pooled(tmp_path):
    path = onnx_fixtures.write_model(tmp_path / "pooled", "onnx-pooled")
    return path, path.parent


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- fixtures: expected outputs are independent of onnxruntime ------------


@pytest.mark.parametrize("name", sorted(onnx_fixtures.MODELS))
def test_fixture_reference_agrees_with_onnx_reference_evaluator(name):
    from onnx.reference import ReferenceEvaluator

    model, reference, sets = onnx_fixtures.MODELS[name]()
    evaluator = ReferenceEvaluator(model)
    for inputs in sets:
        ours = reference(inputs)
        theirs = dict(zip([o.name for o in model.graph.output], evaluator.run(None, inputs)))
        for key, value in ours.items():
            np.testing.assert_allclose(theirs[key], value, rtol=1e-5, atol=1e-6)


def test_build_writes_manifest_entries_that_pass(tmp_path):
    from onnxgate.pipeline import api

    entries = onnx_fixtures.build(tmp_path)
    assert {e["name"] for e in entries} == set(onnx_fixtures.MODELS)
    for entry in entries:
        result = api.convert(
            entry["source"], framework=entry["framework"], sample=entry["sample"], expected=entry["expected"]
        )
        assert result.passed, result.failures
        assert result.verdict == "passed"


# --- golden folders ------------------------------------------------------


def test_golden_sets_become_cases_with_expected_outputs(pooled):
    from onnxgate.pipeline import api

    model_path, golden = pooled
    result = api.validate(model_path, golden=golden)
    assert result.passed, result.failures
    assert [c.name for c in result.report.cases] == ["test_data_set_0", "test_data_set_1", "test_data_set_2"]
    for case in result.report.cases:
        assert [o.name for o in case.outputs] == ["mean", "top"]
    assert result.report.converter.exporter == "none (ready-made ONNX)"
    assert result.report.tolerance == Tolerance(rtol=1e-3, atol=1e-7)
    assert result.report.onnx.sha256 == _sha(model_path)


def test_a_single_test_data_set_folder_is_accepted(pooled):
    from onnxgate.pipeline import api

    model_path, golden = pooled
    result = api.validate(model_path, golden=golden / "test_data_set_1")
    assert result.passed and [c.name for c in result.report.cases] == ["test_data_set_1"]


def test_wrong_golden_output_fails_the_gate(pooled):
    model_path, golden = pooled
    out = golden / "test_data_set_1" / "output_0.pb"
    tensor = onnx.load_tensor(str(out))
    array = numpy_helper.to_array(tensor).copy()
    array[0, 1] += 0.5
    out.write_bytes(numpy_helper.from_array(array, name=tensor.name).SerializeToString())
    proc = run_cli("validate", str(model_path), "--golden", str(golden), "--report", str(golden / "r.json"))
    assert proc.returncode == 1, proc.stderr
    report = json.loads((golden / "r.json").read_text())
    assert report["verdict"] == "failed"
    assert any(f.startswith("test_data_set_1/mean:") for f in report["failures"]), report["failures"]


def test_golden_write_read_round_trip(tmp_path):
    from onnxgate.pipeline.conversion import golden

    model, reference, sets = onnx_fixtures.pooled_model()
    golden.write(tmp_path, model, [(s, reference(s)) for s in sets])
    cases = golden.read(tmp_path, model)
    assert len(cases) == len(sets)
    for case, inputs in zip(cases, sets):
        for key, value in inputs.items():
            np.testing.assert_array_equal(case.inputs[key], value)
        assert case.expected["top"].dtype == np.int64


# --- the CLI paths --------------------------------------------------------


def test_cli_validate_without_separate_source(mlp):
    model_path, golden = mlp
    report = golden / "report.json"
    proc = run_cli("validate", str(model_path), "--golden", str(golden), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASSED")
    data = json.loads(report.read_text())
    assert data["verdict"] == "passed" and len(data["cases"]) == 2
    assert data["onnx"]["path"] == str(model_path)


def test_cli_convert_without_expected_outputs_uses_onnx_reference(mlp):
    model_path, golden = mlp
    report = golden / "reference.json"
    proc = run_cli("convert", str(model_path), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["verdict"] == "passed"
    assert any("onnx.reference.ReferenceEvaluator" in n for n in data["notes"])
    assert all(c["outputs"] for c in data["cases"])


def test_cli_convert_beyond_the_reference_budget_is_unverified(mlp):
    model_path, golden = mlp
    before = _sha(model_path)
    report = golden / "report.json"
    proc = run_cli("convert", str(model_path), "--report", str(report), "--reference-timeout", "1e-9")
    assert proc.returncode == 1, proc.stderr
    assert "only loading and running" in proc.stderr and "--reference-timeout" in proc.stderr
    written = model_path.with_name("model.checked.onnx")
    assert written.is_file() and _sha(model_path) == before  # the input is never overwritten
    data = json.loads(report.read_text())
    assert data["verdict"] == "failed" and not data["passed"]
    assert any("synthesised from the model's declared inputs" in n for n in data["notes"])
    assert all(c.get("unverified") and not c["outputs"] for c in data["cases"])

    proc = run_cli(
        "convert", str(model_path), "--accept-unverified", "--report", str(report), "--reference-timeout", "1e-9"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("UNVERIFIED")
    data = json.loads(report.read_text())
    assert data["verdict"] == "unverified"
    comparison = [c for c in data["checks"] if c["name"] == "comparison"]
    assert comparison and "only loading and running" in comparison[0]["message"]


def test_cli_expected_with_sample(pooled, tmp_path):
    model_path, golden = pooled
    _, reference, sets = onnx_fixtures.pooled_model()
    np.savez(tmp_path / "sample.npz", **sets[2])
    np.savez(tmp_path / "expected.npz", **reference(sets[2]))
    proc = run_cli(
        "validate",
        str(model_path),
        "--sample",
        str(tmp_path / "sample.npz"),
        "--expected",
        str(tmp_path / "expected.npz"),
    )
    assert proc.returncode == 0, proc.stderr


def test_fixed_batch_model_is_not_held_to_a_dynamic_batch(pooled):
    from onnxgate.pipeline import api

    model_path, _ = pooled  # image is [1, 3, 8, 8]: nothing converts, so nothing to make dynamic
    result = api.convert(model_path, accept_unverified=True)
    assert result.passed
    assert [c.input_shapes["image"] for c in result.report.cases] == [[1, 3, 8, 8]]
    assert not [c for c in result.report.checks if c.name == "dynamic_batch"]


def test_in_memory_model_proto_source_is_left_untouched(mlp):
    from onnxgate.pipeline import api

    _, golden = mlp
    model, _, _ = onnx_fixtures.mlp_model()
    before = model.SerializeToString()
    result = api.convert(model, golden=golden)
    assert result.passed, result.failures
    assert model.SerializeToString() == before
    assert any(p.key.startswith("onnxgate.") for p in result.model.metadata_props)


def test_plugins_lists_the_onnx_converter():
    proc = run_cli("plugins")
    assert proc.returncode == 0, proc.stderr
    assert any(line.split()[:2] == ["onnx", "ONNX"] for line in proc.stdout.splitlines()), proc.stdout


# --- bad input: one line, exit 2, nothing written -------------------------


def _clean_cli_error(tmp_path, *args):
    proc = run_cli(*args, "--report", str(tmp_path / "out.json"))
    assert_clean_error(proc, 2)
    assert not (tmp_path / "out.json").exists()
    return proc.stderr


@pytest.mark.parametrize("keep", [0.5, "all-but-4"])
def test_truncated_onnx_is_a_usage_error(tmp_path, mlp, keep):
    model_path, _ = mlp
    data = model_path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:-4])
    err = _clean_cli_error(tmp_path, "convert", str(cut), "-o", str(tmp_path / "out.onnx"))
    assert "cut.onnx" in err
    assert not (tmp_path / "out.onnx").exists()


def test_random_bytes_onnx_is_a_usage_error(tmp_path):
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    err = _clean_cli_error(tmp_path, "validate", str(bad), "--golden", str(tmp_path))
    assert "noise.onnx" in err


def _golden_error(tmp_path, model_path, golden):
    return _clean_cli_error(tmp_path, "validate", str(model_path), "--golden", str(golden))


def test_golden_folder_missing(tmp_path, mlp):
    assert "no such folder" in _golden_error(tmp_path, mlp[0], tmp_path / "nowhere")


def test_golden_folder_without_sets(tmp_path, mlp):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no test_data_set_N folders" in _golden_error(tmp_path, mlp[0], empty)


def test_golden_misnamed_file(tmp_path, pooled):
    model_path, golden = pooled
    (golden / "test_data_set_0" / "input_1.pb").rename(golden / "test_data_set_0" / "input1.pb")
    assert "input1.pb: unexpected name" in _golden_error(tmp_path, model_path, golden)


def test_golden_missing_output_file(tmp_path, pooled):
    model_path, golden = pooled
    (golden / "test_data_set_2" / "output_1.pb").unlink()
    assert "output_1.pb is missing" in _golden_error(tmp_path, model_path, golden)


def test_golden_extra_input_file(tmp_path, mlp):
    model_path, golden = mlp
    shutil.copy(golden / "test_data_set_0" / "input_0.pb", golden / "test_data_set_0" / "input_1.pb")
    assert "input_1.pb does not fit" in _golden_error(tmp_path, model_path, golden)


def test_golden_file_that_is_not_a_tensor(tmp_path, mlp):
    model_path, golden = mlp
    (golden / "test_data_set_1" / "output_0.pb").write_bytes(b"\xff\xfe not a tensor \x00\x01")
    assert "not a TensorProto" in _golden_error(tmp_path, model_path, golden)


def test_golden_shape_does_not_fit_the_model(tmp_path, pooled):
    model_path, golden = pooled
    wrong = np.zeros((1, 3, 4, 4), np.float32)  # the model declares image [1, 3, 8, 8]
    (golden / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(wrong, "image").SerializeToString())
    err = _golden_error(tmp_path, model_path, golden)
    assert "shape [1, 3, 4, 4] does not fit input 'image' declared [1, 3, 8, 8]" in err


def test_golden_output_shape_does_not_fit_the_model(tmp_path, mlp):
    model_path, golden = mlp
    wrong = np.zeros((5, 4), np.float32)  # probs is [N, 3]
    (golden / "test_data_set_0" / "output_0.pb").write_bytes(
        numpy_helper.from_array(wrong, "probs").SerializeToString()
    )
    assert "does not fit output 'probs'" in _golden_error(tmp_path, model_path, golden)


def test_golden_dtype_does_not_fit_the_model(tmp_path, pooled):
    model_path, golden = pooled
    wrong = np.zeros((1,), np.float64)
    (golden / "test_data_set_0" / "input_1.pb").write_bytes(numpy_helper.from_array(wrong, "scale").SerializeToString())
    assert "dtype float64 but input 'scale' is float32" in _golden_error(tmp_path, model_path, golden)


def test_golden_swapped_inputs(tmp_path, pooled):
    model_path, golden = pooled
    folder = golden / "test_data_set_0"
    (folder / "input_0.pb").rename(folder / "tmp.bin")
    (folder / "input_1.pb").rename(folder / "input_0.pb")
    (folder / "tmp.bin").rename(folder / "input_1.pb")
    assert "holds tensor 'scale' but input 0 of the model is 'image'" in _golden_error(tmp_path, model_path, golden)


def test_golden_with_sample_is_refused(tmp_path, mlp):
    model_path, golden = mlp
    np.savez(tmp_path / "s.npz", X=np.zeros((2, 4), np.float32))
    err = _clean_cli_error(
        tmp_path, "validate", str(model_path), "--golden", str(golden), "--sample", str(tmp_path / "s.npz")
    )
    assert "--golden" in err


def test_opset_moves_a_ready_made_model_and_the_gate_checks_it(mlp):
    from onnxgate.pipeline import api

    model_path, golden = mlp  # built at opset 17
    result = api.convert(model_path, golden=golden, opset=18)
    assert result.passed, result.failures
    assert result.report.converter.exporter == "onnx.version_converter (opset 17 -> 18)"
    assert result.report.converter.opset == 18


def test_opset_the_version_converter_cannot_reach_is_a_conversion_failure(tmp_path, mlp):
    out = tmp_path / "o.onnx"
    proc = run_cli("convert", str(mlp[0]), "--opset", "13", "-o", str(out))
    assert_clean_error(proc, 3)
    assert "version_converter cannot move this model from opset 17 to 13" in proc.stderr
    assert not out.exists()


def test_output_over_the_source_is_refused(tmp_path, mlp):
    model_path, _ = mlp
    before = _sha(model_path)
    _clean_cli_error(tmp_path, "convert", str(model_path), "-o", str(model_path), "--accept-unverified")
    assert _sha(model_path) == before
