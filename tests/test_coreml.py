"""Core ML: conversion through the onnxmltools compatibility layer, and a gate
that compares against user-supplied expected outputs (Core ML cannot run here).

Every spec is built from chosen weights; the expected outputs are computed
with numpy from those weights (fixtures/coreml_libsvm_fixtures.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import coreml_libsvm_fixtures as fx

pytest.importorskip("coremltools")
pytest.importorskip("onnxmltools")

CASES = {case.name: case for case in fx.coreml_cases()}


def cli(capsys, *args):
    """The CLI in this process (coremltools imports once): (exit code, stdout, stderr)."""
    from onnxgate.pipeline.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("onnxgate: error:")]) == 1, err


class TestCoremlContract(ConverterContract):
    converter = "coreml"

    def _files(self, tmp_path):
        return fx.write_coreml(CASES["coreml-nn-regressor"], tmp_path / "files")

    def make_convert_kwargs(self, tmp_path):  # the comparison needs the Mac-side outputs
        return {"expected": self._files(tmp_path)["expected"]}

    def make_source(self, tmp_path):
        return self._files(tmp_path)["source"]

    def make_sample(self, tmp_path):
        return Path(self._files(tmp_path)["sample"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_kind_matches_the_weights(name, tmp_path):
    """NeuralNetwork (regressor, classifier), GLM, tree ensembles, pipeline."""
    from onnxgate.pipeline import convert

    files = fx.write_coreml(CASES[name], tmp_path)
    result = convert(files["source"], sample=files["sample"], expected=files["expected"])
    assert result.passed, result.failures
    assert result.verdict == "passed"
    compared = {o.name for c in result.report.cases for o in c.outputs}
    assert compared == set(CASES[name].expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_keeps_the_core_ml_names(name):
    from onnxgate.pipeline import convert

    spec = CASES[name].build()
    result = convert(spec, accept_unverified=True)
    assert [i.name for i in result.model.graph.input] == [f.name for f in spec.description.input]
    assert sorted(o.name for o in result.model.graph.output) == sorted(f.name for f in spec.description.output)


def test_cli_passes_with_expected_outputs(tmp_path, capsys):
    files = fx.write_coreml(CASES["coreml-nn-classifier"], tmp_path)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    code, _out, err = cli(
        capsys,
        "convert",
        files["source"],
        "--sample",
        files["sample"],
        "--expected",
        files["expected"],
        "-o",
        out,
        "--report",
        report,
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["verdict"] == "passed" and out.stat().st_size > 0
    assert data["converter"]["name"] == "coreml"


def test_cli_fails_on_wrong_expected_values_and_names_the_output(tmp_path, capsys):
    case = CASES["coreml-nn-regressor"]
    files = fx.write_coreml(case, tmp_path)
    wrong = dict(case.expected)
    wrong["scores"] = wrong["scores"] + np.array([0.0, 0.0, 0.01])  # one column off by 0.01
    np.savez(files["expected"], **wrong)
    report = tmp_path / "r.json"
    code, _out, err = cli(
        capsys,
        "convert",
        files["source"],
        "--sample",
        files["sample"],
        "--expected",
        files["expected"],
        "-o",
        tmp_path / "m.onnx",
        "--report",
        report,
    )
    assert code == 1, err
    assert "scores" in err and "FAIL" in err
    data = json.loads(report.read_text())
    assert data["verdict"] == "failed"
    [scores] = [o for c in data["cases"] for o in c["outputs"] if o["name"] == "scores"]
    assert not scores["passed"] and scores["max_abs_err"] == pytest.approx(0.01, rel=1e-3)


def test_cli_without_expected_outputs_is_unverified_and_fails(tmp_path, capsys):
    files = fx.write_coreml(CASES["coreml-glm-regressor"], tmp_path)
    report = tmp_path / "r.json"
    code, _out, err = cli(
        capsys, "convert", files["source"], "--sample", files["sample"], "-o", tmp_path / "m.onnx", "--report", report
    )
    assert code == 1, err
    assert "no expected outputs" in err and "--accept-unverified" in err
    data = json.loads(report.read_text())
    assert not data["passed"]
    [check] = [c for c in data["checks"] if c["name"] == "comparison"]
    assert not check["passed"] and "could not be run here" in check["message"]
    assert not [o for c in data["cases"] for o in c["outputs"]], "nothing can have been compared"


def test_cli_accept_unverified_passes_with_verdict_unverified(tmp_path, capsys):
    files = fx.write_coreml(CASES["coreml-glm-regressor"], tmp_path)
    report = tmp_path / "r.json"
    code, _out, err = cli(
        capsys, "convert", files["source"], "-o", tmp_path / "m.onnx", "--report", report, "--accept-unverified"
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["passed"] and data["verdict"] == "unverified"
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_in_memory_spec_and_mlmodel_are_detected(tmp_path):
    import coremltools

    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    spec = CASES["coreml-glm-classifier"].build()
    specs = Registry().converters()
    assert detect.for_object(spec, specs).name == "coreml"
    mlmodel = coremltools.models.MLModel(spec)
    assert detect.for_object(mlmodel, specs).name == "coreml"

    from onnxgate.pipeline import convert

    files = fx.write_coreml(CASES["coreml-glm-classifier"], tmp_path)
    result = convert(mlmodel, sample=files["sample"], expected=files["expected"])
    assert result.passed, result.failures


def test_caller_spec_is_not_modified():
    from onnxgate.pipeline import convert

    spec = CASES["coreml-tree-classifier"].build()
    before = spec.SerializeToString()
    convert(spec, accept_unverified=True)
    assert spec.SerializeToString() == before  # the empty base values were filled in a copy


def test_random_bytes_mlmodel_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "noise.mlmodel"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    code, _out, err = cli(capsys, "convert", str(bad), "-o", str(tmp_path / "x.onnx"))
    assert code == 2
    assert_one_line_error(err)
    assert "not a Core ML model" in err
    assert not (tmp_path / "x.onnx").exists()


def _unsupported_spec():
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    feature = spec.description.input.add()
    feature.name = "item"
    feature.type.int64Type.SetInParent()
    spec.itemSimilarityRecommender.SetInParent()
    return spec


def test_unsupported_kind_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "recommender.mlmodel"
    path.write_bytes(_unsupported_spec().SerializeToString())
    code, _out, err = cli(capsys, "convert", str(path), "-o", str(tmp_path / "x.onnx"))
    assert code == 2
    assert_one_line_error(err)
    assert "itemSimilarityRecommender" in err and "not supported" in err


def test_unsupported_kind_inside_a_pipeline_is_named(tmp_path, capsys):
    spec = CASES["coreml-pipeline-regressor"].build()
    spec.pipelineRegressor.pipeline.models[1].CopyFrom(_unsupported_spec())
    path = tmp_path / "pipe.mlmodel"
    path.write_bytes(spec.SerializeToString())
    code, _out, err = cli(capsys, "convert", str(path), "-o", str(tmp_path / "x.onnx"))
    assert code == 2
    assert_one_line_error(err)
    assert "pipeline stage 1" in err


def test_expected_without_sample_is_a_usage_error(tmp_path, capsys):
    files = fx.write_coreml(CASES["coreml-glm-regressor"], tmp_path)
    code, _out, err = cli(
        capsys, "convert", files["source"], "--expected", files["expected"], "-o", str(tmp_path / "x.onnx")
    )
    assert code == 2
    assert_one_line_error(err)


_UPSTREAM_COREML = """
import importlib.util
probes = {
    "find_type_conversion": "from onnxmltools.convert.common.data_types import find_type_conversion",
    "check_input_and_output_numbers": "from onnxmltools.convert.common.utils import check_input_and_output_numbers",
    "onnx_proto": "from onnx import onnx_proto",
}
for name, probe in probes.items():
    try:
        exec(probe)
    except ImportError:
        print("broken:", name)
    else:
        print("fixed:", name)
import pathlib  # find_spec of the package: importing it is what fails
package = pathlib.Path(importlib.util.find_spec("onnxmltools.convert.coreml").origin).parent
source = (package / "convert.py").read_text()
print("broken:" if "operator_converters" not in source else "fixed:", "registrations")
"""


def test_onnxmltools_coreml_still_needs_the_compat_layer():
    """When this fails, onnxmltools fixed part of its CoreML converter
    (onnx/onnxmltools#735, PR #776): delete that part of converters/onnxmltools_compat.py."""
    proc = subprocess.run([sys.executable, "-c", _UPSTREAM_COREML], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("find_type_conversion", "check_input_and_output_numbers", "onnx_proto", "registrations"):
        assert f"broken: {name}" in proc.stdout, (
            f"upstream fixed {name!r}: drop its patch from converters/onnxmltools_compat.py "
            "and re-run tests/test_coreml.py\n" + proc.stdout
        )
