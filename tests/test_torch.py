"""PyTorch converter: the contract kit plus exporter choice and batch handling."""

import json

import numpy as np
import pytest

from onnxgate.plugins.testing import ConverterContract, assert_clean_error, run_cli

torch = pytest.importorskip("torch")


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2)).eval()


class TestTorchContract(ConverterContract):
    """Source: an ExportedProgram file with a dynamic batch, as torch.export.save writes it."""

    converter = "torch"

    def make_source(self, tmp_path):
        example = torch.randn(3, 6)
        program = torch.export.export(_mlp(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        path = tmp_path / "mlp.pt2"
        torch.export.save(program, str(path))
        return path


class TestTorchScriptContract(ConverterContract):
    converter = "torch"

    def make_source(self, tmp_path):
        path = tmp_path / "mlp.pt"
        torch.jit.save(torch.jit.script(_mlp()), str(path))
        return path

    def make_sample(self, tmp_path):
        path = tmp_path / "x.npy"
        np.save(path, np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32))
        return path


def test_in_memory_module_uses_dynamo_with_dynamic_batch():
    from onnxgate.pipeline import convert

    result = convert(_mlp())
    assert result.passed, result.failures
    assert result.report.converter.exporter == "torch.onnx dynamo"
    assert isinstance(result.report.onnx.inputs[0].shape[0], str)
    base = sorted({c.input_shapes["input"][0] for c in result.report.cases if c.kind == "base"})
    assert base == [1, 4]


class DataDependent(torch.nn.Module):
    """Python control flow on tensor values: torch.export cannot capture it."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > -1e9:
            return self.lin(x)
        return -x


def test_falls_back_to_torchscript_and_says_so():
    from onnxgate.pipeline import convert

    result = convert(DataDependent().eval())
    assert result.report.converter.exporter == "torch.onnx torchscript"
    assert any("dynamo exporter failed" in n for n in result.report.notes)
    assert result.passed, result.failures


def test_frozen_batch_is_reported(tmp_path):
    """An ONNX model whose batch is fixed fails when a dynamic batch was asked for."""
    from onnxgate.pipeline import convert, validate

    model = _mlp()
    onnx_model = convert(model).model
    dim = onnx_model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_value = 4  # what an exporter does when it specialises the example batch
    result = validate(model, onnx_model)
    assert not result.passed
    assert any("freezes it" in f and "batch fixed to 4" in f for f in result.failures)
    # and it passes when the user asked for a static batch
    assert validate(model, onnx_model, dynamic_batch=False).passed


def test_cnn_needs_a_sample_and_says_so(tmp_path):
    from onnxgate.pipeline import convert
    from onnxgate.plugins.errors import UsageError

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(UsageError, match="--sample"):
        convert(net)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".joblib"])
def test_pickle_that_runs_code_is_never_loaded_without_trust(tmp_path, suffix):
    marker = tmp_path / "PWNED"
    _Evil.marker = marker
    path = tmp_path / f"evil{suffix}"
    if suffix in (".pt", ".pth"):
        torch.save(_Evil(), str(path))
    else:
        import pickle

        path.write_bytes(pickle.dumps(_Evil()))
    out = tmp_path / "evil.onnx"
    proc = run_cli("convert", str(path), "-o", str(out))
    assert_clean_error(proc, 2)
    assert "--trust-source" in proc.stderr
    assert not marker.exists(), "the pickle ran code"
    assert not out.exists()


def test_report_schema_fields(tmp_path):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(_mlp()), str(path))
    np.save(tmp_path / "x.npy", np.ones((2, 6), np.float32))
    proc = run_cli("convert", str(path), "--sample", str(tmp_path / "x.npy"), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema_version"] >= 1 and report["passed"] is True
    assert report["source"]["sha256"] and report["source"]["framework"] == "PyTorch"
    assert report["converter"]["plugin"] == "torch" and report["converter"]["opset"] > 0
    assert report["onnx"]["path"].endswith("m.onnx") and len(report["onnx"]["sha256"]) == 64
    for case in report["cases"]:
        for out in case["outputs"]:
            assert {"name", "max_abs_err", "max_rel_err", "mismatch_fraction", "rtol", "atol", "passed"} <= set(out)
    assert {"onnx", "onnxruntime", "numpy", "onnxgate"} <= set(report["versions"])
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["onnxgate.converter"] == "torch"
    assert meta["onnxgate.framework"] == "PyTorch" and meta["onnxgate.framework_version"].startswith("2.")
    assert meta["onnxgate.source_sha256"] == report["source"]["sha256"]
