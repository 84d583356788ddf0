"""MXNet and Chainer converters: contract kit, fixtures, bad inputs.

Their models are built inside the legacy environment (fixtures/
legacy_fixtures.py), once per session; the environment itself is created
once at the location CI uses (see test_environments.py).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from onnxgate.pipeline.envs import isolated as environments
from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

os.environ.setdefault(
    environments.HOME_ENV, str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".local" / "share" / "onnxgate")
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))


@functools.cache
def built() -> dict:
    """name -> manifest entry; the environment is created first if needed."""
    import legacy_fixtures

    out = Path(tempfile.mkdtemp(prefix="onnxgate-legacy-fixtures-"))
    atexit.register(shutil.rmtree, out, True)
    return {e["name"]: e for e in legacy_fixtures.build(out)}


@pytest.fixture(scope="module")
def models():
    return built()


class TestMXNetContract(ConverterContract):
    converter = "mxnet"

    def make_source(self, tmp_path):
        return built()["mxnet-mlp"]["source"]


class TestChainerContract(ConverterContract):
    converter = "chainer"

    def make_source(self, tmp_path):
        return built()["chainer-cnn"]["source"]

    def make_sample(self, tmp_path):
        return Path(built()["chainer-cnn"]["sample"])

    def make_convert_kwargs(self, tmp_path):
        return {"options": built()["chainer-cnn"]["options"]}


@pytest.mark.parametrize("name", ["mxnet-mlp", "mxnet-cnn", "chainer-mlp", "chainer-cnn"])
def test_fixture_converts_and_passes_the_gate(models, name, tmp_path):
    entry = models[name]
    out, report = tmp_path / f"{name}.onnx", tmp_path / f"{name}.json"
    args = ["convert", entry["source"], "-o", str(out), "--report", str(report)]
    if entry.get("framework"):
        args += ["--framework", entry["framework"]]
    if entry.get("sample"):
        args += ["--sample", entry["sample"]]
    for key, value in (entry.get("options") or {}).items():
        args += ["--option", f"{key}={value}"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["passed"]
    batches = {c["name"] for c in data["cases"]}
    assert len(batches) >= 2, batches  # the dynamic batch was exercised
    assert data["source"]["framework_version"] in ("1.9.1", "7.8.1")


def test_mxnet_detection_tells_symbol_json_from_other_json(models, tmp_path):
    from onnxgate.converters.mxnet import sniff

    assert sniff(Path(models["mxnet-mlp"]["source"]))
    xgb_like = tmp_path / "booster.json"
    xgb_like.write_text(
        json.dumps({"learner": {"gradient_booster": {"model": {"trees": [{"nodes": []}]}}}, "version": [3, 2, 0]})
    )
    assert not sniff(xgb_like)


def test_validate_uses_the_given_model(models, tmp_path):
    """`onnxgate validate` ships the user's ONNX file to the worker; a
    tampered weight must fail the gate (exit 1)."""
    import onnx
    from onnx import numpy_helper

    source = models["mxnet-mlp"]["source"]
    good = tmp_path / "good.onnx"
    assert run_cli("convert", source, "-o", str(good)).returncode == 0
    assert run_cli("validate", source, str(good)).returncode == 0
    model = onnx.load(str(good))
    bias = [i for i in model.graph.initializer if i.name.endswith("bias")][0]
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, bias.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    proc = run_cli("validate", source, str(bad))
    assert proc.returncode == 1, proc.stderr


# -- bad input ------------------------------------------------------------------------
def _copy_pair(entry, tmp_path, with_params=True) -> Path:
    src = Path(entry["source"])
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    if with_params:
        params = src.with_name(src.name.replace("-symbol.json", "-0000.params"))
        shutil.copy(params, tmp_path / params.name)
    return dst


def test_truncated_symbol_json(models, tmp_path):
    symbol = _copy_pair(models["mxnet-mlp"], tmp_path)
    text = symbol.read_text()
    symbol.write_text(text[: len(text) // 2])
    out = tmp_path / "t.onnx"
    detected = run_cli("convert", str(symbol), "-o", str(out))
    assert_clean_error(detected, 2)  # the sniffer no longer recognises it
    forced = run_cli("convert", str(symbol), "-o", str(out), "--framework", "mxnet")
    assert_clean_error(forced, 2)
    assert "not a readable MXNet symbol JSON" in forced.stderr
    assert not out.exists()


def test_params_file_missing(models, tmp_path):
    symbol = _copy_pair(models["mxnet-mlp"], tmp_path, with_params=False)
    proc = run_cli("convert", str(symbol), "-o", str(tmp_path / "m.onnx"))
    assert_clean_error(proc, 2)
    assert "mxnet-mlp-0000.params" in proc.stderr and "--option params=FILE" in proc.stderr


def test_params_of_another_model(models, tmp_path):
    symbol = _copy_pair(models["mxnet-mlp"], tmp_path, with_params=False)
    other = Path(models["mxnet-cnn"]["source"]).with_name("mxnet-cnn-0000.params")
    proc = run_cli("convert", str(symbol), "-o", str(tmp_path / "m.onnx"), "--option", f"params={other}")
    assert_clean_error(proc, 2)
    assert "lacks parameters the symbol needs" in proc.stderr


def test_params_not_an_mxnet_file(models, tmp_path):
    symbol = _copy_pair(models["mxnet-mlp"], tmp_path, with_params=False)
    (tmp_path / "mxnet-mlp-0000.params").write_bytes(os.urandom(512))
    proc = run_cli("convert", str(symbol), "-o", str(tmp_path / "m.onnx"))
    assert_clean_error(proc, 2)
    assert "not a readable MXNet parameters file" in proc.stderr


def _chainer_args(entry, source=None, model=None):
    args = ["convert", str(source or entry["source"]), "--framework", "chainer", "--sample", entry["sample"]]
    return args + ["--option", f"model={model or entry['options']['model']}"]


def test_chainer_npz_not_matching_the_model(models, tmp_path):
    mlp = models["chainer-mlp"]
    convnet = models["chainer-cnn"]["options"]["model"]
    out = tmp_path / "c.onnx"
    proc = run_cli(*_chainer_args(mlp, model=convnet), "-o", str(out))
    assert_clean_error(proc, 2)
    assert "does not match" in proc.stderr and not out.exists()


def test_chainer_npz_with_wrong_shapes(models, tmp_path):
    mlp = models["chainer-mlp"]
    with np.load(mlp["source"]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["l1/W"] = arrays["l1/W"][:, :3]
    bad = tmp_path / "shapes.npz"
    np.savez(bad, **arrays)
    proc = run_cli(*_chainer_args(mlp, source=bad), "-o", str(tmp_path / "c.onnx"))
    assert_clean_error(proc, 2)
    assert "cannot load into" in proc.stderr


def test_chainer_npz_with_a_pickle_is_refused(models, tmp_path):
    mlp = models["chainer-mlp"]
    with np.load(mlp["source"]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["l1/W"] = np.array([{"not": "numbers"}], dtype=object)
    bad = tmp_path / "pickled.npz"
    np.savez(bad, **arrays)
    proc = run_cli(*_chainer_args(mlp, source=bad), "-o", str(tmp_path / "c.onnx"))
    assert_clean_error(proc, 2)
    assert "allow_pickle" in proc.stderr


def test_chainer_needs_the_model_reference(models, tmp_path):
    mlp = models["chainer-mlp"]
    proc = run_cli("convert", mlp["source"], "--sample", mlp["sample"], "-o", str(tmp_path / "c.onnx"))
    assert_clean_error(proc, 2)
    assert "--option model=" in proc.stderr
    missing = run_cli(*_chainer_args(mlp, model="no_such_module_here:Net"), "-o", str(tmp_path / "c.onnx"))
    assert_clean_error(missing, 2)
    assert "cannot import 'no_such_module_here'" in missing.stderr


def test_chainer_reference_is_not_imported_in_the_main_process(models, tmp_path):
    """The main venv has no chainer: the reference must only travel as text."""
    mlp = models["chainer-mlp"]
    from onnxgate.pipeline import convert

    result = convert(mlp["source"], framework="chainer", sample=mlp["sample"], options=mlp["options"])
    assert result.passed
    assert "chainer" not in sys.modules and "legacy_models" not in sys.modules


def test_mxnet_image_model_needs_a_sample(models, tmp_path):
    entry = models["mxnet-cnn"]
    proc = run_cli("convert", entry["source"], "-o", str(tmp_path / "c.onnx"))
    assert_clean_error(proc, 2)
    assert "--sample" in proc.stderr
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 5, 5), dtype=np.float32))  # the Dense layer wants 4x4 after pooling 8x8
    proc = run_cli("convert", entry["source"], "--sample", str(wrong), "-o", str(tmp_path / "c.onnx"))
    assert proc.returncode in (2, 3), proc.stderr
    assert_clean_error(proc, proc.returncode)
    assert "Traceback" not in proc.stderr
